"""Snakemake entry point of rule table2: Table 2 (the dynamical-systems constants, and their median and
band at the reference size) over every trained network."""

from resdyn import stages
from resdyn.io import log_to
from resdyn.runs import Run

with log_to(snakemake.log[0]):
    stages.table2(
        [Run.from_params(run) for run in snakemake.params.runs],
        list(snakemake.input.constants),
        list(snakemake.input.sample_size),
        snakemake.params.stem,
        paper_rows=snakemake.params.paper_rows,
    )
