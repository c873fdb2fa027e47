"""Snakemake entry point of rule constants (and reading_constants): constants.json for one (dataset,
model) under the job's reading."""

from resdyn import stages
from resdyn.io import log_to
from resdyn.readings import Reading

with log_to(snakemake.log[0]):
    stages.constants(
        snakemake.output[0],
        trajectories_path=snakemake.input.trajectories,
        pairs_path=snakemake.input.pairs,
        shadowing_path=snakemake.input.shadowing,
        lipschitz_path=snakemake.input.lipschitz,
        reading=Reading.from_settings(snakemake.params.name, snakemake.params.reading),
    )
