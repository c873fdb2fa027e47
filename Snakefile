# resdyn: reproduce "A qualitative theory of dynamical systems for assessing stability in ResNets".
# Stages (method §6): prepare data → train → evaluate → trajectories → pairwise shards → gather →
# shadowing shards → gather → Lipschitz → constants → sample size → tables, figures, report; beside
# them, measured robustness per trained network and its correlation with the constants.
# All logic lives in the package resdyn/; workflow_scripts/ are thin entry points.
from snakemake.utils import min_version

min_version("9.18")


from resdyn.config import check_config_files

# Strictly, before Snakemake reads them: a duplicated key or a YAML error names the file and line.
check_config_files(["config.yaml", *workflow.overwrite_configfiles])


configfile: "config.yaml"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/train.smk"
include: "rules/trajectories.smk"
include: "rules/pairwise.smk"
include: "rules/shadowing.smk"
include: "rules/lipschitz.smk"
include: "rules/probes.smk"
include: "rules/constants.smk"
include: "rules/robustness.smk"
include: "rules/sample_size.smk"
include: "rules/tables.smk"


report: "report/workflow.rst"


# A job killed by SIGKILL (an OOM kill, a wall-time limit) leaves its temporaries; at the end of the failed
# run, still under this run's lock, they are removed (rules/common.smk, remove_temporaries_of_failed_jobs).
onerror:
    remove_temporaries_of_failed_jobs(workflow.dag)


rule all:
    default_target: True
    input:
        all_outputs(),
