"""Shared fixtures: a temporary copy of the workflow and a helper that runs Snakemake inside it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from resdyn.numerics import PORTABLE_ENV

# The ISA caps of portable training (resdyn.numerics) from this process's first kernel on: torch fixes its
# ISA at the first kernel it runs, so without them in-process training would compute at the host's widest
# ISA and differ from the training jobs (subprocesses) that some tests resume or compare with.
os.environ.update(PORTABLE_ENV)

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW_PARTS = (
    "Snakefile",
    "rules",
    "schemas",
    "workflow_scripts",
    "envs",
    "report",
    "profiles",
    "resdyn",
    "config.yaml",
    "configs",
)

# A configuration small enough to run the whole workflow in a few minutes on 2 CPU cores: 240 digits for
# training, 60 for testing, two tiny revised ResNets (T = 4) trained 2 epochs with epoch 1 analysed too,
# three shards, the authors' reading, a reading with per-depth probes and a small sample-size grid.
TINY_CONFIG = {
    "datasets": {"digits": {"source": "sklearn-digits", "max_train": 240, "max_test": 60}},
    "models": {
        "tiny_a": {"blocks": [1, 1, 1, 1], "width": 16},
        "tiny_b": {"blocks": [1, 1, 1, 1], "width": 16, "post_activation": False},
    },
    "training": {"epochs": 2, "lr": 0.003, "batch_size": 32, "seed": 0, "device": "cpu"},
    "checkpoints": [1],
    "analysis": {"shards": 3, "chunk": 16, "batch_size": 32, "device": "cpu"},
    # N = 60: sizes 20, 35, 40 (the reference) and 60, 4 subsets each.
    "sample_size": {"count": 3, "min_size": 20, "subsets": 4, "reference": 40},
    "readings": {
        "authors": {
            "temperature": {"expansive": 1000, "shadowing": 1},
            "depths": "blocks",
            "over_depths": "min",
            "orbits": "distinct",
            "pairing": "independent",
        },
        "probes": {"head": "probes"},
    },
    "probes": {"tolerance": 1.0e-4, "max_iter": 500, "batch_size": 32, "device": "cpu"},
    # Every measure on a few images (docs/robustness.md); 4 trained networks (2 models × 2 epochs).
    "robustness": {
        "max_images": 20,
        "noise_sigmas": [0, 0.3],
        "linf_eps": [0, 0.05],
        "l2_eps": [0, 1.0],
        "pgd_steps": 2,
        "minimal_attack": "fmn",
        "minimal_norms": ["l2"],
        "minimal_steps": 5,
        "device": "cpu",
    },
}


class Workflow:
    """A copy of the workflow in a temporary folder, driven through the real Snakemake command line."""

    def __init__(self, root: Path):
        self.root = root

    def write_config(self, config: dict, name: str = "config.yaml") -> Path:
        path = self.root / name
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    def snakemake(
        self,
        *args: str,
        check: bool = True,
        timeout: int = 900,
        pythonpath: tuple[Path, ...] = (),
        **env_vars: str,
    ) -> subprocess.CompletedProcess:
        """Run Snakemake here; `pythonpath` folders come before the checkout's, `env_vars` are added."""
        path = os.pathsep.join(map(str, (*pythonpath, self.root)))
        env = dict(os.environ, PYTHONPATH=path, OMP_NUM_THREADS="1", **env_vars)
        cmd = [sys.executable, "-m", "snakemake", "--cores", "2", *args]
        proc = subprocess.run(cmd, cwd=self.root, env=env, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"
            )
        return proc

    def scheduled_jobs(self, *args: str) -> dict[str, int]:
        """Rule → number of jobs a dry run would schedule (empty when nothing is to be done)."""
        # args before --quiet, whose choices would swallow a target
        proc = self.snakemake("-n", *args, "--quiet", "rules")
        jobs: dict[str, int] = {}
        for line in proc.stdout.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1].isdigit() and parts[0] not in ("total", "job"):
                jobs[parts[0]] = int(parts[1])
        return jobs

    def path(self, *parts: str) -> Path:
        return self.root.joinpath(*parts)


def copy_workflow(dest: Path) -> Workflow:
    dest.mkdir(parents=True, exist_ok=True)
    for part in WORKFLOW_PARTS:
        src = ROOT / part
        if src.is_dir():
            shutil.copytree(src, dest / part, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.exists():
            shutil.copy2(src, dest / part)
    return Workflow(dest)


@pytest.fixture
def workflow(tmp_path: Path) -> Workflow:
    """A fresh copy of the workflow with the default config."""
    return copy_workflow(tmp_path / "workflow")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Workflow:
    """The whole workflow run once on TINY_CONFIG (shared by the end-to-end tests; do not modify it)."""
    wf = copy_workflow(tmp_path_factory.mktemp("tiny") / "workflow")
    wf.write_config(TINY_CONFIG)
    wf.snakemake()
    return wf
