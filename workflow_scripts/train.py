"""Snakemake entry point of rule train: model.pt and train_log.csv for one (dataset, model)."""

import torch

from resdyn import stages
from resdyn.io import log_to

with log_to(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    stages.train_model(
        snakemake.input.data,
        dict(snakemake.params.model),
        dict(snakemake.params.training),
        snakemake.output.model,
        snakemake.output.log_csv,
        snakemake.params.checkpoint,
    )
