"""Any job killed by SIGKILL, before, during or after writing, is recovered by a plain rerun with the
results of an uninterrupted run and no temporaries left (docs/reliability.md, "Interrupted jobs").

Each case copies the finished tiny run, forces one output's job with the job's process set to kill
itself (tests/kill_hook/sitecustomize.py) at one point, checks that Snakemake reports the failure, reruns
the same target without the hook, and compares every result file with the uninterrupted run's.

CI runs a representative subset (:data:`CI_CASES`: each kind of writer and kill point once, the issue's
killed pairwise shard included); RESDYN_KILL_MATRIX=full runs every rule at every point
(:data:`RULE_TARGETS` × :data:`KILL_POINTS`: 69 cases, 12 min 24 s on 2 idle cores).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from conftest import Workflow

pytestmark = pytest.mark.slow

KILL_HOOK = Path(__file__).parent / "kill_hook"
KILL_POINTS = ("start", "rename", "exit")

# Rule → (the workflow script its job runs, an output of one of its jobs in the tiny run). The shard rules'
# outputs are temporary, so their case forces the gather, whose rerun needs every shard again.
RULE_TARGETS = {
    "prepare_data": ("prepare_data", "data/digits.h5"),
    "train": ("train", "digits/tiny_a/model.pt"),
    "evaluate": ("evaluate", "digits/tiny_a/metrics.json"),
    "trajectories": ("trajectories", "digits/tiny_a/trajectories.h5"),
    "pairwise_shard": ("pairwise_shard", "digits/tiny_a/pairs.h5"),
    "pairwise_gather": ("pairwise_gather", "digits/tiny_a/pairs.h5"),
    "shadowing_shard": ("shadowing_shard", "digits/tiny_a/shadowing.h5"),
    "shadowing_gather": ("shadowing_gather", "digits/tiny_a/shadowing.h5"),
    "lipschitz": ("lipschitz", "digits/tiny_a/lipschitz.json"),
    "probes": ("probes", "digits/tiny_a/probes/probes.pt"),
    "probe_trajectories": ("trajectories", "digits/tiny_a/probes/trajectories.h5"),
    "probe_lipschitz": ("lipschitz", "digits/tiny_a/probes/lipschitz.json"),
    "probes_figure": ("probes_figure", "figures/digits/probes.png"),
    "constants": ("constants", "digits/tiny_a/constants.json"),
    "sample_size": ("sample_size", "digits/tiny_a/sample_size.json"),
    "table1": ("table1", "tables/table1.csv"),
    "table2": ("table2", "tables/table2.csv"),
    "table3": ("table3", "tables/table3.csv"),
    "readings_table": ("readings_table", "tables/readings.csv"),
    "figures": ("figures", "digits/tiny_a/figures/figure2.png"),
    "robustness": ("robustness", "digits/tiny_a/robustness.csv"),
    "robustness_table": ("robustness_table", "tables/robustness.csv"),
    "dynamics": ("dynamics", "tables/dynamics.csv"),
}
CI_CASES = [
    ("prepare_data", "rename"),
    ("train", "rename"),  # its first epoch's checkpoint: the rerun starts training afresh
    ("pairwise_shard", "rename"),  # the case: a shard killed, its temporary left behind
    ("shadowing_gather", "exit"),  # three outputs written, the job killed before it exits
    ("table3", "start"),
]
CASES = (
    [(rule, point) for rule in RULE_TARGETS for point in KILL_POINTS]
    if os.environ.get("RESDYN_KILL_MATRIX") == "full"
    else CI_CASES
)

# Files that differ between runs by design: logs and timings, and the data stage's cache of checksums.
NOT_RESULTS = ("logs", "benchmarks")


def result_files(root: Path) -> dict[str, Path]:
    results = root / "results"
    return {
        str(p.relative_to(results)): p
        for p in results.rglob("*")
        if p.is_file() and p.parts[len(results.parts)] not in NOT_RESULTS and p.name != "sha256-cache.json"
    }


def same_h5(a: Path, b: Path) -> bool:
    """Same groups, datasets and attributes (HDF5 object headers may hold write times, so not the bytes)."""

    def entries(path: Path) -> dict:
        out = {}
        with h5py.File(path, "r") as handle:

            def visit(name: str, obj) -> None:
                value = obj[()] if isinstance(obj, h5py.Dataset) else None
                out[name] = (value, {k: obj.attrs[k] for k in obj.attrs})

            handle.visititems(visit)
            out["/"] = (None, {k: handle.attrs[k] for k in handle.attrs})
        return out

    left, right = entries(a), entries(b)
    if left.keys() != right.keys():
        return False
    for name, (value, attrs) in left.items():
        other_value, other_attrs = right[name]
        if value is not None and not np.array_equal(value, other_value, equal_nan=value.dtype.kind == "f"):
            return False
        if attrs.keys() != other_attrs.keys():
            return False
        if any(not np.array_equal(np.asarray(attrs[k]), np.asarray(other_attrs[k])) for k in attrs):
            return False
    return True


def same_torch(a: Path, b: Path) -> bool:
    """Same payload, tensor by tensor (its recorded ``tensors_sha256`` included)."""

    def equal(x, y) -> bool:
        if isinstance(x, torch.Tensor):
            return isinstance(y, torch.Tensor) and torch.equal(x, y)
        if isinstance(x, dict):
            return isinstance(y, dict) and x.keys() == y.keys() and all(equal(x[k], y[k]) for k in x)
        if isinstance(x, (list, tuple)):
            return type(x) is type(y) and len(x) == len(y) and all(map(equal, x, y))
        return x == y

    return equal(torch.load(a, weights_only=True), torch.load(b, weights_only=True))


def same_result(a: Path, b: Path) -> bool:
    if a.read_bytes() == b.read_bytes():
        return True
    if a.suffix == ".h5":
        return same_h5(a, b)
    if a.suffix == ".pt":
        return same_torch(a, b)
    return False


def _case_id(case) -> str:
    rule, point = case.values if hasattr(case, "values") else case
    return f"{rule}-{point}"


@pytest.mark.parametrize(("rule", "point"), CASES, ids=list(map(_case_id, CASES)))
def test_killed_job_is_recovered_by_a_plain_rerun(tiny_run, tmp_path, rule, point):
    script, target = RULE_TARGETS[rule]
    wf = Workflow(tmp_path / "killed")
    shutil.copytree(tiny_run.root, wf.root, symlinks=True)
    target = f"results/{target}"
    # As in a run that computes the target for the first time: a forced job whose old output stayed valid
    # (the gather, when only a shard was killed) leaves a rerun nothing to do, so the killed shard's
    # temporary would wait for the next write of that shard (docs/reliability.md).
    wf.path(target).unlink()
    killed = wf.snakemake(
        "--force",
        target,
        check=False,
        pythonpath=(KILL_HOOK,),
        RESDYN_KILL_SCRIPT=script,
        RESDYN_KILL_POINT=point,
    )
    assert killed.returncode != 0, killed.stdout[-2000:]
    assert f"Error in rule {rule}:" in killed.stderr, killed.stderr[-3000:]

    wf.snakemake(target)  # the plain rerun

    reference, recovered = result_files(tiny_run.root), result_files(wf.root)
    assert recovered.keys() == reference.keys()
    differing = [name for name in reference if not same_result(reference[name], recovered[name])]
    assert differing == []
    leftovers = [p for p in wf.path("results").rglob("*") if ".tmp-" in p.name or p.parent.name == "shards"]
    assert leftovers == []


def test_every_rule_has_a_kill_case(workflow):
    """The full matrix reaches every rule of the workflow (a new rule must add its case here)."""
    rules = set(workflow.snakemake("--list-rules").stdout.split()) - {"all"}
    assert rules == set(RULE_TARGETS)
