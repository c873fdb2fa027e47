"""Training determinism, checkpoint resume (including a real SIGKILL), evaluation against a brute force."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from resdyn.artifacts import DatasetFile, load_model
from resdyn.data import images_to_tensor
from resdyn.device import resolve_device
from resdyn.io import InputError, read_json
from resdyn.model import build_model
from resdyn.stages import evaluate_model as evaluate_from_files
from resdyn.stages import train_model as train_from_files
from resdyn.train import epoch_generator, evaluate, train

TINY = {"blocks": [1, 1, 1, 1], "width": 16}
SETTINGS = {"epochs": 3, "lr": 1e-3, "batch_size": 16, "seed": 7, "device": "cpu"}


def make_arrays(n: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Images whose class shows as a bright horizontal band, plus noise, so a tiny model can learn them."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, size=n).astype(np.int64)
    images = rng.integers(0, 60, size=(n, 3, 32, 32)).astype(np.uint8)
    for i, y in enumerate(labels):
        images[i, :, 8 * y : 8 * y + 8, :] += 150
    return images, labels


@pytest.fixture(scope="module")
def data_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "tiny.h5"
    train_arrays = make_arrays(48, 3, seed=0)
    test_arrays = make_arrays(20, 3, seed=1)
    DatasetFile(
        {"train": train_arrays, "test": test_arrays},
        ["a", "b", "c"],
        dataset="tiny",
        source="npz",
        origin="test",
    ).save(path)
    return path


def run_training(data_file: Path, folder: Path, **overrides) -> dict[str, torch.Tensor]:
    settings = {**SETTINGS, **overrides}
    train_from_files(
        data_file, TINY, settings, folder / "model.pt", folder / "train_log.csv", folder / "ckpt.pt"
    )
    return torch.load(folder / "model.pt", weights_only=True)["state_dict"]


def assert_bitwise_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def read_log(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def uninterrupted(data_file, tmp_path_factory) -> tuple[dict[str, torch.Tensor], Path]:
    folder = tmp_path_factory.mktemp("uninterrupted")
    return run_training(data_file, folder), folder


@pytest.mark.slow  # trains a model
def test_same_seed_gives_bitwise_equal_weights(data_file, uninterrupted, tmp_path):
    weights, folder = uninterrupted
    assert_bitwise_equal(run_training(data_file, tmp_path), weights)
    other = run_training(data_file, tmp_path / "seed8", seed=8)
    assert not torch.equal(other["head.weight"], weights["head.weight"])


@pytest.mark.slow  # trains a model
def test_log_and_checkpoint(uninterrupted):
    _, folder = uninterrupted
    rows = read_log(folder / "train_log.csv")
    assert list(rows[0]) == ["epoch", "loss", "accuracy"]
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert all(float(r["loss"]) > 0 and 0 <= float(r["accuracy"]) <= 1 for r in rows)
    assert float(rows[-1]["loss"]) < float(rows[0]["loss"])
    checkpoint = torch.load(folder / "ckpt.pt", weights_only=True)
    assert checkpoint["epoch"] == 3 and len(checkpoint["log"]) == 3
    assert not [p for p in folder.iterdir() if ".tmp-" in p.name]


@pytest.mark.slow  # trains a model
def test_resume_after_a_shorter_run_is_bitwise_equal(data_file, uninterrupted, tmp_path):
    weights, folder = uninterrupted
    run_training(data_file, tmp_path, epochs=1)
    assert len(read_log(tmp_path / "train_log.csv")) == 1
    assert_bitwise_equal(run_training(data_file, tmp_path), weights)
    rows, full_rows = read_log(tmp_path / "train_log.csv"), read_log(folder / "train_log.csv")
    assert [(r["epoch"], r["loss"], r["accuracy"]) for r in rows] == [
        (r["epoch"], r["loss"], r["accuracy"]) for r in full_rows
    ]


@pytest.mark.slow  # trains a model
def test_resume_after_sigkill_is_bitwise_equal(data_file, uninterrupted, tmp_path):
    weights, _ = uninterrupted
    settings = {**SETTINGS, "epochs": 6}
    reference = run_training(data_file, tmp_path / "reference", **settings)
    script = textwrap.dedent(f"""
        import torch
        torch.set_num_threads({torch.get_num_threads()})
        from resdyn.stages import train_model as train_from_files
        train_from_files({str(data_file)!r}, {TINY!r}, {settings!r}, {str(tmp_path / "model.pt")!r},
                         {str(tmp_path / "train_log.csv")!r}, {str(tmp_path / "ckpt.pt")!r})
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, "TQDM_DISABLE": "1"})
    deadline = time.monotonic() + 120
    while not (tmp_path / "ckpt.pt").exists():
        assert proc.poll() is None, "training subprocess ended before its first checkpoint"
        assert time.monotonic() < deadline, "no checkpoint within 120 s"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    killed_at = torch.load(tmp_path / "ckpt.pt", weights_only=True)["epoch"]
    assert 1 <= killed_at < 6 and not (tmp_path / "model.pt").exists()

    resumed = run_training(data_file, tmp_path, **settings)
    assert_bitwise_equal(resumed, reference)
    assert [int(r["epoch"]) for r in read_log(tmp_path / "train_log.csv")] == list(range(1, 7))


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["state_dict"]


