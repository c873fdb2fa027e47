"""Snakemake entry point of rule table2: Table 2 (the dynamical-systems constants) over every run."""
from resdyn.io import log_to
from resdyn.tables import result_key, table2, write_table

with log_to(snakemake.log[0]):
    constants = {result_key(path): path for path in snakemake.input.constants}
    write_table(table2(constants, paper_reference=snakemake.params.paper_reference), snakemake.params.stem)
