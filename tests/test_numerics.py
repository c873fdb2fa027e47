"""Portable CPU numerics (issue 26, docs/numerics.md): the same trained weights whatever the thread count and
the host's ISA, and the very bits pinned here, so CI on any x86-64 machine with AVX2 checks the same ones."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from test_train import make_arrays

from resdyn.artifacts import DatasetFile
from resdyn.io import InputError
from resdyn.numerics import PORTABLE_ENV, check_mode

ROOT = Path(__file__).resolve().parents[1]
TINY = {"blocks": [1, 1, 1, 1], "width": 16}
SETTINGS = {"epochs": 2, "lr": 1e-3, "batch_size": 16, "seed": 7, "device": "cpu", "numerics": "portable"}

PORTABLE_WEIGHTS_SHA256 = "af8f1e6e8e2b0a160cc00f7fa5f328ba5c34392bcc60541aa7ef041a99b82bf8"
"""sha256 of the tiny model's weights after training in ``portable`` mode (:func:`weights_sha256`): the same
on every x86-64 CPU with AVX2 and the pinned torch (requirements.lock). A change of torch, MKL or oneDNN
may change it: then re-pin it, say so in the commit, and expect every default-run number to move."""

# A training job as the workflow runs it (workflow_scripts/train.py): torch imported and its thread count
# set before the stage runs; prints the weights' checksum and the numerics record.
WORKER = textwrap.dedent("""
    import hashlib, json, sys
    import torch
    torch.set_num_threads(int(sys.argv[2]))
    from resdyn.stages import train_model
    out = sys.argv[1]
    settings = json.loads(sys.argv[3])
    train_model(sys.argv[4], json.loads(sys.argv[5]), settings, out + "/model.pt", out + "/log.csv",
                out + "/ckpt.pt")
    payload = torch.load(out + "/model.pt", weights_only=True)
    digest = hashlib.sha256()
    for name in sorted(payload["state_dict"]):
        tensor = payload["state_dict"][name].contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.numpy().tobytes())
    print(json.dumps({"sha256": digest.hexdigest(), "numerics": payload["numerics"]}))
""")


@pytest.fixture(scope="module")
def data_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "tiny.h5"
    DatasetFile(
        {"train": make_arrays(48, 3, seed=0), "test": make_arrays(12, 3, seed=1)},
        ["a", "b", "c"],
        dataset="tiny",
        source="npz",
        origin="test",
    ).save(path)
    return path


def train_in_subprocess(data_file: Path, folder: Path, *, threads: int, capped: bool, **settings) -> dict:
    """Train the tiny model in a fresh process with ``threads`` torch threads, the ISA caps of portable mode
    set in its environment before torch starts (``capped``) or not; returns {sha256, numerics}."""
    folder.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if k not in PORTABLE_ENV}
    env |= {"TQDM_DISABLE": "1", "PYTHONPATH": str(ROOT)} | (PORTABLE_ENV if capped else {})
    args = [str(folder), str(threads), json.dumps({**SETTINGS, **settings}), str(data_file), json.dumps(TINY)]
    proc = subprocess.run(
        [sys.executable, "-c", WORKER, *args], env=env, cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="portable bits are x86-64's")
def test_portable_weights_do_not_depend_on_threads_or_isa_and_are_pinned(data_file, tmp_path):
    """Portable training gives the same weights under 1 and 2 threads, with the ISA caps set before torch
    starts and without them (the stage sets them; on an AVX-512 host this is the ISA axis), and exactly
    the pinned bits. A ``fast`` run is recorded as such."""
    runs = {
        (threads, capped): train_in_subprocess(
            data_file, tmp_path / f"{threads}-{capped}", threads=threads, capped=capped
        )
        for threads in (1, 2)
        for capped in (True, False)
    }
    for run in runs.values():
        record = run["numerics"]
        assert record["mode"] == "portable" and record["threads"] == 1 and record["portable"], record
        assert record["isa"]["aten"] == "AVX2" and record["isa"]["mkl_cbwr"] == "AVX2,STRICT", record
        assert set(record["versions"]) == {"torch", "mkl", "onednn"}
    assert len({run["sha256"] for run in runs.values()}) == 1, runs
    assert runs[1, True]["sha256"] == PORTABLE_WEIGHTS_SHA256

    fast = train_in_subprocess(data_file, tmp_path / "fast", threads=2, capped=False, numerics="fast")
    assert fast["numerics"]["mode"] == "fast" and fast["numerics"]["threads"] == 2
    assert not fast["numerics"]["portable"]


def test_numerics_setting():
    from resdyn.config import schema_defaults, training_settings
    from resdyn.train import check_settings

    assert schema_defaults("training")["numerics"] == "portable"
    base = {k: v for k, v in SETTINGS.items() if k != "numerics"}
    assert check_settings(base)["numerics"] == "portable"
    assert check_settings({**base, "numerics": "fast"})["numerics"] == "fast"
    with pytest.raises(InputError, match="numerics"):
        check_settings({**base, "numerics": "exact"})
    with pytest.raises(InputError, match="numerics"):
        check_mode(None)
    # part of the train rule's params: switching it retrains
    config = {
        "training": {**base, "numerics": "portable"},
        "datasets": {"d": {"source": "sklearn-digits"}},
        "models": {"m": {}, "f": {"training": {"numerics": "fast"}}},
    }
    assert training_settings(config, "d", "m")["numerics"] == "portable"
    assert training_settings(config, "d", "f")["numerics"] == "fast"


def test_a_checkpoint_of_one_mode_is_not_resumed_in_the_other():
    import torch

    from resdyn.model import build_model
    from resdyn.train import _run_fingerprint

    images, labels = make_arrays(8, 3, seed=2)
    torch.manual_seed(0)
    model = build_model(TINY, 3)

    def fp(**kw):
        return _run_fingerprint(model, images, labels, lr=1e-3, batch_size=4, seed=0, **kw)

    assert fp(numerics="portable") != fp(numerics="fast") == fp()


def test_applied_restores_threads_and_records():
    import torch

    from resdyn.numerics import applied

    before = torch.get_num_threads()
    env_before = {k: os.environ.get(k) for k in PORTABLE_ENV}
    with applied("portable", "cpu") as record:
        assert torch.get_num_threads() == 1
        assert record["mode"] == "portable" and record["device"] == "cpu" and record["threads"] == 1
    assert torch.get_num_threads() == before
    assert {k: os.environ.get(k) for k in PORTABLE_ENV} == env_before
    with applied("fast", "cpu") as record:
        assert record["threads"] == before and record["mode"] == "fast"
    json.dumps(record)  # goes into metrics.json as it is
