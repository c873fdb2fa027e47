"""Snakemake entry point of rule sample_size (and reading_sample_size, replicate_sample_size): the constants
on class-stratified subsets of the test set (method §3.6) for one (dataset, model) under the job's reading."""

from resdyn import stages
from resdyn.io import log_to
from resdyn.readings import Reading

wildcards = dict(snakemake.wildcards.items())
title = [wildcards["dataset"], wildcards["model"]]
if "replicate" in wildcards:
    title.append(f"replicate {wildcards['replicate']}")
title.append(f"reading {snakemake.params.name}")
with log_to(snakemake.log[0]):
    stages.sample_size(
        snakemake.input.trajectories,
        snakemake.output.csv,
        snakemake.output.json,
        snakemake.output.png,
        constants_path=snakemake.input.constants,
        settings=snakemake.params.settings,
        quantiles=snakemake.params.quantiles,
        chunk=snakemake.params.chunk,
        reading=Reading.from_settings(snakemake.params.name, snakemake.params.reading),
        title=" / ".join(title),
    )
