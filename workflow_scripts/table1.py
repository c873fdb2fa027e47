"""Snakemake entry point of rule table1: Table 1 (classification performance) over every run."""
from resdyn.io import log_to
from resdyn.tables import result_key, table1, write_table

with log_to(snakemake.log[0]):
    metrics = {result_key(path): path for path in snakemake.input.metrics}
    write_table(table1(metrics, paper_reference=snakemake.params.paper_reference), snakemake.params.stem)
