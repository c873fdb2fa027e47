"""Snakemake entry point of rule table2: Table 2 (the dynamical-systems constants, and their median and
band at the reference size) over every run and replicate."""

from resdyn import stages
from resdyn.io import log_to

with log_to(snakemake.log[0]):
    stages.table2(
        list(snakemake.input.constants),
        snakemake.params.stem,
        paper_reference=snakemake.params.paper_reference,
        runs=[tuple(run) for run in snakemake.params.runs],
        sample_size_paths=list(snakemake.input.sample_size),
    )
