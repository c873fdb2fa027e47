"""The device resolver and the light analysis jobs: torch is imported only where a model runs."""

from __future__ import annotations

import subprocess
import sys

import pytest

from resdyn.device import device_name, gpu_may_be_present, resolve_device
from resdyn.io import InputError

# Every module a light analysis job imports (pairwise, shadowing, gathers, Lipschitz of a linear head,
# constants, tables, figures), through the stage functions the entry points call.
ANALYSIS_MODULES = (
    "resdyn.stages",
    "resdyn.artifacts",
    "resdyn.distances",
    "resdyn.shadowing",
    "resdyn.lipschitz",
    "resdyn.constants",
    "resdyn.tables",
    "resdyn.figures",
    "resdyn.config",
    "resdyn.device",
    "resdyn.provenance",
    "resdyn.runs",
    "resdyn.readings",
    "resdyn.paper_reference",
)


def _python(code: str, **env: str) -> str:
    import os

    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env={**os.environ, **env}
    )
    return proc.stdout.strip()


def test_analysis_modules_do_not_import_torch():
    code = (
        "import sys; "
        + "; ".join(f"import {m}" for m in ANALYSIS_MODULES)
        + "; print('torch' in sys.modules)"
    )
    assert _python(code) == "False"


def test_auto_on_a_machine_without_gpu_needs_no_torch():
    code = (
        "import sys; from resdyn.device import device_name, gpu_may_be_present; "
        "print(gpu_may_be_present(), device_name('auto'), device_name('cpu'), 'torch' in sys.modules)"
    )
    assert _python(code, CUDA_VISIBLE_DEVICES="") == "False cpu cpu False"


def test_device_name_agrees_with_resolve_device():
    import torch

    expected = "cuda" if gpu_may_be_present() and torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert device_name("auto").split(":")[0] == expected
    assert device_name("cpu") == "cpu"
    with pytest.raises(InputError, match="'gpu'"):
        device_name("gpu")


def test_fit_count_keeps_the_configured_value_on_the_cpu_and_follows_free_memory_on_a_gpu(monkeypatch):
    from resdyn import device as device_module

    assert device_module.free_memory("cpu") is None
    assert device_module.fit_count("cpu", 10**6, default=256, limit=450) == 256
    # a CUDA device with 10 GB free: half of it at 1 MB per item, capped by the limit, at least 1
    monkeypatch.setattr(device_module, "free_memory", lambda device: 10 * 10**9)
    assert device_module.fit_count("cuda", 10**6, default=256, limit=10**6) == 5000
    assert device_module.fit_count("cuda", 10**6, default=256, limit=450) == 450
    assert device_module.fit_count("cuda", 10**12, default=256, limit=450) == 1


def test_trajectory_batch_follows_the_device(monkeypatch):
    import torch

    from resdyn import device as device_module
    from resdyn.model import build_model
    from resdyn.trajectories import STATES_HOST_LIMIT, batch_for_device

    model = build_model({"blocks": [1, 1, 1, 1], "width": 16}, 3)
    assert batch_for_device(model, torch.device("cpu"), 256, 450, store_states=False) == 256
    monkeypatch.setattr(device_module, "free_memory", lambda device: 8 * 10**9)
    per_image = 16 * (model.num_blocks + 1) * model.state_dim + 16 * model.state_dim
    assert (
        batch_for_device(model, torch.device("cpu"), 256, 10**6, store_states=False) == 4 * 10**9 // per_image
    )
    assert batch_for_device(model, torch.device("cpu"), 256, 10**6, store_states=True) == STATES_HOST_LIMIT
