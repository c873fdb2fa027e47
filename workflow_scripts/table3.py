"""Snakemake entry point of rule table3: Table 3 (closest different-class pairs) over every run."""

from resdyn import stages
from resdyn.io import log_to

with log_to(snakemake.log[0]):
    stages.table3(
        list(snakemake.input.pairs),
        list(snakemake.input.trajectories),
        snakemake.params.stem,
        k=snakemake.params.k,
    )
