"""Snakemake entry point of rule probes_figure: probe and head accuracy against depth for one dataset."""

from resdyn import stages
from resdyn.io import log_to

with log_to(snakemake.log[0]):
    stages.probes_figure(
        dict(zip(snakemake.params.models, snakemake.input.tables)),
        snakemake.output[0],
        dataset=snakemake.wildcards.dataset,
    )
