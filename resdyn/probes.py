"""Per-depth heads g_θt: one linear probe per depth on the frozen network's states (method §3.5).

The paper's §3 speaks of a family of heads g_{θ_n}, n = 0..T. The main analysis applies the trained final
head at every depth; a probe instead is fitted to each depth: with the trained network frozen (eval mode),
probe t is the linear classifier z = W_t x_t + b_t (W_t ∈ R^{C×n}) that minimises the mean cross-entropy
of softmax(z) against the true labels over the training images' states x_t. All T+1 probes are trained at
once, by Adam with the same settings for every depth, on the loss Σ_t CE_t: each probe's parameters only
enter its own term, and Adam acts element-wise, so this is T+1 independent fits sharing one pass of the
network per batch.

The states are never materialised: every batch of images is pushed through the frozen network and
discarded (MNIST's 60,000 images at 17 depths would be ~17 GB). Training is deterministic: the probes
start at zero (the problem is convex, so no random start is needed), epoch e visits the images in the order
:func:`resdyn.train.epoch_generator` gives for (seed, e), and a checkpoint after every epoch lets a killed
run resume to weights bitwise equal to an uninterrupted run on the CPU.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from resdyn.data import images_to_tensor
from resdyn.device import resolve_device
from resdyn.io import InputError, atomic_output
from resdyn.model import RevisedResNet
from resdyn.train import CHECKPOINT_FORMAT, epoch_generator, load_checkpoint

log = logging.getLogger(__name__)

PROBE_PROCEDURE = "probes-zero-init-adam-sum-ce-v1"
"""Names the probe training loop in checkpoints; change it when the loop changes."""
SETTINGS_KEYS = ("epochs", "lr", "batch_size", "seed", "device")


def check_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The probe settings {epochs, lr, batch_size, seed, device}; a missing, unknown or bad value is an
    InputError naming it."""
    missing = [k for k in SETTINGS_KEYS if k not in settings]
    unknown = sorted(set(settings) - set(SETTINGS_KEYS))
    if missing or unknown:
        raise InputError(
            f"probe settings: missing {missing}, unknown {unknown} (expected {list(SETTINGS_KEYS)})"
        )
    out = {k: settings[k] for k in SETTINGS_KEYS}
    if (
        int(out["epochs"]) < 1
        or int(out["batch_size"]) < 1
        or not (float(out["lr"]) > 0 and math.isfinite(out["lr"]))
    ):
        raise InputError(
            f"probe settings: epochs={out['epochs']}, batch_size={out['batch_size']} must be ≥ 1 and "
            f"lr={out['lr']} a positive number"
        )
    return out


