"""Snakemake entry point of rule prepare_data: one dataset → results/data/{dataset}.h5 and the record of
the files it read. Where the data is (`path`, `download_dir`) comes from the config, not from params: the
params carry its content (rules/data.smk)."""

from resdyn import stages
from resdyn.config import dataset_settings
from resdyn.io import log_to

with log_to(snakemake.log[0]):
    dataset = snakemake.wildcards.dataset
    stages.prepare_data(
        dataset,
        dataset_settings(snakemake.config, dataset),
        snakemake.output.data,
        snakemake.config["download_dir"],
        record_path=snakemake.output.record,
        content=snakemake.params.content,
    )
