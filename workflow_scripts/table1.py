"""Snakemake entry point of rule table1: Table 1 (classification performance) over every run and
replicate."""

from resdyn import stages
from resdyn.io import log_to

with log_to(snakemake.log[0]):
    stages.table1(
        list(snakemake.input.metrics),
        snakemake.params.stem,
        paper_reference=snakemake.params.paper_reference,
        runs=[tuple(run) for run in snakemake.params.runs],
    )
