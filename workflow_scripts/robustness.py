"""Snakemake entry point of rule robustness: robustness.csv of one trained network."""

from resdyn import stages
from resdyn.io import log_to
from resdyn.runs import Run

with log_to(snakemake.log[0]):
    stages.measure_robustness(
        snakemake.input.model,
        snakemake.input.data,
        snakemake.output[0],
        run=Run.from_params(snakemake.params.run),
        settings=snakemake.params.settings,
    )
