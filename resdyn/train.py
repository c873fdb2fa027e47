"""Training and evaluation of a revised ResNet (paper §3 "Model details", Table 1; method §4, §7).

Training follows the paper: Adam with PyTorch's default betas, cross-entropy, mini-batches. Each epoch's
shuffle comes from a ``torch.Generator`` seeded from (seed, epoch) alone, and the model and optimizer state
are checkpointed after every epoch, so a killed run that is restarted continues from its last finished
epoch and, on the CPU, ends with weights bitwise equal to an uninterrupted run. The weights after chosen
earlier epochs (snapshots, the config's ``checkpoints``) are kept in the same checkpoint, so they survive a
kill too; the snapshot after epoch e is bitwise the model a run of e epochs ends with.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import math
import os
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import precision_recall_fscore_support
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from resdyn.config import OPT_IN_TRAINING
from resdyn.data import images_to_tensor
from resdyn.device import resolve_device
from resdyn.io import InputError, atomic_output

log = logging.getLogger(__name__)

LOG_COLUMNS = ("epoch", "loss", "accuracy")
CHECKPOINT_FORMAT = 1
TRAINING_PROCEDURE = "adam-ce-even-batches-v1"
"""Names the training loop in checkpoints; change it when the loop changes, so old checkpoints are not
resumed."""
SETTINGS_KEYS = ("epochs", "lr", "batch_size", "seed", "device", *OPT_IN_TRAINING, "numerics")
OPTIONAL_SETTINGS = dict.fromkeys(OPT_IN_TRAINING, False)
"""Settings that may be left out, off when absent (:func:`resdyn.config.training_settings` leaves them
out of the train rule's params while off)."""
RESIDENT_FRACTION = 0.25
"""A training set is kept on a CUDA device when its uint8 images take at most this share of the free
device memory (every dataset of method §5 does on any current GPU: CIFAR-10's 50,000 images are 150 MB)."""


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The CPU generator that shuffles epoch ``epoch`` (0-based): a function of (seed, epoch) only.

    Its seed is drawn from ``numpy.random.SeedSequence([seed, epoch])``, so neighbouring (seed, epoch)
    pairs give unrelated permutations and a resumed run sees exactly the batches it would have seen.
    """
    state = np.random.SeedSequence([int(seed), int(epoch)]).generate_state(1, dtype=np.uint64)[0]
    generator = torch.Generator(device="cpu")
    generator.manual_seed(int(state))
    return generator


def _check_arrays(images: np.ndarray, labels: np.ndarray, num_classes: int, where: str) -> None:
    if (
        not isinstance(images, np.ndarray)
        or images.dtype != np.uint8
        or images.ndim != 4
        or images.shape[1:] != (3, 32, 32)
    ):
        raise InputError(
            f"{where}: images must be a uint8 array (N, 3, 32, 32), got "
            f"{getattr(images, 'dtype', type(images))} {getattr(images, 'shape', '')}"
        )
    if not isinstance(labels, np.ndarray) or labels.shape != (len(images),) or labels.dtype.kind not in "iu":
        raise InputError(
            f"{where}: labels must be an integer array ({len(images)},), got "
            f"{getattr(labels, 'dtype', type(labels))} {getattr(labels, 'shape', '')}"
        )
    if len(images) == 0:
        raise InputError(f"{where}: no images")
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if bad.size:
        raise InputError(
            f"{where}: label {labels[bad[0]]} at index {bad[0]} is outside the model's "
            f"classes 0..{num_classes - 1}"
        )


def _run_fingerprint(
    model: nn.Module,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    lr: float,
    batch_size: int,
    seed: int,
    channels_last: bool = False,
    bf16_autocast: bool = False,
    numerics: str = "fast",
) -> str:
    """sha256 over what a checkpoint must share with the run that resumes it: the architecture (parameter
    names and shapes), the training arrays, the training procedure, lr, batch size and seed, and the
    numerics options when they are on (so the default run's fingerprint is the one it always had). The
    epoch count is left out on purpose: raising it continues the same run, which gives the same weights as
    training that long from scratch."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype};".encode())
    digest.update(np.ascontiguousarray(images).tobytes())
    digest.update(np.ascontiguousarray(labels, dtype="<i8").tobytes())
    digest.update(f"{TRAINING_PROCEDURE};lr={float(lr)!r};batch={int(batch_size)};seed={int(seed)}".encode())
    if channels_last:
        digest.update(b";channels_last")
    if bf16_autocast:
        digest.update(b";bf16_autocast")
    if numerics != "fast":
        digest.update(f";numerics={numerics}".encode())
    return digest.hexdigest()


def _resident_on(device: torch.device, nbytes: int) -> bool:
    """Whether a training set of ``nbytes`` (uint8 images + int64 labels) is kept on ``device``: on a CUDA
    device when it takes at most :data:`RESIDENT_FRACTION` of the free memory (``device.free_memory``);
    never on the CPU, where the arrays already are in memory."""
    from resdyn.device import free_memory

    free = free_memory(device)
    return free is not None and nbytes <= RESIDENT_FRACTION * free


def _write_log(path: str | os.PathLike, rows: Sequence[Mapping[str, Any]]) -> None:
    with atomic_output(path) as tmp:
        with open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=LOG_COLUMNS)
            writer.writeheader()
            for row in rows:
                writer.writerow({k: row[k] for k in LOG_COLUMNS})


