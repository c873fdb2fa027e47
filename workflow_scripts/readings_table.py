"""Snakemake entry point of rule readings_table: the readings table over every (dataset, model, reading)."""

from resdyn import stages
from resdyn.io import log_to

with log_to(snakemake.log[0]):
    stages.readings_table(
        [tuple(run) for run in snakemake.params.runs],
        list(snakemake.input.constants),
        snakemake.params.stem,
        paper_reference=snakemake.params.paper_reference,
        sample_size_paths=list(snakemake.input.sample_size),
    )
