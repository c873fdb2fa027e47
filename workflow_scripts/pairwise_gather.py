"""Snakemake entry point of rule pairwise_gather: merge the shards into pairs.h5."""

from resdyn import stages
from resdyn.io import log_to

with log_to(snakemake.log[0]):
    stages.gather_pairwise(list(snakemake.input.shards), snakemake.output[0])
