"""Snakemake entry point of rule shadowing_gather (and reading_shadowing_gather): shadowing.h5, the curve
CSV and its plot."""

from resdyn import stages
from resdyn.io import log_to
from resdyn.readings import Reading

with log_to(snakemake.log[0]):
    stages.gather_shadowing(
        list(snakemake.input.shards),
        snakemake.output.h5,
        snakemake.output.curve,
        snakemake.output.plot,
        quantiles=snakemake.params.quantiles,
        reading=Reading.from_settings(snakemake.params.name, snakemake.params.reading),
    )
