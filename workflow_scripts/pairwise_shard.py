"""Snakemake entry point of rule pairwise_shard: one scatter shard of the pair matrix's rows of one run."""

from resdyn import stages
from resdyn.distances import kernel_threads
from resdyn.io import log_to
from resdyn.runs import Run

# The kernels run on the job's threads, which the rule declares and SLURM allocates.
with log_to(snakemake.log[0]), kernel_threads(snakemake.threads):
    stages.pairwise_shard(
        snakemake.input.trajectories,
        snakemake.output[0],
        snakemake.wildcards.scatteritem,
        run=Run.from_params(snakemake.params.run),
        chunk=snakemake.params.chunk,
        device=snakemake.params.device,
    )