@torch.no_grad()
def _state_batches(
    model: RevisedResNet,
    images: np.ndarray,
    order: torch.Tensor,
    batch_size: int,
    device: torch.device,
    desc: str,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(row indices, states (B, T+1, n) float32) for consecutive near-equal batches of ``order``."""
    for index in tqdm(
        torch.tensor_split(order, max(1, math.ceil(len(order) / batch_size))),
        desc=desc,
        leave=False,
        disable=None,
        unit="batch",
    ):
        states, _ = model.trajectory(images_to_tensor(images[index.numpy()]).to(device))
        yield index, states


def probe_logits(states: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """z_t = W_t x_t + b_t for every depth: states (B, D, n), weight (D, C, n), bias (D, C) → (B, D, C)."""
    return torch.einsum("bdn,dcn->bdc", states, weight) + bias


def _fingerprint(
    model: RevisedResNet, images: np.ndarray, labels: np.ndarray, settings: Mapping[str, Any]
) -> str:
    """sha256 over what a probe checkpoint must share with the run that resumes it: the frozen network's
    weights, the training arrays, the procedure, lr, batch size and seed (not the epoch count: raising it
    continues the same run)."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    digest.update(np.ascontiguousarray(images).tobytes())
    digest.update(np.ascontiguousarray(labels, dtype="<i8").tobytes())
    digest.update(
        f"{PROBE_PROCEDURE};lr={float(settings['lr'])!r};batch={int(settings['batch_size'])};"
        f"seed={int(settings['seed'])}".encode()
    )
    return digest.hexdigest()


def fit_probes(
    model: RevisedResNet,
    images: np.ndarray,
    labels: np.ndarray,
    settings: Mapping[str, Any],
    *,
    checkpoint_path: str | os.PathLike,
) -> tuple[torch.Tensor, torch.Tensor, list[dict[str, float]]]:
    """Fit one linear probe per depth t = 0..T on the training images' states (module docstring).

    Args:
        model: the trained network; it is frozen (eval mode, no gradients) and left on the settings' device.
        images, labels: the training split (uint8 (N, 3, 32, 32), int (N,)).
        settings: {epochs, lr, batch_size, seed, device} (:func:`check_settings`).
        checkpoint_path: written atomically after every epoch; a checkpoint of the same run is resumed.

    Returns:
        weight (T+1, C, n) and bias (T+1, C) float32 on the CPU, and the log rows {epoch, loss (mean over
        images of the mean over depths of the cross-entropy), seconds}.
    """
    settings = check_settings(settings)
    epochs, batch_size, seed = int(settings["epochs"]), int(settings["batch_size"]), int(settings["seed"])
    device = resolve_device(settings["device"])
    labels = np.asarray(labels)
    if len(images) == 0 or labels.shape != (len(images),):
        raise InputError(
            f"probes: need N ≥ 1 images with one label each, got {len(images)} and {labels.shape}"
        )
    model.to(device).eval()  # frozen: its states are computed under no_grad, so it never gets a gradient
    depths, classes = model.num_blocks + 1, int(model.num_classes)
    weight = torch.zeros((depths, classes, model.state_dim), device=device, requires_grad=True)
    bias = torch.zeros((depths, classes), device=device, requires_grad=True)
    optimizer = torch.optim.Adam([weight, bias], lr=float(settings["lr"]))
    fingerprint = _fingerprint(model, images, labels, settings)

    checkpoint_path = Path(checkpoint_path)
    rows: list[dict[str, float]] = []
    start_epoch = 0
    state = load_checkpoint(checkpoint_path, fingerprint, epochs) if checkpoint_path.exists() else None
    if state is not None:
        with torch.no_grad():
            weight.copy_(state["model"]["weight"])
            bias.copy_(state["model"]["bias"])
        optimizer.load_state_dict(state["optimizer"])
        rows, start_epoch = [dict(r) for r in state["log"]], int(state["epoch"])
        log.info("resuming probes from %s after epoch %d", checkpoint_path, start_epoch)

    y_all = torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int64))
    for epoch in range(start_epoch, epochs):
        started = time.perf_counter()
        order = torch.randperm(len(images), generator=epoch_generator(seed, epoch))
        loss_sum = 0.0
        for index, states in _state_batches(
            model, images, order, batch_size, device, f"probes epoch {epoch + 1}/{epochs}"
        ):
            y = y_all[index].to(device)
            logits = probe_logits(states, weight, bias)  # (B, D, C)
            per_depth = F.cross_entropy(
                logits.permute(0, 2, 1), y[:, None].expand(-1, depths), reduction="none"
            )
            loss = per_depth.mean(dim=0).sum()  # Σ_t CE_t: independent fits
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += float(loss.detach()) / depths * len(index)
        mean_loss = loss_sum / len(images)
        if not math.isfinite(mean_loss):
            raise RuntimeError(f"probe training diverged in epoch {epoch + 1}; lower lr={settings['lr']}")
        rows.append({"epoch": epoch + 1, "loss": mean_loss, "seconds": time.perf_counter() - started})
        checkpoint = {
            "format": CHECKPOINT_FORMAT,
            "fingerprint": fingerprint,
            "epoch": epoch + 1,
            "model": {"weight": weight.detach().cpu(), "bias": bias.detach().cpu()},
            "optimizer": optimizer.state_dict(),
            "log": rows,
        }
        with atomic_output(checkpoint_path) as tmp:
            torch.save(checkpoint, tmp)
        log.info(
            "probes epoch %d/%d: mean loss %.4f, %.1f s", epoch + 1, epochs, mean_loss, rows[-1]["seconds"]
        )
    return weight.detach().cpu(), bias.detach().cpu(), rows


@torch.no_grad()
def probe_scores(
    model: RevisedResNet,
    weight: torch.Tensor,
    bias: torch.Tensor,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    batch_size: int,
    device: str | torch.device,
) -> dict[str, np.ndarray]:
    """Per depth t: the probes' accuracy and mean cross-entropy on ``images``, and the accuracy of the
    network's own head applied at depth t (the main reading's g), in one streamed pass.

    Returns arrays of length T+1: ``accuracy``, ``loss``, ``head_accuracy``.
    """
    device = resolve_device(device)
    model.to(device).eval()
    weight, bias = weight.to(device), bias.to(device)
    depths = weight.shape[0]
    correct = torch.zeros(depths, dtype=torch.float64)
    head_correct = torch.zeros(depths, dtype=torch.float64)
    loss = torch.zeros(depths, dtype=torch.float64)
    y_all = torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int64))
    order = torch.arange(len(images))
    for index, states in _state_batches(model, images, order, batch_size, device, "probe scores"):
        y = y_all[index].to(device)
        logits = probe_logits(states, weight, bias)
        targets = y[:, None].expand(-1, depths)
        loss += F.cross_entropy(logits.permute(0, 2, 1).double(), targets, reduction="none").sum(0).cpu()
        correct += (logits.argmax(dim=2) == targets).sum(0).double().cpu()
        head_correct += (model.head(states).argmax(dim=2) == targets).sum(0).double().cpu()
    n = max(len(images), 1)
    return {
        "accuracy": (correct / n).numpy(),
        "loss": (loss / n).numpy(),
        "head_accuracy": (head_correct / n).numpy(),
    }
