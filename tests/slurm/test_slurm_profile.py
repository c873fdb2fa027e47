"""profiles/slurm without a cluster: Snakemake reads it and assigns the resources docs/cluster.md promises.

The real run on a SLURM cluster is tests/slurm/run.sh (root, installs SLURM); these dry runs only check what
Snakemake would submit, so they run anywhere.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402  (tests/slurm/harness.py, the helpers of run.sh)

GPU_RULES = ("train", "trajectories", "pairwise_shard")


def _dry_run_jobs(workflow, *args: str) -> list[tuple[str, int, dict[str, str]]]:
    """(rule, threads, resources) of every job of a forced dry run."""
    proc = workflow.snakemake("-n", "--forceall", *args)
    jobs = []
    for block in re.split(r"\n(?=\[[^\n]*\]\n(?:local)?rule )", proc.stdout):
        rule = re.search(r"^(?:local)?rule (\w+):", block, re.M)
        if rule is None:
            continue
        threads = re.search(r"^    threads: (\d+)$", block, re.M)
        res = re.search(r"^    resources: (.*)$", block, re.M)
        pairs = (item.split("=", 1) for item in res.group(1).split(", ")) if res else ()
        jobs.append((rule.group(1), int(threads.group(1)) if threads else 1, dict(pairs)))
    return jobs


def _dry_run_resources(workflow, *args: str) -> dict[str, dict[str, str]]:
    """Rule -> the resources of its first job in a forced dry run (as name -> value)."""
    resources: dict[str, dict[str, str]] = {}
    for rule, _, res in _dry_run_jobs(workflow, *args):
        resources.setdefault(rule, res)
    return resources


@pytest.mark.slow  # runs Snakemake (dry runs)
def test_slurm_profile_requests_a_gpu_for_the_gpu_rules_only(workflow):
    resources = _dry_run_resources(workflow, "--workflow-profile", "profiles/slurm")
    for rule in GPU_RULES:
        assert resources[rule]["gres"] == "gpu:1", rule
        assert resources[rule]["gpu"] == "0", rule  # no --gpus on top of --gres
        assert resources[rule]["slurm_partition"] == "gpu", rule
        assert int(resources[rule]["runtime"]) >= 60, rule
    for rule in ("prepare_data", "evaluate", "pairwise_gather", "lipschitz", "constants", "table2"):
        assert "gres" not in resources[rule], rule
        assert resources[rule]["slurm_partition"] == "cpu", rule
        assert int(resources[rule]["mem_mb"]) > 0, rule


@pytest.mark.slow  # runs Snakemake (dry runs)
def test_slurm_profile_gives_every_run_its_rules_resources(workflow):
    """Training replicates and readings are jobs of the same rules: every job of a rule, whatever its run,
    gets that rule's threads and request."""
    jobs = _dry_run_jobs(workflow, "--workflow-profile", "profiles/slurm", "--config", "replicates=2")
    requests: dict[str, set] = {}
    for rule, threads, resources in jobs:
        resources = {k: v for k, v in resources.items() if k not in ("tmpdir",)}
        requests.setdefault(rule, set()).add((threads, tuple(sorted(resources.items()))))
    for rule in (*GPU_RULES, "shadowing_shard", "evaluate", "constants", "sample_size"):
        assert len(requests[rule]) == 1, (rule, requests[rule])
    counts = {rule: sum(1 for r, _, _ in jobs if r == rule) for rule in ("train", "constants")}
    # models × replicates (× epochs 2, 4 and the last × readings)
    assert counts == {"train": 2 * 2, "constants": 2 * 2 * 3 * 2}


@pytest.mark.slow  # runs Snakemake (dry runs)
def test_slurm_profile_sizes_every_rule(workflow):
    """Every rule of the workflow (all readings, probes and replicates enabled), as the profile submits it
    with its own `cores: 512`: no job asks for more CPUs than the profile's largest set-threads (a rule with
    `threads: workflow.cores` left out of set-threads would ask SLURM for 512 CPUs and stay pending forever),
    and every job that requests a GPU locally gets it through gres in the GPU partition."""
    profile = yaml.safe_load((workflow.root / "profiles" / "slurm" / "config.yaml").read_text())
    most = max(profile["set-threads"].values())
    all_rules = set(workflow.snakemake("--list-rules").stdout.split())
    jobs = _dry_run_jobs(
        workflow,
        "--workflow-profile",
        "profiles/slurm",
        "--cores",
        str(profile["cores"]),
        "--configfile",
        "configs/readings.yaml",
        "--config",
        "replicates=2",
    )
    assert {rule for rule, _, _ in jobs} == all_rules  # the check reaches every rule
    for rule, threads, resources in jobs:
        assert threads <= most, (rule, threads)
        assert int(resources["mem_mb"]) > 0 and int(resources["runtime"]) > 0, rule
        if "gpu" in resources:  # the rule's own gpu_request: a GPU job
            assert resources["gres"] == "gpu:1", rule
            assert resources["gpu"] == "0", rule
            assert resources["slurm_partition"] == "gpu", rule
        else:
            assert "gres" not in resources and resources["slurm_partition"] == "cpu", rule


@pytest.mark.slow  # runs Snakemake (dry runs)
def test_default_profile_still_rules_a_plain_local_run(workflow):
    """Without --workflow-profile the local profile applies: no SLURM partitions, and the rules' own gpu
    request: 1 where training (device auto) will find a GPU, 0 on a machine without one."""
    from resdyn.device import gpu_may_be_present

    resources = _dry_run_resources(workflow)
    assert resources["train"]["gpu"] == ("1" if gpu_may_be_present() else "0")
    assert "slurm_partition" not in resources["train"]


def test_derived_test_profile_changes_only_sizes_and_the_gpu_request(tmp_path):
    source = harness.TESTS.parent / "profiles" / "slurm" / "config.yaml"
    changes = harness.derive_profile(source, tmp_path, cpus=2, mem_mb=1000)
    original, derived = (
        yaml.safe_load(source.read_text()),
        yaml.safe_load((tmp_path / "config.yaml").read_text()),
    )
    assert any("gres" in line for line in changes)
    for key in set(original) - {"set-threads", "set-resources", "default-resources"}:
        assert derived[key] == original[key], key
    for rule, res in original["set-resources"].items():
        kept = {k: v for k, v in res.items() if k not in ("gres", "mem_mb", "cpus_per_task")}
        assert {k: derived["set-resources"][rule][k] for k in kept} == kept, rule
        assert "gres" not in derived["set-resources"][rule]
        assert derived["set-resources"][rule]["mem_mb"] == min(res["mem_mb"], 1000)
    assert all(t <= 2 for t in derived["set-threads"].values())
    assert harness.profile_partitions(tmp_path / "config.yaml")["train"] == "gpu"


def test_derive_profile_rejects_a_profile_that_is_not_slurm(tmp_path):
    local = harness.TESTS.parent / "profiles" / "default" / "config.yaml"
    with pytest.raises(harness.HarnessError, match="not a SLURM profile"):
        harness.derive_profile(local, tmp_path / "out", cpus=2, mem_mb=1000)
