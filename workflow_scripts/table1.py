"""Snakemake entry point of rule table1: Table 1 (classification performance) over every trained network."""

from resdyn import stages
from resdyn.io import log_to
from resdyn.runs import Run

with log_to(snakemake.log[0]):
    stages.table1(
        [Run.from_params(run) for run in snakemake.params.runs],
        list(snakemake.input.metrics),
        snakemake.params.stem,
        paper_rows=snakemake.params.paper_rows,
    )
