"""Snakemake entry point of rule pairwise_gather: merge one run's shards into pairs.h5."""

from resdyn import stages
from resdyn.io import log_to
from resdyn.runs import Run

with log_to(snakemake.log[0]):
    stages.gather_pairwise(
        list(snakemake.input.shards), snakemake.output[0], run=Run.from_params(snakemake.params.run)
    )
