"""The workflow as a user drives it: config validation, the DAG, and end-to-end runs on a tiny config."""

from __future__ import annotations

import copy
import json

import h5py
import numpy as np
import pytest
from conftest import TINY_CONFIG, copy_workflow

# Every test here runs Snakemake (dry runs or the tiny end-to-end run).
pytestmark = pytest.mark.slow


def test_default_dag_lists_every_stage(workflow):
    jobs = workflow.scheduled_jobs()
    # digits × {resnet18, resnet50}, 1 shard each for the pairwise and shadowing stages (config.yaml).
    assert jobs["prepare_data"] == 1
    assert jobs["train"] == 2
    assert jobs["trajectories"] == 2
    assert jobs["pairwise_shard"] == 2
    assert jobs["pairwise_gather"] == 2
    assert jobs["shadowing_shard"] == 2
    assert jobs["constants"] == 2
    assert jobs["table1"] == jobs["table2"] == jobs["table3"] == 1


def test_shard_count_comes_from_the_config(workflow):
    config = copy.deepcopy(TINY_CONFIG)
    config["analysis"]["shards"] = 7
    workflow.write_config(config, "seven.yaml")
    jobs = workflow.scheduled_jobs("--configfile", "seven.yaml", "--replace-workflow-config")
    assert jobs["pairwise_shard"] == 14  # 2 models × 7 shards
    assert jobs["shadowing_shard"] == 14


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


def test_cpu_jobs_take_no_gpu_slot(workflow, monkeypatch):
    """Without a GPU the profile's gpu=1 cap must not serialize training, trajectories or pairwise shards."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    listed = workflow.snakemake("-n").stdout
    gpu = [line.split("gpu=")[1].split(",")[0] for line in listed.splitlines() if "gpu=" in line]
    assert len(gpu) == 2 + 2 + 2 and set(gpu) == {"0"}  # train, trajectories, pairwise shards


def test_schema_fills_defaults(workflow):
    config = copy.deepcopy(TINY_CONFIG)
    del config["analysis"]
    workflow.write_config(config)
    jobs = workflow.scheduled_jobs()
    assert jobs["pairwise_shard"] == 2 * 4  # the schema's default shard count


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
            assert tiny_run.path("results", "figures", f"{name}_digits_{model}.png").stat().st_size > 0
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
    for k in (1, 2, 3):
        for ext in ("csv", "md", "tex"):
            assert tiny_run.path("results", "tables", f"table{k}.{ext}").stat().st_size > 0
    # Temporary shard files are gone once gathered.
    assert not list(tiny_run.path("results").rglob("shards/*.h5"))


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
    config.update(
        download_dir="data/downloads",
        results_dir="results",
        paper_reference=False,
        lipschitz={"solver": "SCS", "eps": 1e-6},
    )
    return config


def test_rewritten_config_schedules_nothing(tiny_run):
    """Reruns follow the config's meaning, not its spelling: each rewrite below means the same."""
    import yaml

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
    assert jobs["train"] == 1 and jobs["constants"] == 1
    assert "prepare_data" not in jobs
    listed = tiny_run.snakemake("-n", "--configfile", "changed.yaml", "--replace-workflow-config").stdout
    assert "results/digits/tiny_b/model.pt" in listed
    assert "results/digits/tiny_a/model.pt" not in listed


def test_changing_an_analysis_setting_reruns_only_analysis(tiny_run):
    config = copy.deepcopy(TINY_CONFIG)
    config["analysis"]["curve_quantiles"] = [0.1, 0.9]
    tiny_run.write_config(config, "changed.yaml")
    jobs = tiny_run.scheduled_jobs("--configfile", "changed.yaml", "--replace-workflow-config")
    assert set(jobs) >= {"shadowing_gather", "constants"}
    assert not set(jobs) & {"prepare_data", "train", "evaluate", "trajectories", "pairwise_shard"}


def test_second_run_with_one_shard_gives_identical_constants(tiny_run, tmp_path):
    """Determinism and shard invariance at once: a fresh run (training included) with 1 shard instead of 3
    writes byte-identical constants.json files."""
    config = copy.deepcopy(TINY_CONFIG)
    config["analysis"]["shards"] = 1
    wf = copy_workflow(tmp_path / "one_shard")
    wf.write_config(config)
    wf.snakemake("--until", "constants")
    for model in TINY_CONFIG["models"]:
        one = wf.path("results", "digits", model, "constants.json").read_bytes()
        three = tiny_run.path("results", "digits", model, "constants.json").read_bytes()
        assert one == three
