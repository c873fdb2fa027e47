"""Snakemake entry point of rule pairwise_shard (and reading_pairwise_shard): one scatter shard of the
pair matrix's rows, under the job's reading."""

from resdyn import stages
from resdyn.io import log_to
from resdyn.readings import Reading

with log_to(snakemake.log[0]):
    stages.pairwise_shard(
        snakemake.input.trajectories,
        snakemake.output[0],
        snakemake.wildcards.scatteritem,
        chunk=snakemake.params.chunk,
        device=snakemake.params.device,
        reading=Reading.from_settings(snakemake.params.name, snakemake.params.reading),
    )
