"""Snakemake entry point of rules trajectories and probe_trajectories: trajectories.h5 of one trained
network, with the trained head or (given probes.pt) the per-depth probes."""

from resdyn import stages
from resdyn.io import log_to
from resdyn.runs import Run

with log_to(snakemake.log[0]):
    stages.record_trajectories(
        snakemake.input.model,
        snakemake.input.data,
        snakemake.output[0],
        run=Run.from_params(snakemake.params.run),
        batch_size=snakemake.params.batch_size,
        store_states=snakemake.params.store_states,
        device=snakemake.params.device,
        probes_path=snakemake.input.get("probes"),
    )
