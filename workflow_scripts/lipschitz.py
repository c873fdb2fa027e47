"""Snakemake entry point of rule lipschitz: lipschitz.json for one (dataset, model)."""
from resdyn.analysis import write_lipschitz
from resdyn.io import log_to
from resdyn.train import resolve_device

with log_to(snakemake.log[0]):
    write_lipschitz(
        snakemake.input.trajectories,
        snakemake.output[0],
        model_path=snakemake.input.model,
        data_path=snakemake.input.data,
        solver=snakemake.params.solver,
        eps=snakemake.params.eps,
        device=resolve_device(snakemake.params.device),
    )
