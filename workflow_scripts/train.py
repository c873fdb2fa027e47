"""Snakemake entry point of rule train: model.pt, train_log.csv and the earlier epochs' model.pt of one
trained network."""

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
        # the config's checkpoints, not a param on purpose: removing an epoch must not retrain
        dict(zip(sorted(snakemake.config["checkpoints"]), snakemake.output.epochs)),
    )
