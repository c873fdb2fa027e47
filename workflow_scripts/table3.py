"""Snakemake entry point of rule table3: Table 3 (closest different-class pairs) over the main runs."""

from resdyn import stages
from resdyn.io import log_to
from resdyn.runs import Run

with log_to(snakemake.log[0]):
    stages.table3(
        [Run.from_params(run) for run in snakemake.params.runs],
        list(snakemake.input.pairs),
        list(snakemake.input.trajectories),
        snakemake.params.stem,
        k=snakemake.params.k,
    )
