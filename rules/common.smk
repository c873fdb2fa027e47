# Config validation, the runs the config asks for, the one path scheme, and the input functions shared by
# every stage.
import functools
import os
import re

from snakemake.logging import logger
from snakemake.utils import validate

from resdyn.config import (
    FILE_SOURCES,
    attack_settings,
    canonical_config,
    check_entries,
    data_settings,
    dataset_settings,
    model_settings,
    sample_size_settings,
    training_settings,
)
from resdyn.device import gpu_may_be_present
from resdyn.io import SHA256_CACHE_NAME, remove_stale_temporaries
from resdyn.paper_reference import paper_key
from resdyn.runs import (
    PROBES_FOLDER,
    configured_runs,
    last_epoch_runs,
    snapshot_folder,
    trained_runs,
)

# The config's meaning, not its spelling, decides what reruns: Snakemake compares each job's params by
# repr, so key order, `1e-3` vs `0.001`, an omitted default vs the default written out, or a value from
# --config (a string) vs a config file must all give the same values. canonical_config converts by the
# schema's types and orders keys by the schema; validate fails at parse time with a message naming an
# unknown key or a bad value, and fills in the defaults, which the second pass puts in their place.
config.update(canonical_config(config))
validate(config, "../schemas/config.schema.yaml")
config.update(canonical_config(config))
# What the schema cannot check (a model that cannot be built, a missing npz file) fails here too, before
# anything is scheduled.
check_entries(config)

# How the jobs import resdyn, with no PYTHONPATH set here (setting it at parse time is an undeclared
# environment variable, and --use-conda strips PYTHONPATH from jobs anyway): Snakemake puts the Snakefile's
# folder on sys.path and appends its own sys.path to every script job's, conda jobs included, so a job
# finds this checkout's resdyn ahead of an editable install's import hook (`make install` installs this
# checkout in editable mode: the same code). A caller's PYTHONPATH comes first (the tests and the SLURM
# harness point it at their copy); a regular, non-editable install of resdyn would also come first.

RESULTS = config["results_dir"]
DATASETS = list(config["datasets"])
MODELS = list(config["models"])
ENV = "../envs/resdyn.yaml"

# Every run the config asks for (resdyn.runs: datasets × models × replicates × epochs × readings),
# resolved once. A run's files live under its folder, results/<run.folder>/: the wildcard {run} is that
# folder, and {trained} the folder of a trained network (the runs of the reading `definition`, one per
# replicate and epoch), which holds the files every reading of that network shares (model.pt,
# trajectories.h5, lipschitz.json, robustness.csv, probes/).
RUNS = configured_runs(config)
TRAINED_RUNS = trained_runs(RUNS)
RUN = {run.folder: run for run in RUNS}
TRAINED = {run.training_folder: run for run in TRAINED_RUNS}
# The epochs whose weights each training job keeps beside the last (config `checkpoints`); the training
# jobs are the last epoch's trained networks, and write every epoch's model.pt.
CHECKPOINTS = sorted(config["checkpoints"])
# Tables 1-2 and the readings table show the last epoch (the main runs); the epochs are in the dynamics
# table and figures, and every run in the robustness correlation.
LAST_RUNS = last_epoch_runs(RUNS)
LAST_TRAINED_RUNS = trained_runs(LAST_RUNS)
# Table 3 and the probes figure show replicate 1 of each (dataset, model).
MAIN_RUNS = [run for run in LAST_TRAINED_RUNS if run.replicate == 1]
PROBE_RUNS = [run for run in LAST_RUNS if run.reading.head == "probes"]


def main_probe_runs(dataset):
    """Replicate 1 of every model of `dataset` with a probes reading: the probes figure's runs."""
    return [run for run in PROBE_RUNS if run.dataset == dataset and run.replicate == 1]


def _alternatives(names):
    # "(?!)" never matches: a wildcard with no value has no job.
    return "|".join(map(re.escape, sorted(names, key=len, reverse=True))) or "(?!)"


# {training}: the folder of a training job (the last epoch's trained network), which also writes the
# earlier epochs' model.pt under it; a wildcard of its own, since {trained} also names those epochs.
wildcard_constraints:
    dataset=_alternatives(DATASETS),
    run=_alternatives(RUN),
    trained=_alternatives(TRAINED),
    training=_alternatives(run.training_folder for run in LAST_TRAINED_RUNS),


scattergather:
    shards=config["analysis"]["shards"],


def results(*parts):
    return os.path.join(RESULTS, *parts)


def run_file(name):
    """results/{run}/<name>: a file of one run's analysis."""
    return results("{run}", name)


