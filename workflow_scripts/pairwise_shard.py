"""Snakemake entry point of rule pairwise_shard: one scatter shard of the pair matrix's rows."""
from resdyn.analysis import run_pairwise_shard
from resdyn.io import log_to
from resdyn.train import resolve_device

with log_to(snakemake.log[0]):
    run_pairwise_shard(
        snakemake.input.trajectories,
        snakemake.output[0],
        snakemake.wildcards.scatteritem,
        labels=snakemake.params.labels,
        chunk=snakemake.params.chunk,
        device=resolve_device(snakemake.params.device),
    )
