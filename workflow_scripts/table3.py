"""Snakemake entry point of rule table3: Table 3 (closest different-class pairs) over every run."""
from resdyn.io import log_to
from resdyn.tables import result_key, table3, write_table

with log_to(snakemake.log[0]):
    sources = {result_key(pairs): (pairs, trajectories)
               for pairs, trajectories in zip(snakemake.input.pairs, snakemake.input.trajectories)}
    write_table(table3(sources, snakemake.params.k), snakemake.params.stem)
