"""Snakemake entry point of rule constants: constants.json of one run."""

from resdyn import stages
from resdyn.io import log_to
from resdyn.runs import Run

with log_to(snakemake.log[0]):
    stages.constants(
        snakemake.output[0],
        trajectories_path=snakemake.input.trajectories,
        pairs_path=snakemake.input.pairs,
        shadowing_path=snakemake.input.shadowing,
        lipschitz_path=snakemake.input.lipschitz,
        run=Run.from_params(snakemake.params.run),
    )
