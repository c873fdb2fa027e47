"""Snakemake entry point of rule sample_size: the constants of one run on class-stratified subsets of the
test set (method §3.6)."""

from resdyn import stages
from resdyn.distances import kernel_threads
from resdyn.io import log_to
from resdyn.runs import Run

# The kernels run on the job's threads, which the rule declares and SLURM allocates.
with log_to(snakemake.log[0]), kernel_threads(snakemake.threads):
    stages.sample_size(
        snakemake.input.trajectories,
        snakemake.output.csv,
        snakemake.output.json,
        snakemake.output.png,
        run=Run.from_params(snakemake.params.run),
        settings=snakemake.params.settings,
        quantiles=snakemake.params.quantiles,
        chunk=snakemake.params.chunk,
        constants_path=snakemake.input.constants,
        pairs_path=snakemake.input.pairs,
    )