def load_checkpoint(path: Path, fingerprint: str, epochs: int) -> dict[str, Any] | None:
    """The checkpoint at ``path`` if it belongs to this run and does not exceed ``epochs``, else None."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # atomic writes make this rare; a foreign file is not worth crashing for
        log.warning(
            "%s: unreadable checkpoint (%s: %s); training from scratch", path, type(err).__name__, err
        )
        return None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        log.warning("%s: not a resdyn checkpoint; training from scratch", path)
        return None
    if state.get("fingerprint") != fingerprint:
        log.warning("%s: checkpoint of a different model, data set or settings; training from scratch", path)
        return None
    if state["epoch"] > epochs:
        log.warning(
            "%s: checkpoint is at epoch %d, past the %d requested; training from scratch",
            path,
            state["epoch"],
            epochs,
        )
        return None
    return state


def train(
    model: nn.Module,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
    device: str | torch.device,
    checkpoint_path: str | os.PathLike,
    log_path: str | os.PathLike,
    channels_last: bool = False,
    bf16_autocast: bool = False,
    numerics: str = "fast",
    snapshot_epochs: Collection[int] = (),
    on_snapshot: Callable[[int, dict[str, torch.Tensor]], None] | None = None,
) -> list[dict[str, float]]:
    """Train ``model`` in place with Adam (default betas) on the mean cross-entropy (paper §3).

    Epoch e (0-based) visits the images in ``torch.randperm(N, generator=epoch_generator(seed, e))``
    order, cut into ⌈N/batch_size⌉ consecutive batches of near-equal size (at most ``batch_size``).
    After each epoch the log row {epoch (1-based), loss (mean over images), accuracy (fraction correct
    during the epoch)} is appended to ``log_path`` (CSV, rewritten atomically; the epoch's wall-clock
    seconds go to the log only, so the file is the same in every run of the same settings), and model +
    optimizer state + epoch + log rows go to ``checkpoint_path`` atomically. A checkpoint of the same run
    found at the start is resumed from its last finished epoch. The model's initial weights are the
    caller's (seed them before building it).

    On a CUDA device the uint8 training set and labels are copied to the device once when they fit
    (:data:`RESIDENT_FRACTION`), each batch is gathered and converted there, and the epoch's loss and
    accuracy are summed on the device (one synchronisation per epoch instead of per batch). The numbers
    are the same as with per-batch host copies: ``float32(x) / 255`` and the float64 sums are exact
    operations wherever they run. On the CPU nothing changes.

    ``channels_last`` trains in the NHWC memory format and ``bf16_autocast`` runs the forward pass and
    the loss under ``torch.autocast(dtype=torch.bfloat16)`` (parameters, gradients and the optimizer stay
    float32). Both change which kernels run, and bf16 rounds activations to 8 bits of mantissa, so the
    weights differ from the default's (by how much: benchmarks/gpu_check.sh prints the loss curves side by
    side); both are off by default, and with them off training is bitwise the same as before they existed.
    The model is returned in the default (contiguous) memory format either way.
    ``numerics`` names the numerics the caller applied (:mod:`resdyn.numerics`; the stage applies them):
    here it only keeps a checkpoint of one mode from being resumed in the other.
    ``snapshot_epochs``: 1-based epochs before the last whose weights (state dict on the CPU, BatchNorm
    statistics included) are kept in the checkpoint as training passes them; at the end
    ``on_snapshot(epoch, state)`` receives each, in increasing order. A checkpoint that lacks a requested
    snapshot it has passed is not resumed (training starts from scratch and passes it again).
    Returns the log rows; the model is left in eval mode on ``device``.
    """
    if epochs < 1 or batch_size < 1 or not (lr > 0 and math.isfinite(lr)):
        raise InputError(
            f"training settings: epochs={epochs}, batch_size={batch_size} must be ≥ 1 and "
            f"lr={lr} must be a positive number"
        )
    snapshot_epochs = sorted({int(e) for e in snapshot_epochs})
    if any(not 1 <= e < epochs for e in snapshot_epochs):
        raise InputError(
            f"snapshot epochs {snapshot_epochs}: each must be in 1..{epochs - 1} (before the last)"
        )
    num_classes = int(model.num_classes)
    _check_arrays(images, labels, num_classes, "training data")
    device = resolve_device(device)
    checkpoint_path = Path(checkpoint_path)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model.to(device, memory_format=memory_format)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    fingerprint = _run_fingerprint(
        model,
        images,
        labels,
        lr=lr,
        batch_size=batch_size,
        seed=seed,
        channels_last=channels_last,
        bf16_autocast=bf16_autocast,
        numerics=numerics,
    )

    rows: list[dict[str, float]] = []
    snapshots: dict[int, dict[str, torch.Tensor]] = {}
    start_epoch = 0
    state = load_checkpoint(checkpoint_path, fingerprint, epochs) if checkpoint_path.exists() else None
    if state is not None:
        kept = {int(e): weights for e, weights in state.get("snapshots", {}).items()}
        missing = [e for e in snapshot_epochs if e <= state["epoch"] and e not in kept]
        if missing:
            log.warning(
                "%s: checkpoint at epoch %d lacks the snapshots of epochs %s; training from scratch",
                checkpoint_path,
                state["epoch"],
                missing,
            )
            state = None
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        rows = [dict(row) for row in state["log"]]
        start_epoch = int(state["epoch"])
        snapshots = {e: kept[e] for e in snapshot_epochs if e in kept}
        log.info("resuming from %s after epoch %d", checkpoint_path, start_epoch)
        if start_epoch == epochs:
            _write_log(log_path, rows)

    labels_t = torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int64))
    n = len(images)
    resident = _resident_on(device, images.nbytes + labels_t.numel() * 8)
    if resident:  # one host-to-device copy for the whole run
        images_dev = torch.from_numpy(np.ascontiguousarray(images)).to(device)
        labels_dev = labels_t.to(device)
        log.info("training set resident on %s (%.1f MB)", device, images.nbytes / 2**20)
    for epoch in range(start_epoch, epochs):
        started = time.perf_counter()
        model.train()
        order = torch.randperm(n, generator=epoch_generator(seed, epoch))
        # float64 sums on the device: the same IEEE operations as Python floats, one sync per epoch
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        correct = torch.zeros((), dtype=torch.int64, device=device)
        # near-equal batches rather than full ones plus a remainder: a remainder of a few images gives
        # BatchNorm noisy statistics, and the last one of an epoch would then sit in the running averages
        batches = torch.tensor_split(order.to(device) if resident else order, math.ceil(n / batch_size))
        for index in tqdm(
            batches, desc=f"epoch {epoch + 1}/{epochs}", leave=False, disable=None, unit="batch"
        ):
            if resident:
                x = images_dev[index].to(torch.float32).div_(255.0)
                y = labels_dev[index]
            else:
                x = images_to_tensor(images[index.numpy()]).to(device, non_blocking=True)
                y = labels_t[index].to(device, non_blocking=True)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16_autocast):
                logits = model(x)
                loss = F.cross_entropy(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach().double() * len(index)
            correct += (logits.detach().argmax(dim=1) == y).sum()
        loss_sum, correct = float(loss_sum), int(correct)
        mean_loss = loss_sum / n
        if not math.isfinite(mean_loss):
            raise RuntimeError(
                f"training diverged in epoch {epoch + 1} (mean loss {mean_loss}); lower lr={lr}"
            )
        rows.append(
            {
                "epoch": epoch + 1,
                "loss": mean_loss,
                "accuracy": correct / n,
            }
        )
        _write_log(log_path, rows)
        weights = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        if epoch + 1 in snapshot_epochs:  # a copy: on the CPU `weights` are the live parameters
            snapshots[epoch + 1] = {k: v.contiguous().clone() for k, v in weights.items()}
        checkpoint = {
            "format": CHECKPOINT_FORMAT,
            "fingerprint": fingerprint,
            "epoch": epoch + 1,
            "model": weights,
            "optimizer": optimizer.state_dict(),
            "log": rows,
            "snapshots": snapshots,
        }
        with atomic_output(checkpoint_path) as tmp:
            torch.save(checkpoint, tmp)
        log.info(
            "epoch %d/%d: loss %.4f, accuracy %.4f, %.1f s",
            epoch + 1,
            epochs,
            mean_loss,
            correct / n,
            time.perf_counter() - started,
        )
    if channels_last:
        model.to(memory_format=torch.contiguous_format)
    model.eval()
    if on_snapshot is not None:
        for e in snapshot_epochs:
            on_snapshot(e, snapshots[e])
    return rows


@torch.no_grad()
def predict_logits(
    model: nn.Module, images: np.ndarray, *, device: str | torch.device, batch_size: int
) -> torch.Tensor:
    """Logits (N, C) float32 on the CPU of ``model`` in eval mode, computed in batches of ``batch_size``."""
    device = resolve_device(device)
    model.to(device).eval()
    out = []
    for start in tqdm(range(0, len(images), batch_size), desc="evaluate", leave=False, disable=None):
        out.append(model(images_to_tensor(images[start : start + batch_size]).to(device)).float().cpu())
    return torch.cat(out)


def evaluate(
    model: nn.Module, images: np.ndarray, labels: np.ndarray, *, device: str | torch.device, batch_size: int
) -> dict[str, float | int]:
    """Table 1 metrics: macro precision, recall and F1 (scikit-learn, zero_division=0), accuracy,
    loss = mean cross-entropy (1/N)·Σ_i −log softmax(z_i)[y_i] (in float64 from the float32 logits), n_test.
    """
    if batch_size < 1:
        raise InputError(f"evaluation batch_size must be ≥ 1, got {batch_size}")
    _check_arrays(images, labels, int(model.num_classes), "evaluation data")
    logits = predict_logits(model, images, device=device, batch_size=batch_size)
    if not torch.isfinite(logits).all():
        raise InputError("evaluation: the model produced non-finite logits (a diverged model?)")
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    loss = float(F.cross_entropy(logits.double(), y, reduction="mean"))
    pred = logits.argmax(dim=1).numpy()
    precision, recall, f1, _ = precision_recall_fscore_support(labels, pred, average="macro", zero_division=0)
    return {
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "accuracy": float(np.mean(pred == labels)),
        "loss": loss,
        "n_test": int(len(labels)),
    }


def check_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The training settings {epochs, lr, batch_size, seed, device, channels_last, bf16_autocast,
    numerics}; a missing key (other than the optional ones, :data:`OPTIONAL_SETTINGS`, and ``numerics``,
    which defaults to the schema's default) or an unknown key is an error."""
    from resdyn.config import schema_defaults
    from resdyn.numerics import check_mode

    settings = {**OPTIONAL_SETTINGS, "numerics": schema_defaults("training")["numerics"], **settings}
    check_mode(settings["numerics"])
    missing = [k for k in SETTINGS_KEYS if k not in settings]
    unknown = sorted(set(settings) - set(SETTINGS_KEYS))
    if missing or unknown:
        raise InputError(
            f"training settings: missing {missing}, unknown {unknown} (expected {list(SETTINGS_KEYS)})"
        )
    return {k: settings[k] for k in SETTINGS_KEYS}
