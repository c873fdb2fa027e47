"""Snakemake entry point of rule prepare_data: one dataset → results/data/{dataset}.h5."""

from resdyn import stages
from resdyn.io import log_to

with log_to(snakemake.log[0]):
    stages.prepare_data(
        snakemake.wildcards.dataset,
        dict(snakemake.params.entry),
        snakemake.output[0],
        snakemake.params.download_dir,
    )