def test_epoch_snapshots_equal_shorter_runs_and_survive_a_resume(data_file, uninterrupted, tmp_path):
    """The snapshot after epoch e is bit for bit the model of an e-epoch run; a resumed job writes the
    snapshots it passed before the kill from its checkpoint, and one lacking a newly asked snapshot
    trains again from scratch."""
    weights, _ = uninterrupted
    snapshots = {1: tmp_path / "e1" / "model.pt", 2: tmp_path / "e2" / "model.pt"}

    def train_job() -> None:  # the training job of the workflow: model, log, checkpoint, snapshots
        train_from_files(
            data_file,
            TINY,
            SETTINGS,
            tmp_path / "model.pt",
            tmp_path / "log.csv",
            tmp_path / "ckpt.pt",
            snapshots,
        )

    train_job()
    assert_bitwise_equal(_weights(tmp_path / "model.pt"), weights)
    for epoch, path in snapshots.items():
        assert_bitwise_equal(
            _weights(path), run_training(data_file, tmp_path / f"short{epoch}", epochs=epoch)
        )
        _, meta = load_model(path)
        assert meta["class_names"] == ["a", "b", "c"]

    # a job killed after its last epoch (the checkpoint holds both snapshots): the rerun writes them again
    for path in snapshots.values():
        path.unlink()
    train_job()
    assert_bitwise_equal(_weights(snapshots[1]), run_training(data_file, tmp_path / "short1b", epochs=1))

    # a checkpoint of a run without snapshots cannot give epoch 1's weights: training starts again
    plain = tmp_path / "plain"
    run_training(data_file, plain)
    again = {1: plain / "e1.pt"}
    train_from_files(
        data_file, TINY, SETTINGS, plain / "model.pt", plain / "train_log.csv", plain / "ckpt.pt", again
    )
    assert_bitwise_equal(_weights(again[1]), _weights(snapshots[1]))
    assert_bitwise_equal(_weights(plain / "model.pt"), weights)


def test_snapshot_epochs_must_precede_the_last(data_file, tmp_path):
    with pytest.raises(InputError, match=r"snapshot epochs \[3\]: each must be in 1..2"):
        train_from_files(
            data_file,
            TINY,
            SETTINGS,
            tmp_path / "m.pt",
            tmp_path / "l.csv",
            tmp_path / "c.pt",
            {3: tmp_path / "x"},
        )


@pytest.mark.slow  # trains a model
def test_checkpoint_of_other_settings_is_not_resumed(data_file, uninterrupted, tmp_path):
    weights, _ = uninterrupted
    run_training(data_file, tmp_path, epochs=2, lr=5e-3)
    assert_bitwise_equal(run_training(data_file, tmp_path), weights)


