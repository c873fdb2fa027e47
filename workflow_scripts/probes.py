"""Snakemake entry point of rule probes: per-depth linear probes (probes.pt) and their table (probes.csv)."""

from resdyn import stages
from resdyn.io import log_to

with log_to(snakemake.log[0]):
    stages.fit_probes(
        snakemake.input.model,
        snakemake.input.data,
        snakemake.output.probes,
        snakemake.output.table,
        settings=snakemake.params.settings,
        batch_size=snakemake.params.batch_size,
    )
