"""Snakemake entry point of rule shadowing_shard (and reading_shadowing_shard): the pseudo-orbits of one
scatter shard and their shadowing errors, under the job's reading."""

from resdyn import stages
from resdyn.io import log_to
from resdyn.readings import Reading

with log_to(snakemake.log[0]):
    stages.shadowing_shard(
        snakemake.input.trajectories,
        snakemake.input.pairs,
        snakemake.output[0],
        snakemake.wildcards.scatteritem,
        chunk=snakemake.params.chunk,
        reading=Reading.from_settings(snakemake.params.name, snakemake.params.reading),
    )
