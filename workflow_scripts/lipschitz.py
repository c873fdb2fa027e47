"""Snakemake entry point of rule lipschitz: lipschitz.json for one (dataset, model)."""

from resdyn import stages
from resdyn.io import log_to

with log_to(snakemake.log[0]):
    stages.lipschitz(
        snakemake.input.trajectories,
        snakemake.output[0],
        model_path=snakemake.input.model,
        data_path=snakemake.input.data,
        solver=snakemake.params.solver,
        eps=snakemake.params.eps,
        device=snakemake.params.device,
    )