def _plain_loop(model, images, labels, *, epochs, lr, batch_size, seed):
    """The training loop as it was before the GPU options (issue 20): per-batch host tensors, Python float
    sums. The default path of :func:`train` must give exactly its weights and log."""
    import math

    from torch.nn import functional as F

    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    labels_t = torch.from_numpy(labels.astype(np.int64))
    losses = []
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(images), generator=epoch_generator(seed, epoch))
        loss_sum = 0.0
        for index in torch.tensor_split(order, math.ceil(len(images) / batch_size)):
            x = images_to_tensor(images[index.numpy()])
            loss = F.cross_entropy(model(x), labels_t[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += float(loss.detach()) * len(index)
        losses.append(loss_sum / len(images))
    return losses


def _fresh_model():
    torch.manual_seed(3)
    return build_model(TINY, 3)


@pytest.mark.slow  # trains a model
@pytest.mark.parametrize("resident", [False, True])
def test_default_training_is_the_plain_loop_bit_for_bit(monkeypatch, tmp_path, resident):
    """Defaults (no channels_last, no bf16) give the weights and losses of the plain loop; so does the
    device-resident training set (forced here on the CPU: gather + convert where the data lives)."""
    import resdyn.train as train_module

    monkeypatch.setattr(train_module, "_resident_on", lambda device, nbytes: resident)
    images, labels = make_arrays(40, 3, seed=4)
    reference = _fresh_model()
    ref_losses = _plain_loop(reference, images, labels, epochs=2, lr=1e-3, batch_size=16, seed=7)
    model = _fresh_model()
    rows = train(
        model,
        images,
        labels,
        epochs=2,
        lr=1e-3,
        batch_size=16,
        seed=7,
        device="cpu",
        checkpoint_path=tmp_path / "c.pt",
        log_path=tmp_path / "l.csv",
    )
    assert_bitwise_equal(model.state_dict(), reference.state_dict())
    assert [r["loss"] for r in rows] == ref_losses


@pytest.mark.slow  # trains a model
def test_channels_last_and_bf16_autocast_train_and_have_their_own_checkpoints(tmp_path):
    from resdyn.train import _run_fingerprint

    images, labels = make_arrays(40, 3, seed=4)
    common = dict(epochs=1, lr=1e-3, batch_size=16, seed=7, device="cpu", log_path=tmp_path / "l.csv")
    default = _fresh_model()
    train(default, images, labels, checkpoint_path=tmp_path / "a.pt", **common)
    for option in ("channels_last", "bf16_autocast"):
        model = _fresh_model()
        rows = train(
            model, images, labels, checkpoint_path=tmp_path / f"{option}.pt", **common, **{option: True}
        )
        assert np.isfinite(rows[0]["loss"])
        assert all(p.is_contiguous() for p in model.parameters())  # saved in the default layout

        # a checkpoint of the default run is not resumed with the option on, and vice versa
        def fp(**kw):
            return _run_fingerprint(_fresh_model(), images, labels, lr=1e-3, batch_size=16, seed=7, **kw)

        assert fp(**{option: True}) != fp() == fp(channels_last=False, bf16_autocast=False)
    bf16 = _fresh_model()
    train(bf16, images, labels, checkpoint_path=tmp_path / "b.pt", bf16_autocast=True, **common)
    assert not all(
        torch.equal(a, b) for a, b in zip(bf16.state_dict().values(), default.state_dict().values())
    )


def test_epoch_generator_depends_on_seed_and_epoch_only():
    perm = lambda s, e: torch.randperm(50, generator=epoch_generator(s, e))  # noqa: E731
    assert torch.equal(perm(3, 2), perm(3, 2))
    assert not torch.equal(perm(3, 2), perm(3, 1))
    assert not torch.equal(perm(3, 2), perm(2, 3))


def test_resolve_device():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(InputError, match="'gpu'"):
        resolve_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="cuda"):
            resolve_device("cuda")


def test_bad_training_input_raises(data_file, tmp_path):
    model = build_model(TINY, 3)
    images, labels = make_arrays(8, 3, seed=2)
    kwargs = dict(
        epochs=1,
        lr=1e-3,
        batch_size=4,
        seed=0,
        device="cpu",
        checkpoint_path=tmp_path / "c.pt",
        log_path=tmp_path / "l.csv",
    )
    with pytest.raises(InputError, match="label 5 at index 0"):
        train(model, images, np.r_[5, labels[1:]], **kwargs)
    with pytest.raises(InputError, match="uint8"):
        train(model, images.astype(np.float32), labels, **kwargs)
    with pytest.raises(InputError, match="lr=-1"):
        train(model, images, labels, **{**kwargs, "lr": -1.0})
    with pytest.raises(InputError, match="missing \\['seed'\\]"):
        train_from_files(
            data_file,
            TINY,
            {k: v for k, v in SETTINGS.items() if k != "seed"},
            tmp_path / "m.pt",
            tmp_path / "l.csv",
            tmp_path / "c.pt",
        )


def metrics_bruteforce(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Macro precision/recall/F1 over the classes present in labels ∪ predictions (scikit-learn's rule),
    0 where undefined; mean cross-entropy by log-sum-exp; all in float64 with loops."""
    logits = logits.astype(np.float64)
    pred = logits.argmax(axis=1)
    classes = sorted(set(labels.tolist()) | set(pred.tolist()))
    precisions, recalls, f1s = [], [], []
    for c in classes:
        tp = sum(1 for p, y in zip(pred, labels) if p == c and y == c)
        fp = sum(1 for p, y in zip(pred, labels) if p == c and y != c)
        fn = sum(1 for p, y in zip(pred, labels) if p != c and y == c)
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        precisions.append(precision)
        recalls.append(recall)
        f1s.append(2 * precision * recall / (precision + recall) if precision + recall else 0.0)
    losses = []
    for z, y in zip(logits, labels):
        top = z.max()
        losses.append(top + np.log(np.sum(np.exp(z - top))) - z[y])
    return {
        "precision": float(np.mean(precisions)),
        "recall": float(np.mean(recalls)),
        "f1": float(np.mean(f1s)),
        "accuracy": float(np.mean(pred == labels)),
        "loss": float(np.mean(losses)),
        "n_test": len(labels),
    }


@pytest.mark.parametrize("case", ["random", "single_class", "two_images", "one_image_class"])
def test_evaluate_matches_bruteforce(case):
    torch.manual_seed(5)
    model = build_model(TINY, 4).eval()
    images, labels = make_arrays(13, 4, seed=3)
    if case == "single_class":
        labels[:] = 2
    elif case == "two_images":
        images, labels = images[:2], np.array([0, 3], dtype=np.int64)
    elif case == "one_image_class":
        labels = np.r_[np.zeros(12, dtype=np.int64), [1]]
    with torch.no_grad():
        logits = model(images_to_tensor(images)).numpy()
    got = evaluate(model, images, labels, device="cpu", batch_size=5)
    expected = metrics_bruteforce(logits, labels)
    assert got.keys() == expected.keys()
    for key in expected:
        assert got[key] == pytest.approx(expected[key], rel=1e-6, abs=1e-12), key


@pytest.mark.slow  # trains a model
def test_train_then_evaluate_from_files(data_file, uninterrupted, tmp_path):
    _, folder = uninterrupted
    metrics = evaluate_from_files(
        folder / "model.pt", data_file, tmp_path / "metrics.json", device="cpu", batch_size=7
    )
    assert read_json(tmp_path / "metrics.json") == metrics
    assert set(metrics) == {"precision", "recall", "f1", "accuracy", "loss", "n_test", "versions", "numerics"}
    assert metrics["numerics"]["mode"] == "portable" and metrics["numerics"]["threads"] == 1
    assert metrics["n_test"] == 20
    model, meta = load_model(folder / "model.pt")
    assert meta["class_names"] == ["a", "b", "c"] and meta["model_entry"]["blocks"] == [1, 1, 1, 1]


def test_opt_in_training_switches_stay_out_of_the_settings_while_off():
    """channels_last / bf16_autocast off (the schema's defaults, written out or not) leave the train rule's
    params as they were before the switches existed, so no existing model is retrained; on, they are part
    of that (dataset, model)'s settings only."""
    from resdyn.config import training_settings

    base = {"epochs": 2, "lr": 1e-3, "batch_size": 32, "seed": 0, "device": "cpu"}
    config = {
        "training": {**base, "channels_last": False, "bf16_autocast": False},
        "datasets": {"d": {"source": "sklearn-digits"}},
        "models": {"m": {}, "fast": {"training": {"bf16_autocast": True}}},
    }
    assert training_settings(config, "d", "m") == base
    assert training_settings(config, "d", "fast") == base | {"bf16_autocast": True}
    config["datasets"]["d"]["training"] = {"channels_last": True}
    assert training_settings(config, "d", "m") == base | {"channels_last": True}
