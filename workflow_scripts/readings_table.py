"""Snakemake entry point of rule readings_table: the readings table over every run."""

from resdyn import stages
from resdyn.io import log_to
from resdyn.runs import Run

with log_to(snakemake.log[0]):
    stages.readings_table(
        [Run.from_params(run) for run in snakemake.params.runs],
        list(snakemake.input.constants),
        list(snakemake.input.sample_size),
        snakemake.params.stem,
        paper_rows=snakemake.params.paper_rows,
    )
