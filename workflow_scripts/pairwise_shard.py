"""Snakemake entry point of rule pairwise_shard: one scatter shard of the pair matrix's rows of one run."""

from resdyn import stages
from resdyn.io import log_to
from resdyn.runs import Run

with log_to(snakemake.log[0]):
    stages.pairwise_shard(
        snakemake.input.trajectories,
        snakemake.output[0],
        snakemake.wildcards.scatteritem,
        run=Run.from_params(snakemake.params.run),
        chunk=snakemake.params.chunk,
        device=snakemake.params.device,
    )
