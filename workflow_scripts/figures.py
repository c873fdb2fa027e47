"""Snakemake entry point of rule figures: Figures 2-3, Table 3's image pairs and the best orbit strip of one
trained network."""

from resdyn import stages
from resdyn.io import log_to
from resdyn.runs import Run

with log_to(snakemake.log[0]):
    stages.figures(
        Run.from_params(snakemake.params.run),
        data_path=snakemake.input.data,
        trajectories_path=snakemake.input.trajectories,
        pairs_path=snakemake.input.pairs,
        shadowing_path=snakemake.input.shadowing,
        constants_path=snakemake.input.constants,
        figure2_png=snakemake.output.figure2,
        figure3_png=snakemake.output.figure3,
        pairs_png=snakemake.output.pairs_png,
        orbit_png=snakemake.output.orbit_png,
        orbit_table_stem=snakemake.params.orbit_stem,
        k=snakemake.params.k,
    )
