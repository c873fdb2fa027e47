"""Parse-time checks of the workflow config (issue 25, item 3): every case fails with the key and value
named before anything is scheduled (docs/reliability.md, "Bad input", lists them)."""

from __future__ import annotations

import copy
import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from resdyn.config import (
    FILE_NAME_MAX,
    NAME_MAX,
    SEED_MAX,
    canonical_config,
    check_config_files,
    check_entries,
)
from resdyn.io import TEMP_SUFFIX_MAX, InputError
from resdyn.readings import Reading
from resdyn.runs import Run
from resdyn.schema import SCHEMA_PATH

ROOT = Path(__file__).resolve().parents[1]

BASE = {
    "datasets": {"digits": {"source": "sklearn-digits", "max_train": 240, "max_test": 60}},
    "models": {"tiny": {"blocks": [1, 1, 1, 1], "width": 16}},
    "training": {"epochs": 2, "lr": 0.003, "batch_size": 32, "seed": 0, "device": "cpu"},
}


def parsed(config: dict) -> dict:
    """The config as rules/common.smk sees it: canonical, validated against the schema (defaults filled),
    canonical again; then check_entries, as the workflow calls it."""
    from snakemake.utils import validate

    config = canonical_config(copy.deepcopy(config))
    validate(config, str(SCHEMA_PATH))
    config = canonical_config(config)
    check_entries(config)
    return config


def with_changes(**sections) -> dict:
    config = copy.deepcopy(BASE)
    for key, value in sections.items():
        config[key] = value
    return config


def test_base_config_passes():
    parsed(BASE)


# --------------------------------------------------------------------------------------------------------
# Names: a length that keeps every output path valid, a safe character set, no reserved folder
# --------------------------------------------------------------------------------------------------------
def test_name_limit_keeps_every_path_component_valid():
    """Each name is one folder of a run's path (resdyn.runs.Run), never joined with another into a file
    name, so with NAME_MAX every component, plus the atomic write's temporary suffix, fits 255 bytes."""
    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    assert schema["$defs"]["name"]["maxLength"] == NAME_MAX
    run = Run("d" * NAME_MAX, "m" * NAME_MAX, 2, Reading("r" * NAME_MAX))
    for path in (run.file("figures/figure2.png"), run.source("trajectories.h5"), run.file("constants.json")):
        assert max(len(part.encode()) for part in path.split("/")) + 1 + TEMP_SUFFIX_MAX <= FILE_NAME_MAX
    assert len(f".x.tmp-{2**22}") - 1 == TEMP_SUFFIX_MAX


def test_a_236_character_dataset_name_fails_at_parse_time():
    long = "d" * 236
    config = with_changes(datasets={long: BASE["datasets"]["digits"]})
    with pytest.raises(Exception, match="is too long") as info:
        parsed(config)
    assert "datasets" in str(info.value) and long in str(info.value)
    parsed(with_changes(datasets={"d" * NAME_MAX: BASE["datasets"]["digits"]}))


@pytest.mark.parametrize("name", ["-m", "a.b", "a/b", "a b", "é", "_x"])
def test_unsafe_model_names_fail(name):
    config = with_changes(models={name: BASE["models"]["tiny"]})
    with pytest.raises(Exception, match="does not match") as info:
        parsed(config)
    assert "models" in str(info.value)


@pytest.mark.parametrize("name", ["data", "tables", "figures", "logs", "benchmarks", "Figures"])
def test_dataset_names_must_not_be_results_folders(name):
    config = with_changes(datasets={name: BASE["datasets"]["digits"]})
    with pytest.raises(InputError, match=f"name '{name}' is taken by the results folder"):
        parsed(config)


def test_names_differing_only_in_case_fail():
    config = with_changes(models={"Tiny": BASE["models"]["tiny"], "tiny": BASE["models"]["tiny"]})
    with pytest.raises(InputError, match="'Tiny' and 'tiny' differ only in case"):
        parsed(config)


# --------------------------------------------------------------------------------------------------------
# Numbers: quantiles ordered, seeds in range, finite, enough test images
# --------------------------------------------------------------------------------------------------------
def test_curve_quantiles_must_be_ordered():
    with pytest.raises(InputError, match=r"analysis.curve_quantiles = \[0.95, 0.05\]"):
        parsed(with_changes(analysis={"curve_quantiles": [0.95, 0.05]}))
    parsed(with_changes(analysis={"curve_quantiles": [0.5, 0.5]}))


@pytest.mark.parametrize(
    "section, value",
    [
        ("training", {**BASE["training"], "seed": "1e30"}),  # YAML 1.1 reads 1e30 as a string
        ("training", {**BASE["training"], "seed": 10**30}),
        ("robustness", {"seed": 2**64}),
    ],
)
def test_seeds_beyond_torch_range_fail(section, value):
    with pytest.raises(Exception, match="greater than the maximum of 18446744073709551615") as info:
        parsed(with_changes(**{section: value}))
    assert "seed" in str(info.value)


def test_split_seed_beyond_sklearn_range_fails():
    entry = {**BASE["datasets"]["digits"], "seed": 2**32}
    with pytest.raises(Exception, match="greater than the maximum of 4294967295"):
        parsed(with_changes(datasets={"digits": entry}))


