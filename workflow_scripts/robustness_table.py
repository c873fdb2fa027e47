"""Snakemake entry point of rule robustness_table: the constants' rank correlation with measured
robustness across runs (table and scatter figure)."""

from resdyn import stages
from resdyn.io import log_to
from resdyn.runs import Run

with log_to(snakemake.log[0]):
    stages.robustness_table(
        [Run.from_params(run) for run in snakemake.params.runs],
        list(snakemake.input.constants),
        [Run.from_params(run) for run in snakemake.params.trained_runs],
        list(snakemake.input.robustness),
        snakemake.params.stem,
        snakemake.output.figure,
        trained_accuracy=snakemake.params.trained_accuracy,
        n_boot=snakemake.params.n_boot,
        seed=snakemake.params.seed,
    )
