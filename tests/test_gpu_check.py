"""benchmarks/gpu_check.sh, the prepared GPU check of issue 20: it refuses clearly without a GPU, and its
CPU self-test (``--device cpu --quick``) runs every section, so the script cannot rot on GPU-less CI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"


def _run(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "PYTHON": sys.executable, **env},
    )


def test_without_a_gpu_it_exits_2_with_a_message():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible here: the check would run for real")
    done = _run(CUDA_VISIBLE_DEVICES="")
    assert done.returncode == 2
    assert "no CUDA device visible" in done.stderr and "--device cpu --quick" in done.stderr


@pytest.mark.slow  # trains both models briefly (about 2 minutes on 2 cores)
def test_cpu_self_test_runs_every_section(tmp_path):
    done = _run("--device", "cpu", "--quick", "--out", str(tmp_path))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for title in ("1. training", "2. trajectories", "3. pairwise constants", "4. training throughput", "5."):
        assert title in done.stdout
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["checks"] and all(report["checks"].values())
    assert set(report["training"]) == {"resnet18", "resnet50"}
    assert {"resnet18 fp32", "resnet18 bf16"} <= set(report["throughput"])
