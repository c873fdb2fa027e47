# Config validation, wildcard constraints, output paths and input functions shared by every stage.
import os
import re

from snakemake.utils import validate

from resdyn.config import (
    canonical_config,
    check_entries,
    model_settings,
    sample_size_settings,
    training_settings,
)
from resdyn.device import gpu_may_be_present
from resdyn.readings import DEFINITION, reading_settings

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
# The extra readings (method §3.4); the definition's results keep the per-run paths of method §7.
READINGS = [name for name in config["readings"] if name != DEFINITION]
# Training replicates (method §3.6): replicate 1 is the run at the per-run paths of method §7, replicates
# 2..K live under results/{dataset}/{model}/replicates/{k}/ and differ from it only in the training seed.
REPLICATES = [str(k) for k in range(2, config["replicates"] + 1)]
ENV = "../envs/resdyn.yaml"


wildcard_constraints:
    dataset="|".join(map(re.escape, DATASETS)),
    model="|".join(map(re.escape, MODELS)),
    # "(?!)" never matches: without extra readings no job has a reading wildcard.
    reading="|".join(map(re.escape, READINGS)) or "(?!)",
    # The same for replicates: with K = 1 no job has a replicate wildcard.
    replicate="|".join(REPLICATES) or "(?!)",


scattergather:
    shards=config["analysis"]["shards"],


def run_dir(*parts):
    """results/{dataset}/{model}/<parts>: the per-(dataset, model) folder of method §7."""
    return os.path.join(RESULTS, "{dataset}", "{model}", *parts)


def reading_dir(*parts):
    """results/{dataset}/{model}/readings/{reading}/<parts>: an extra reading's folder (method §3.4)."""
    return run_dir("readings", "{reading}", *parts)


def shard_path(kind, folder=()):
    """Pattern of one scatter shard's file, for scatter/gather (other wildcards escaped); ``folder`` are
    the path parts between the run's folder and shards/ (a reading's ``readings/{reading}``)."""
    escaped = [part.replace("{", "{{").replace("}", "}}") for part in folder]
    return os.path.join(RESULTS, "{{dataset}}", "{{model}}", *escaped, "shards", f"{kind}_{{scatteritem}}.h5")


READING_FOLDER = ("readings", "{reading}")


def replicate_dir(*parts):
    """results/{dataset}/{model}/replicates/{replicate}/<parts>: training replicate k >= 2's folder."""
    return run_dir("replicates", "{replicate}", *parts)


REPLICATE_FOLDER = ("replicates", "{replicate}")


def reading_params(wildcards):
    """The canonical settings of the job's reading (the definition's when the job has no reading
    wildcard): adding or changing one reading changes only its own jobs' params."""
    name = wildcards.get("reading", DEFINITION)
    return reading_settings(config["readings"], name, config["analysis"]["labels"])


def reading_name(wildcards):
    return wildcards.get("reading", DEFINITION)


def uses_probes(reading):
    return reading_settings(config["readings"], reading, config["analysis"]["labels"])["head"] == "probes"


PROBE_READINGS = [name for name in READINGS if uses_probes(name)]


def reading_source(name):
    """Input function: the reading's trajectories.h5 or lipschitz.json: the probes' own (under
    probes/) for a reading with `head: probes`, else the main one."""

    def source(wildcards):
        folder = ("probes",) if uses_probes(wildcards.reading) else ()
        return run_dir(*folder, name).format(dataset=wildcards.dataset, model=wildcards.model)

    return source


def log_path(name):
    return os.path.join(RESULTS, "logs", "{dataset}", "{model}", f"{name}.log")


def benchmark_path(name):
    return os.path.join(RESULTS, "benchmarks", "{dataset}", "{model}", f"{name}.tsv")


def package_sources(*modules):
    """Package modules a cheap analysis rule depends on, as inputs, so that editing them reruns it.

    The expensive stages (data, training, trajectories) deliberately do not list their modules: an edit to
    resdyn/train.py must not silently retrain every model. Rerun those with `snakemake -R <rule>`.
    Every cheap rule also depends on the stage functions and the artifact layer that reads and writes its files.
    """
    return [os.path.join(workflow.basedir, "resdyn", f"{m}.py") for m in ("stages", "artifacts", *modules)]


def gpu_request(device):
    """The `gpu` resource of a job whose torch device is `device` (a setting, or a function of the
    wildcards): 1 where it will run on a GPU, 0 where it runs on the CPU (`cpu`, or `auto` on a machine
    without an NVIDIA driver), so that the local profile's `gpu=1` cap serializes GPU jobs only and never
    CPU work. Under SLURM the profile sets gpu: 0 and requests the GPU through gres instead."""

    def request(wildcards):
        setting = device(wildcards) if callable(device) else device
        return int(setting != "cpu" and gpu_may_be_present())

    return request


