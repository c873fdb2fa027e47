"""Snakemake entry point of rule evaluate: metrics.json (Table 1) for one (dataset, model)."""
from resdyn.io import log_to
from resdyn.train import evaluate_from_files

with log_to(snakemake.log[0]):
    evaluate_from_files(
        snakemake.input.model,
        snakemake.input.data,
        snakemake.output[0],
        device=snakemake.params.device,
        batch_size=snakemake.params.batch_size,
    )
