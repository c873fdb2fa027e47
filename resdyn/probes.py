"""Per-depth heads g_θt: one linear probe per depth on the frozen network's states (method §3.5).

The paper's §3 speaks of a family of heads g_{θ_n}, n = 0..T. The main analysis applies the trained final
head at every depth; a probe instead is fitted to each depth: with the trained network frozen (eval mode),
probe t is the linear classifier z = W_t x_t + b_t (W_t ∈ R^{C×n}) that minimises

    L_t(W, b) = (1/N) Σ_i CE(softmax(W x_t(i) + b), y_i) + (λ/2)·‖W‖_F²

over the training images' states x_t(i): a multinomial logistic regression, convex, and strictly convex in
W for λ > 0 (the bias is not penalised), so it has one minimiser even when the states separate the classes
(n ≥ N is common). It is the problem of scikit-learn's ``LogisticRegression(C=1/(λN))``.

Each probe is fitted to convergence, not for a fixed number of epochs: full-batch L-BFGS
(``torch.optim.LBFGS`` with the strong-Wolfe line search) in float64 from W = 0, b = 0, until the Euclidean
norm of the full gradient ∇L_t (over W and b) is at most ``tolerance``, or ``max_iter`` iterations. The final
gradient norm and iteration count are recorded per depth (probes.csv, probes.pt's log); a probe that stops
at ``max_iter`` above the tolerance is logged as a warning. Why L-BFGS in torch rather than scikit-learn:
the same float64 minimiser, but the stopping rule is on the gradient norm we report, the fit runs on the
analysis device, and the states never take the float64 (N, n) copy per depth that scikit-learn would add to
its own working copies. Everything is deterministic: no random start, no shuffling, full-batch sums.

The states come from the frozen network in streamed batches and are cached in float32 for as many depths at
once as ``cache_gib`` allows (one pass of the network per group of depths, at least one depth per group);
each depth is then fitted on its float64 copy. Memory: N·n·(4·group + 8) bytes (MNIST's 60,000 images with
n = 4,096: 1 GB of cache per depth plus a 2 GB float64 copy).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from resdyn.data import images_to_tensor
from resdyn.device import resolve_device
from resdyn.io import InputError
from resdyn.model import RevisedResNet

log = logging.getLogger(__name__)

SETTINGS_KEYS = ("tolerance", "max_iter", "l2", "batch_size", "cache_gib", "device")
_CHUNK = 10
"""L-BFGS iterations between two checks of the gradient norm."""


def check_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The probe settings {tolerance, max_iter, l2, batch_size, cache_gib, device}; a missing, unknown or
    bad value is an InputError naming it."""
    missing = [k for k in SETTINGS_KEYS if k not in settings]
    unknown = sorted(set(settings) - set(SETTINGS_KEYS))
    if missing or unknown:
        raise InputError(
            f"probe settings: missing {missing}, unknown {unknown} (expected {list(SETTINGS_KEYS)})"
        )
    out = {k: settings[k] for k in SETTINGS_KEYS}
    bad = []
    if not (float(out["tolerance"]) > 0 and math.isfinite(out["tolerance"])):
        bad.append(f"tolerance={out['tolerance']} must be a positive number")
    if not (float(out["l2"]) >= 0 and math.isfinite(out["l2"])):
        bad.append(f"l2={out['l2']} must be a number ≥ 0")
    if not (float(out["cache_gib"]) > 0 and math.isfinite(out["cache_gib"])):
        bad.append(f"cache_gib={out['cache_gib']} must be a positive number")
    for key in ("max_iter", "batch_size"):
        if int(out[key]) < 1:
            bad.append(f"{key}={out[key]} must be ≥ 1")
    if bad:
        raise InputError("probe settings: " + "; ".join(bad))
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


def probe_objective(
    x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, l2: float
) -> torch.Tensor:
    """L(W, b) = mean_i CE(softmax(W x_i + b), y_i) + (λ/2)·‖W‖_F² for one depth: x (N, n), W (C, n)."""
    return F.cross_entropy(x @ weight.T + bias, y) + 0.5 * l2 * weight.square().sum()