def training_params(wildcards):
    """Exactly the training settings of one (dataset, model) and replicate (its seed shifted by k - 1):
    a change reruns only that pair's jobs; replicate 1 (no replicate wildcard) has the configured seed."""
    replicate = int(wildcards.get("replicate", 1))
    return training_settings(config, wildcards.dataset, wildcards.model, replicate=replicate)


def checkpoint_path(wildcards, output):
    """The resumable training checkpoint beside the job's model.pt (not an output, see rules/train.smk)."""
    return os.path.join(os.path.dirname(output.model), "checkpoint.pt")


def model_entry(wildcards):
    return model_settings(config, wildcards.model)


def dataset_entry(wildcards):
    """The data settings of one dataset, without its training overrides (they do not change the data)."""
    return {k: v for k, v in config["datasets"][wildcards.dataset].items() if k != "training"}


def analysis(key):
    return config["analysis"][key]


def sample_size_params():
    """The canonical `sample_size` settings (method §3.6): listed sizes sorted and deduplicated, the
    unused grid settings dropped, so only a change of meaning reruns the sample-size jobs."""
    return sample_size_settings(config["sample_size"])


def per_run(path):
    """Expand a per-(dataset, model) path over every configured pair."""
    return expand(path, dataset=DATASETS, model=MODELS)


def per_reading(path):
    """Expand a per-(dataset, model, reading) path over every pair and every extra reading."""
    return expand(path, dataset=DATASETS, model=MODELS, reading=READINGS)


def replicate_runs(name):
    """(dataset, model, replicate, path of `name`) of every run of Tables 1-2, replicates 1..K of each
    (dataset, model) in config order; replicate 1 at the per-run path."""
    runs = []
    for dataset in DATASETS:
        for model in MODELS:
            for k in range(1, config["replicates"] + 1):
                folder = () if k == 1 else ("replicates", str(k))
                runs.append((dataset, model, k, os.path.join(RESULTS, dataset, model, *folder, name)))
    return runs


def readings_table_runs(name="constants.json"):
    """(dataset, model, reading, path of `name`) of every run in the readings table: the definition's
    and every extra reading's, in config order."""
    runs = []
    for dataset in DATASETS:
        for model in MODELS:
            for reading in [DEFINITION, *READINGS]:
                folder = () if reading == DEFINITION else ("readings", reading)
                path = os.path.join(RESULTS, dataset, model, *folder, name)
                runs.append((dataset, model, reading, path))
    return runs


def all_outputs():
    figures = os.path.join(RESULTS, "figures", "{name}_{dataset}_{model}.png")
    return (
        per_run(run_dir("constants.json"))
        + per_run(run_dir("shadowing_curve.png"))
        + per_reading(reading_dir("constants.json"))
        + per_run(run_dir("sample_size.png"))
        + per_reading(reading_dir("sample_size.png"))
        + (expand(os.path.join(FIGURES, "probes_{dataset}.png"), dataset=DATASETS) if PROBE_READINGS else [])
        + expand(figures, name=["figure2", "figure3", "table3", "orbit"], dataset=DATASETS, model=MODELS)
        + expand(
            os.path.join(RESULTS, "tables", "{table}.{ext}"),
            table=["table1", "table2", "table3", "readings"],
            ext=["csv", "md", "tex"],
        )
    )


# Tables and figures (rules/tables.smk)

TABLES = os.path.join(RESULTS, "tables")
FIGURES = os.path.join(RESULTS, "figures")


def table_outputs(name, caption, **report_labels):
    """{name}.csv as a report item with its caption; the .md and .tex written beside it."""
    return {
        "csv": report(
            os.path.join(TABLES, f"{name}.csv"),
            category="Tables",
            caption=f"../report/{caption}",
            **report_labels,
        ),
        "md": os.path.join(TABLES, f"{name}.md"),
        "tex": os.path.join(TABLES, f"{name}.tex"),
    }


def table_stem(wildcards, output):
    """The path shared by a table's .csv, .md and .tex, taken from the job's own output."""
    return os.path.splitext(output.csv)[0]


def figure(name, category, caption):
    return report(
        os.path.join(FIGURES, f"{name}_{{dataset}}_{{model}}.png"),
        category=category,
        subcategory="{dataset} / {model}",
        caption=f"../report/{caption}",
    )
