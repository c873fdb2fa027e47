"""Snakemake entry point of rule pairwise_shard: one scatter shard of the pair matrix's rows."""

from resdyn import stages
from resdyn.io import log_to

with log_to(snakemake.log[0]):
    stages.pairwise_shard(
        snakemake.input.trajectories,
        snakemake.output[0],
        snakemake.wildcards.scatteritem,
        labels=snakemake.params.labels,
        chunk=snakemake.params.chunk,
        device=snakemake.params.device,
    )