def trained_file(name):
    """results/{trained}/<name>: a file of one trained network."""
    return results("{trained}", name)


def probes_file(name):
    """results/{trained}/probes/<name>: a file of a trained network's per-depth probes (method §3.5)."""
    return results("{trained}", PROBES_FOLDER, name)


def shard_file(kind):
    """Pattern of one scatter shard's file under its run folder, for scatter/gather ({run} escaped)."""
    return results("{{run}}", "shards", f"{kind}_{{scatteritem}}.h5")


def source_of(name):
    """Input function: the trajectories.h5 or lipschitz.json the job's reading reads (Run.source: the
    probes' own for a reading with `head: probes`)."""
    return lambda w: results(RUN[w.run].source(name))


def trained_run(w):
    """The trained network of a job over {trained}, or of a training job over {training}."""
    folder = getattr(w, "trained", None)
    return TRAINED[folder if folder is not None else w.training]


def dataset_file(w):
    """Input function: results/data/<dataset>.h5 of the job's trained network."""
    return results("data", f"{trained_run(w).dataset}.h5")


def run_params(w):
    """The job's run (resdyn.runs.Run.params): a change of its reading reruns only its jobs."""
    return RUN[w.run].params()


def trained_params(w):
    """The job's trained network (resdyn.runs.Run.params of its reading `definition`)."""
    return trained_run(w).params()


def log_file(name, key="run"):
    return results("logs", "{%s}" % key, f"{name}.log")


def benchmark_file(name, key="run"):
    return results("benchmarks", "{%s}" % key, f"{name}.tsv")


def package_sources(*modules):
    """Package modules a cheap analysis rule depends on, as inputs, so that editing them reruns it.

    The expensive stages (data, training, trajectories) deliberately do not list their modules: an edit to
    resdyn/train.py must not silently retrain every model. Rerun those with `snakemake -R <rule>`.
    Every cheap rule also depends on the stage functions, the run type and the artifact layer. The paths
    are relative to the working directory, so a checkout moved elsewhere reruns nothing.
    """
    return [
        os.path.relpath(os.path.join(workflow.basedir, "resdyn", f"{m}.py"))
        for m in ("stages", "artifacts", "runs", *modules)
    ]


def gpu_request(device):
    """The `gpu` resource of a job whose torch device is `device` (a setting, or a function of the
    wildcards): 1 where it will run on a GPU, 0 where it runs on the CPU (`cpu`, or `auto` on a machine
    without an NVIDIA driver), so that the local profile's `gpu=1` cap serializes GPU jobs only and never
    CPU work. Under SLURM the profile sets gpu: 0 and requests the GPU through gres instead."""

    def request(wildcards):
        setting = device(wildcards) if callable(device) else device
        return int(setting != "cpu" and gpu_may_be_present())

    return request


def training_params(w):
    """Exactly the training settings of one trained network (its seed shifted by replicate - 1): a change
    reruns only that network's jobs."""
    run = trained_run(w)
    return training_settings(config, run.dataset, run.model, replicate=run.replicate)


# Every (dataset, model), in config order: one dynamics figure each.
NETWORK_KEYS = [[dataset, model] for dataset in DATASETS for model in MODELS]


def dynamics_figure(dataset, model):
    """results/figures/<dataset>/dynamics_<model>.png: the constants against the epoch."""
    return results("figures", dataset, f"dynamics_{model}.png")


def run_epoch(run):
    """The 1-based epoch whose weights `run` analyses: its checkpoint, or its network's last epoch."""
    if run.epoch is not None:
        return run.epoch
    return training_settings(config, run.dataset, run.model, replicate=run.replicate)["epochs"]


def training_file(name):
    """results/{training}/<name>: a file of a training job (its last epoch's trained network)."""
    return results("{training}", name)


def snapshot_files(name):
    """results/{training}/epochs/<e>/<name> for every epoch of `checkpoints`: a training job's outputs."""
    return [results(snapshot_folder("{training}", epoch), name) for epoch in CHECKPOINTS]


def checkpoint_path(wildcards, output):
    """The resumable training checkpoint beside the job's model.pt (not an output, see rules/train.smk)."""
    return os.path.join(os.path.dirname(output.model), "checkpoint.pt")


def data_entry(wildcards):
    """The dataset's settings without its file's location (resdyn.config.data_settings)."""
    return data_settings(config, wildcards.dataset)


def source_record(dataset):
    """results/data/<dataset>.source.json: what prepare_data read (resdyn.data.write_source_record)."""
    return results("data", f"{dataset}.source.json")


SHA256_CACHE = results("data", SHA256_CACHE_NAME)


