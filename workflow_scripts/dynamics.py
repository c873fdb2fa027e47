"""Snakemake entry point of rule dynamics: every run's accuracy and constants against the training epoch
(table and one figure per dataset and model)."""

from resdyn import stages
from resdyn.io import log_to
from resdyn.runs import Run

with log_to(snakemake.log[0]):
    stages.dynamics(
        [Run.from_params(run) for run in snakemake.params.runs],
        snakemake.params.epochs,
        list(snakemake.input.metrics),
        list(snakemake.input.constants),
        snakemake.params.stem,
        dict(zip(map(tuple, snakemake.params.figure_keys), snakemake.output.figures)),
    )