def test_replicates_push_the_seed_out_of_range():
    config = with_changes(training={**BASE["training"], "seed": SEED_MAX}, replicates=2)
    with pytest.raises(InputError, match=r"seed 18446744073709551615 .*replicates: 2 reaches"):
        parsed(config)
    parsed(with_changes(training={**BASE["training"], "seed": SEED_MAX}))


def test_checkpoints_must_precede_every_networks_last_epoch():
    with pytest.raises(
        InputError, match=r"checkpoints \[2\] of datasets.digits / models.tiny: not before its last"
    ):
        parsed(with_changes(checkpoints=[1, 2]))
    models = {"tiny": {**BASE["models"]["tiny"], "training": {"epochs": 1}}}
    with pytest.raises(InputError, match=r"checkpoints \[1\] of datasets.digits / models.tiny: .*\(1 epochs"):
        parsed(with_changes(checkpoints=[1], training={**BASE["training"], "epochs": 4}, models=models))
    with pytest.raises(Exception, match="non-unique elements"):
        parsed(with_changes(checkpoints=[1, 1]))
    with pytest.raises(Exception, match="less than the minimum of 1"):
        parsed(with_changes(checkpoints=[0]))
    assert parsed(with_changes(checkpoints=[1]))["checkpoints"] == [1]


@pytest.mark.parametrize(
    "changes, where",
    [
        ({"training": {**BASE["training"], "lr": math.nan}}, "config: training.lr = nan"),
        ({"training": {**BASE["training"], "lr": math.inf}}, "config: training.lr = inf"),
        ({"probes": {"tolerance": math.nan}}, "config: probes.tolerance = nan"),
        ({"lipschitz": {"eps": math.nan}}, "config: lipschitz.eps = nan"),
        ({"analysis": {"curve_quantiles": [math.nan, 0.9]}}, r"config: analysis.curve_quantiles\[0\] = nan"),
        ({"readings": {"hot": {"temperature": math.inf}}}, "config: readings.hot.temperature = inf"),
    ],
)
def test_numbers_must_be_finite(changes, where):
    with pytest.raises(InputError, match=where + ".*must be finite"):
        parsed(with_changes(**changes))


def test_yaml_nan_spelling_is_refused(tmp_path):
    config = yaml.safe_load(yaml.safe_dump(BASE).replace("lr: 0.003", "lr: .nan"))
    assert math.isnan(config["training"]["lr"])
    with pytest.raises(InputError, match="training.lr = nan"):
        parsed(config)


@pytest.mark.parametrize("max_test", [0, 1])
def test_max_test_below_two_fails(max_test):
    entry = {**BASE["datasets"]["digits"], "max_test": max_test}
    with pytest.raises(Exception, match=f"{max_test} is less than the minimum of 2") as info:
        parsed(with_changes(datasets={"digits": entry}))
    assert "max_test" in str(info.value)


def test_npz_path_that_is_a_directory(tmp_path):
    config = with_changes(datasets={"mine": {"source": "npz", "path": str(tmp_path)}})
    with pytest.raises(InputError, match=f"datasets.mine.path: '{tmp_path}' is a directory"):
        parsed(config)


# --------------------------------------------------------------------------------------------------------
# YAML files: parse errors with file and line, duplicated keys
# --------------------------------------------------------------------------------------------------------
def test_invalid_yaml_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("datasets:\n  digits: {source: sklearn-digits\nmodels:\n  m: {}\n")
    with pytest.raises(InputError, match=f"{bad}, line 3, column .*not valid YAML"):
        check_config_files([bad])
    tabs = tmp_path / "tabs.yaml"
    tabs.write_text("datasets:\n\tdigits: {}\n")
    with pytest.raises(InputError, match=f"{tabs}, line 2"):
        check_config_files([tabs])


def test_duplicated_yaml_key_fails(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(BASE))
    dup = tmp_path / "dup.yaml"
    dup.write_text("training:\n  lr: 0.1\n  epochs: 2\n  lr: 0.01\n")
    with pytest.raises(InputError, match=f"{dup}, line 4: key 'lr' given twice.*first on line 2"):
        check_config_files([good, dup])
    check_config_files([good, tmp_path / "absent.yaml"])  # a missing file is Snakemake's to report
    top = tmp_path / "top.yaml"
    top.write_text("models: {a: {}}\nmodels: {b: {}}\n")
    with pytest.raises(InputError, match="key 'models' given twice"):
        check_config_files([top])


def test_repository_configs_are_strictly_valid():
    check_config_files([ROOT / "config.yaml", *sorted((ROOT / "configs").glob("*.yaml"))])


def test_command_line_check(tmp_path):
    dup = tmp_path / "dup.yaml"
    dup.write_text("a: 1\na: 2\n")
    proc = subprocess.run(
        [sys.executable, "-m", "resdyn.config", str(dup)], capture_output=True, text=True, cwd=ROOT
    )
    assert proc.returncode == 1 and f"{dup}, line 2: key 'a' given twice" in proc.stderr