@functools.cache
def _source_content(dataset):
    entry = dataset_settings(config, dataset)
    if entry["source"] not in FILE_SOURCES:  # bundled data: nothing to hash, and no torch import here
        return None
    from resdyn.data import source_content

    return source_content(entry, config["download_dir"], source_record(dataset), SHA256_CACHE)


def source_content(wildcards):
    """The content digest of the dataset's user files (resdyn.data.source_content), computed once per
    parse: a param of prepare_data, so new content reruns it and everything downstream, while `touch` or
    a copy elsewhere (the config pointing at it) reruns nothing."""
    return _source_content(wildcards.dataset)


def model_entry(w):
    return model_settings(config, trained_run(w).model)


def dataset_entry(wildcards):
    return dataset_settings(config, wildcards.dataset)


def paper_rows(runs):
    """The paper's (dataset, model) each run stands for (resdyn.paper_reference.paper_key, from the
    entries' `paper_row` or their names), or None for every run when `paper_reference` is off."""
    if not config["paper_reference"]:
        return None
    return [
        paper_key(
            run.dataset,
            run.model,
            config["datasets"][run.dataset].get("paper_row"),
            config["models"][run.model].get("paper_row"),
        )
        for run in runs
    ]


def analysis(key):
    return config["analysis"][key]


def sample_size_params():
    """The canonical `sample_size` settings (method §3.6): listed sizes sorted and deduplicated, the
    unused grid settings dropped, so only a change of meaning reruns the sample-size jobs."""
    return sample_size_settings(config["sample_size"])


def files_of(runs, name, trained=False):
    """results/<run folder>/<name> of each run (<training folder> with `trained`)."""
    return [results(run.trained_file(name) if trained else run.file(name)) for run in runs]


FIGURE_NAMES = ["figure2", "figure3", "table3", "orbit"]


def all_outputs():
    return (
        files_of(RUNS, "constants.json")
        + files_of(RUNS, "shadowing_curve.png")
        + files_of(RUNS, "sample_size.png")
        + [
            results("figures", dataset, "probes.png")
            for dataset in dict.fromkeys(r.dataset for r in PROBE_RUNS)
        ]
        + [f for name in FIGURE_NAMES for f in files_of(TRAINED_RUNS, f"figures/{name}.png")]
        + expand(
            results("tables", "{table}.{ext}"),
            table=["table1", "table2", "table3", "readings"],
            ext=["csv", "md", "tex"],
        )
        # measured robustness (rules/robustness.smk) and its correlation with the constants
        + files_of(TRAINED_RUNS, "robustness.csv", trained=True)
        + expand(results("tables", "robustness.{ext}"), ext=["csv", "md", "tex"])
        + [results("figures", "robustness.png")]
        # the constants along training, when `checkpoints` asks for earlier epochs
        + (
            expand(results("tables", "dynamics.{ext}"), ext=["csv", "md", "tex"])
            + [dynamics_figure(dataset, model) for dataset, model in NETWORK_KEYS]
            if CHECKPOINTS
            else []
        )
    )


# Tables and figures (rules/tables.smk)


def table_outputs(stem, caption, **report_labels):
    """{stem}.csv as a report item with its caption; the .md and .tex written beside it."""
    return {
        "csv": report(f"{stem}.csv", category="Tables", caption=f"../report/{caption}", **report_labels),
        "md": f"{stem}.md",
        "tex": f"{stem}.tex",
    }


def table_stem(wildcards, output):
    """The path shared by a table's .csv, .md and .tex, taken from the job's own output."""
    return os.path.splitext(output.csv)[0]


def remove_temporaries_of_failed_jobs(dag):
    """Delete the temporaries (resdyn.io.atomic_output) that killed jobs of this run left beside the
    outputs of its jobs; called by the Snakefile's onerror handler when a run ends with a failed job.

    A killed job's temporary would otherwise wait for the next write of that output, which a rerun may
    never make: a forced gather whose shard was killed keeps its old, valid output, so the rerun needs
    neither the gather nor the shard. Only this run's outputs are swept, not all of results/, and only
    while this Snakemake still holds its lock on them (onerror runs inside it): another Snakemake on
    disjoint targets may be writing its own temporaries in the same folder.
    """
    for job in dag.needrun_jobs(exclude_finished=False):
        for path in job.output:
            for stale in remove_stale_temporaries(path):
                logger.info(f"Removed {stale}, the temporary of a killed job's output.")


def run_report(path, category, caption, subcategory="{run}"):
    return report(path, category=category, subcategory=subcategory, caption=f"../report/{caption}")