def fit_probe(
    x: torch.Tensor, y: torch.Tensor, classes: int, *, tolerance: float, max_iter: int, l2: float
) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
    """Minimise :func:`probe_objective` on one depth's states by full-batch L-BFGS (module docstring).

    Args:
        x: (N, n) states; fitted in float64 on their device. y: (N,) int64 labels.
        classes: C. tolerance: stop when ‖∇L‖₂ ≤ tolerance. max_iter: L-BFGS iteration limit. l2: λ.

    Returns:
        weight (C, n) and bias (C,) float64, and {iterations, loss, grad_norm, converged}.
    """
    x = x.to(torch.float64)
    weight = torch.zeros((classes, x.shape[1]), dtype=torch.float64, device=x.device, requires_grad=True)
    bias = torch.zeros(classes, dtype=torch.float64, device=x.device, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [weight, bias],
        lr=1.0,
        max_iter=_CHUNK,
        max_eval=4 * _CHUNK,
        history_size=20,
        tolerance_grad=0.0,  # the stopping rule is ours: ‖∇L‖₂ ≤ tolerance, checked between chunks
        tolerance_change=0.0,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        loss = probe_objective(x, y, weight, bias, l2)
        loss.backward()
        return loss

    def gradient_norm() -> tuple[float, float]:
        loss = closure()
        norm = torch.sqrt(weight.grad.square().sum() + bias.grad.square().sum())
        return float(loss.detach()), float(norm)

    loss, norm = gradient_norm()
    iterations = 0
    while norm > tolerance and iterations < max_iter:
        chunk = min(_CHUNK, max_iter - iterations)
        optimizer.param_groups[0].update(max_iter=chunk, max_eval=4 * chunk)
        state = optimizer.state[weight]
        before = state.get("n_iter", 0)
        optimizer.step(closure)
        iterations += state["n_iter"] - before
        previous = (loss, norm)
        loss, norm = gradient_norm()
        if not math.isfinite(loss):
            raise RuntimeError(f"probe fit diverged after {iterations} L-BFGS iterations")
        if (loss, norm) == previous:  # no progress left in float64: the minimum to machine precision
            break
    info = {"iterations": iterations, "loss": loss, "grad_norm": norm, "converged": norm <= tolerance}
    return weight.detach(), bias.detach(), info


def _depth_groups(n_images: int, depths: int, state_dim: int, cache_gib: float) -> list[range]:
    """Consecutive depth groups whose float32 state cache N·group·n·4 bytes fits ``cache_gib`` (≥ 1 each)."""
    per_depth = n_images * state_dim * 4
    size = max(1, min(depths, int(cache_gib * 2**30 // max(per_depth, 1))))
    return [range(start, min(start + size, depths)) for start in range(0, depths, size)]


def fit_probes(
    model: RevisedResNet, images: np.ndarray, labels: np.ndarray, settings: Mapping[str, Any]
) -> tuple[torch.Tensor, torch.Tensor, list[dict[str, float]]]:
    """Fit one linear probe per depth t = 0..T on the training images' states (module docstring).

    Args:
        model: the trained network; it is frozen (eval mode, no gradients) and left on the settings' device.
        images, labels: the training split (uint8 (N, 3, 32, 32), int (N,)).
        settings: {tolerance, max_iter, l2, batch_size, cache_gib, device} (:func:`check_settings`).

    Returns:
        weight (T+1, C, n) and bias (T+1, C) float32 on the CPU, and one log row per depth {depth,
        iterations, loss (the objective L_t at the end), grad_norm (‖∇L_t‖₂ there), converged}.
    """
    settings = check_settings(settings)
    device = resolve_device(settings["device"])
    labels = np.asarray(labels)
    if len(images) == 0 or labels.shape != (len(images),):
        raise InputError(
            f"probes: need N ≥ 1 images with one label each, got {len(images)} and {labels.shape}"
        )
    model.to(device).eval()  # frozen: its states are computed under no_grad, so it never gets a gradient
    depths, classes, dim = model.num_blocks + 1, int(model.num_classes), model.state_dim
    weight = torch.zeros((depths, classes, dim), dtype=torch.float32)
    bias = torch.zeros((depths, classes), dtype=torch.float32)
    y = torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int64)).to(device)
    order = torch.arange(len(images))
    rows: list[dict[str, float]] = []
    for group in _depth_groups(len(images), depths, dim, float(settings["cache_gib"])):
        cache = torch.empty((len(images), len(group), dim), dtype=torch.float32)
        desc = f"probe states, depths {group.start}..{group.stop - 1}"
        for index, states in _state_batches(model, images, order, int(settings["batch_size"]), device, desc):
            cache[index] = states[:, group.start : group.stop].cpu()
        for k, t in enumerate(group):
            started = time.perf_counter()
            w, b, info = fit_probe(
                cache[:, k].to(device),
                y,
                classes,
                tolerance=float(settings["tolerance"]),
                max_iter=int(settings["max_iter"]),
                l2=float(settings["l2"]),
            )
            weight[t], bias[t] = w.float().cpu(), b.float().cpu()
            # The fit's time goes to the job's log only: probes.pt must be identical for identical inputs
            # (docs/reliability.md, "Interrupted jobs").
            seconds = time.perf_counter() - started
            rows.append({"depth": t, **info})
            level = logging.INFO if info["converged"] else logging.WARNING
            log.log(
                level,
                "probe t=%d: %d L-BFGS iterations, %.2f s, loss %.6g, gradient norm %.3g (tolerance %.3g)%s",
                t,
                info["iterations"],
                seconds,
                info["loss"],
                info["grad_norm"],
                float(settings["tolerance"]),
                "" if info["converged"] else ": NOT converged, raise max_iter",
            )
        del cache
    return weight, bias, rows


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
