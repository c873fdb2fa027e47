"""Snakemake entry point of rule shadowing_shard: shadowing errors of one scatter shard of the orbits."""

from resdyn import stages
from resdyn.io import log_to

with log_to(snakemake.log[0]):
    stages.shadowing_shard(
        snakemake.input.trajectories,
        snakemake.input.pairs,
        snakemake.output[0],
        snakemake.wildcards.scatteritem,
        chunk=snakemake.params.chunk,
    )
