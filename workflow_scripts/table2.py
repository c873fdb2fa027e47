"""Snakemake entry point of rule table2: Table 2 (the dynamical-systems constants) over every run."""

from resdyn import stages
from resdyn.io import log_to

with log_to(snakemake.log[0]):
    stages.table2(
        list(snakemake.input.constants),
        snakemake.params.stem,
        paper_reference=snakemake.params.paper_reference,
    )
