"""Snakemake entry point of rule evaluate: metrics.json (Table 1) for one (dataset, model)."""

from resdyn import stages
from resdyn.io import log_to

with log_to(snakemake.log[0]):
    stages.evaluate_model(
        snakemake.input.model,
        snakemake.input.data,
        snakemake.output[0],
        device=snakemake.params.device,
        batch_size=snakemake.params.batch_size,
    )
