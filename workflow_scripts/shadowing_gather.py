"""Snakemake entry point of rule shadowing_gather: shadowing.h5, the curve CSV and its plot of one run."""

from resdyn import stages
from resdyn.io import log_to
from resdyn.runs import Run

with log_to(snakemake.log[0]):
    stages.gather_shadowing(
        list(snakemake.input.shards),
        snakemake.output.h5,
        snakemake.output.curve,
        snakemake.output.plot,
        run=Run.from_params(snakemake.params.run),
        quantiles=snakemake.params.quantiles,
    )
