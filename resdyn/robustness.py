"""Measured robustness of a trained network (issue 27 item 2; docs/robustness.md).

The paper reads e, Sh and T_g ≥ Sh/Lip as measures of stability and robustness but never measures
robustness. This module measures it on the test images the constants are computed on, with the model in
eval mode and its input as the pipeline feeds it: x = float32(image)/255 in [0, 1]
(:func:`resdyn.data.images_to_tensor`), so every perturbed input is clipped to [0, 1].

- **Clean accuracy** on the first ``max_images`` test images.
- **Gaussian noise**: accuracy on clip(x + σ·z, 0, 1) for every σ of ``noise_sigmas``, z ~ N(0, I) drawn
  once per image (numpy ``default_rng(seed)``, in image order, independent of the batch size) and shared by
  all σ (common random numbers: σ = 0 is the clean accuracy exactly).
- **PGD** (L∞ and L2): accuracy under projected gradient descent on the cross-entropy (foolbox's
  ``LinfPGD`` / ``L2PGD``: uniform random start in the ε-ball, ``pgd_steps`` steps of size
  α = ``pgd_rel_stepsize``·ε, projection onto the ε-ball and [0, 1]) for every ε of ``linf_eps`` /
  ``l2_eps``. Each ε is a separate attack. ``accuracy`` counts an image as broken at ε when PGD broke it
  at any ε' ≤ ε of the grid (an adversarial within ε' lies within ε), so it is non-increasing in ε by
  construction; ``accuracy_single_run`` is the plain per-ε PGD accuracy, which can rise with ε by a few
  images (a different random start and step size can miss where a smaller ε succeeded). ε = 0 gives the
  clean accuracy exactly.
- **Minimal adversarial perturbation** per image and norm (``minimal_norms``): the smallest perturbation
  the minimal-norm attack ``minimal_attack`` finds that changes the prediction (foolbox's FMN, fast
  minimum-norm, Pintor et al. 2021; or DeepFool), ‖x_adv − x‖ in that norm; 0 for an image the model
  already misclassifies; inf where the attack finds no adversarial (counted in ``n_failed``). The table
  reports its median over all images (``value``; the ε at which robust accuracy would cross 50 %) and
  over the correctly classified ones (``value_correct``): the empirical counterpart of the distance to
  another class. It is an upper bound on the true minimal distance, as every attack result is.

Attacks run in batches of ``batch_size`` images with tqdm progress. Seeding: the noise from
``default_rng(seed)``; each attack's random starts from ``torch.manual_seed(seed)`` set at its start inside
``torch.random.fork_rng`` (the caller's generator state is untouched), so a result is reproducible for the
same seed, batch size, device and torch build. The seed is written into every row.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from resdyn.artifacts import RobustnessTable
from resdyn.data import images_to_tensor
from resdyn.device import resolve_device
from resdyn.io import InputError

log = logging.getLogger(__name__)

SETTINGS_KEYS = (
    "noise_sigmas",
    "linf_eps",
    "l2_eps",
    "pgd_steps",
    "pgd_rel_stepsize",
    "minimal_attack",
    "minimal_norms",
    "minimal_steps",
    "batch_size",
    "max_images",
    "seed",
    "device",
)
MINIMAL_ATTACKS = ("fmn", "deepfool")
NORMS = ("l2", "linf")
# The layout of robustness.csv is owned by its artifact (resdyn.artifacts.RobustnessTable).
MEASURES = RobustnessTable.MEASURES
COLUMNS = list(RobustnessTable.COLUMNS)


def _foolbox():
    """foolbox, imported quietly (3.3.4 imports scipy.ndimage.filters, deprecated in SciPy 1.x)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import foolbox

    return foolbox


def check_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The robustness settings (:data:`SETTINGS_KEYS`; defaults in the schema's ``robustness:`` block);
    a missing, unknown or bad value is an InputError naming it."""
    missing = [k for k in SETTINGS_KEYS if k not in settings]
    unknown = sorted(set(settings) - set(SETTINGS_KEYS))
    if missing or unknown:
        raise InputError(
            f"robustness settings: missing {missing}, unknown {unknown} (expected {list(SETTINGS_KEYS)})"
        )
    out = {k: settings[k] for k in SETTINGS_KEYS}
    bad = []
    for key in ("noise_sigmas", "linf_eps", "l2_eps"):
        values = [float(v) for v in out[key]]
        if any(not (math.isfinite(v) and v >= 0) for v in values) or values != sorted(set(values)):
            bad.append(f"{key}={out[key]} must be increasing numbers ≥ 0")
        out[key] = values
    if out["minimal_attack"] not in MINIMAL_ATTACKS:
        bad.append(f"minimal_attack={out['minimal_attack']!r} must be one of {list(MINIMAL_ATTACKS)}")
    out["minimal_norms"] = list(out["minimal_norms"])
    if any(norm not in NORMS for norm in out["minimal_norms"]):
        bad.append(f"minimal_norms={out['minimal_norms']} must be a subset of {list(NORMS)}")
    for key in ("pgd_steps", "minimal_steps", "batch_size", "max_images"):
        if int(out[key]) < 1:
            bad.append(f"{key}={out[key]} must be ≥ 1")
    if not (float(out["pgd_rel_stepsize"]) > 0 and math.isfinite(out["pgd_rel_stepsize"])):
        bad.append(f"pgd_rel_stepsize={out['pgd_rel_stepsize']} must be a positive number")
    if int(out["seed"]) < 0:
        bad.append(f"seed={out['seed']} must be ≥ 0")
    if bad:
        raise InputError("robustness settings: " + "; ".join(bad))
    return out


@dataclass
class Robustness:
    """What :func:`measure_robustness` returns: the table (:data:`COLUMNS`, one row per measure and
    level) and per-image arrays: ``correct`` (clean prediction right), ``pgd_broken_at`` (norm → smallest
    grid ε at which PGD broke the image, inf if none; 0 if misclassified) and ``minimal`` (norm → minimal
    perturbation found, 0 if misclassified, inf if the attack failed)."""

    table: pd.DataFrame
    correct: np.ndarray
    pgd_broken_at: dict[str, np.ndarray] = field(default_factory=dict)
    minimal: dict[str, np.ndarray] = field(default_factory=dict)


def _batches(n: int, batch_size: int, desc: str) -> list[slice]:
    starts = range(0, n, batch_size)
    return list(
        tqdm([slice(s, min(s + batch_size, n)) for s in starts], desc=desc, leave=False, disable=None)
    )


@torch.no_grad()
def _predict(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x).argmax(dim=1)


def _log_cost(measure: str, started: float) -> None:
    # The cost goes to the job's log, not to robustness.csv: a result file must not differ between two runs.
    log.info("%s: %.1f s", measure, time.perf_counter() - started)


def _row(measure: str, level: float, n: int, seed: int, attack: str, **values) -> dict:
    row = {
        "measure": measure,
        "level": level,
        "accuracy": math.nan,
        "accuracy_single_run": math.nan,
        "value": math.nan,
        "value_correct": math.nan,
        "n_images": n,
        "n_failed": 0,
        "attack": attack,
        "seed": seed,
    }
    row.update(values)
    return row


def _seeded(seed: int, device: torch.device, run: Callable[[], Any]) -> Any:
    """``run()`` with torch's generators seeded by ``seed``, the caller's RNG state restored afterwards."""
    devices = [torch.cuda.current_device()] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        return run()


def pgd_broken(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    norm: str,
    eps: Sequence[float],
    *,
    steps: int,
    rel_stepsize: float,
    batch_size: int,
    seed: int,
) -> np.ndarray:
    """(len(eps), N) bool: whether PGD in ``norm`` at each ε (one run per ε) changes the prediction away
    from ``y``. x: (N, 3, H, W) float32 in [0, 1] on the model's device."""
    fb = _foolbox()
    cls = fb.attacks.LinfPGD if norm == "linf" else fb.attacks.L2PGD
    attack = cls(steps=steps, rel_stepsize=rel_stepsize, random_start=True)
    fmodel = fb.PyTorchModel(model, bounds=(0, 1))
    broken = np.zeros((len(eps), len(x)), dtype=bool)

    # The ε = 0 ball is x itself: its row is the clean prediction, with no attack run.
    attacked = [k for k, level in enumerate(eps) if level > 0]

    def run() -> None:
        for part in _batches(len(x), batch_size, f"PGD {norm}"):
            if len(attacked) < len(eps):
                broken[0, part] = (_predict(model, x[part]) != y[part]).cpu().numpy()
            if not attacked:
                continue
            _, clipped, _ = attack(fmodel, x[part], y[part], epsilons=[eps[k] for k in attacked])
            for k, adv in zip(attacked, clipped):
                broken[k, part] = (_predict(model, adv) != y[part]).cpu().numpy()

    _seeded(seed, x.device, run)
    return broken


def minimal_perturbations(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    norm: str,
    *,
    attack: str,
    steps: int,
    batch_size: int,
    seed: int,
) -> tuple[np.ndarray, torch.Tensor]:
    """Per image: the norm of the smallest adversarial perturbation the minimal-norm attack finds (inf if
    it finds none) and the adversarial inputs (N, 3, H, W). Images the model already misclassifies are
    attacked too; :func:`measure_robustness` sets their distance to 0."""
    fb = _foolbox()
    if attack == "fmn":
        cls = fb.attacks.L2FMNAttack if norm == "l2" else fb.attacks.LInfFMNAttack
    else:
        cls = fb.attacks.L2DeepFoolAttack if norm == "l2" else fb.attacks.LinfDeepFoolAttack
    runner = cls(steps=steps)
    fmodel = fb.PyTorchModel(model, bounds=(0, 1))
    distance = np.full(len(x), np.inf)
    adversarial = x.clone()

    def run() -> None:
        for part in _batches(len(x), batch_size, f"{attack} {norm}"):
            raw, _, _ = runner(fmodel, x[part], y[part], epsilons=None)
            raw = raw.clamp(0, 1)
            fooled = (_predict(model, raw) != y[part]).cpu().numpy()
            delta = (raw - x[part]).flatten(1)
            size = delta.norm(dim=1) if norm == "l2" else delta.abs().amax(dim=1)
            distance[part] = np.where(fooled, size.detach().cpu().double().numpy(), np.inf)
            adversarial[part] = raw.detach()

    _seeded(seed, x.device, run)
    return distance, adversarial


def _attack_name(what: str, **params: Any) -> str:
    fb = _foolbox()
    return " ".join([f"foolbox {fb.__version__}", what, *(f"{k}={v}" for k, v in params.items())])


def measure_robustness(
    model: torch.nn.Module, images: np.ndarray, labels: np.ndarray, settings: Mapping[str, Any]
) -> Robustness:
    """Clean, noise, PGD (L∞, L2) accuracies and the minimal perturbation medians (module docstring).

    Args:
        model: the trained network, put in eval mode on the settings' device (its gradients w.r.t. the
            input are used; its parameters are not changed).
        images: uint8 (N, 3, H, W) test images; the first ``max_images`` are used. labels: int (N,).
        settings: :data:`SETTINGS_KEYS` (:func:`check_settings`).
    """
    settings = check_settings(settings)
    labels = np.asarray(labels)
    if len(images) == 0 or labels.shape != (len(images),):
        raise InputError(
            f"robustness: need N ≥ 1 images with one label each, got {len(images)} and {labels.shape}"
        )
    n = min(len(images), int(settings["max_images"]))
    seed, batch_size = int(settings["seed"]), int(settings["batch_size"])
    device = resolve_device(settings["device"])
    model = model.to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    x = images_to_tensor(np.asarray(images[:n])).to(device)
    y = torch.from_numpy(np.ascontiguousarray(labels[:n], dtype=np.int64)).to(device)
    rows: list[dict] = []

    started = time.perf_counter()
    correct = np.concatenate(
        [(_predict(model, x[p]) == y[p]).cpu().numpy() for p in _batches(n, batch_size, "clean")]
    )
    _log_cost("clean", started)
    clean = float(correct.mean())
    rows.append(_row("clean", math.nan, n, seed, "none", accuracy=clean) | {"accuracy_single_run": clean})

    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    noise_correct = np.zeros((len(settings["noise_sigmas"]), n), dtype=bool)
    for p in _batches(n, batch_size, "noise"):
        z = torch.from_numpy(rng.standard_normal(x[p].shape).astype(np.float32)).to(device)
        for k, sigma in enumerate(settings["noise_sigmas"]):
            noisy = x[p] if sigma == 0 else (x[p] + sigma * z).clamp_(0, 1)
            noise_correct[k, p] = (_predict(model, noisy) == y[p]).cpu().numpy()
    _log_cost("noise", started)
    for k, sigma in enumerate(settings["noise_sigmas"]):
        acc = float(noise_correct[k].mean())
        rows.append(
            _row("noise", sigma, n, seed, "gaussian, clipped to [0, 1]", accuracy=acc)
            | {"accuracy_single_run": acc}
        )

    result = Robustness(pd.DataFrame(), correct)
    for norm in NORMS:
        eps = settings[f"{norm}_eps"]
        if not eps:
            continue
        started = time.perf_counter()
        broken = pgd_broken(
            model,
            x,
            y,
            norm,
            eps,
            steps=int(settings["pgd_steps"]),
            rel_stepsize=float(settings["pgd_rel_stepsize"]),
            batch_size=batch_size,
            seed=seed,
        )
        broken |= ~correct[None, :]  # a misclassified image counts as broken at every ε
        _log_cost(f"pgd_{norm}", started)
        cumulative = np.logical_or.accumulate(broken, axis=0)
        first = np.where(cumulative.any(axis=0), np.asarray(eps)[cumulative.argmax(axis=0)], np.inf)
        result.pgd_broken_at[norm] = np.where(correct, first, 0.0)
        name = _attack_name(
            "LinfPGD" if norm == "linf" else "L2PGD",
            steps=int(settings["pgd_steps"]),
            rel_stepsize=float(settings["pgd_rel_stepsize"]),
        )
        for k, level in enumerate(eps):
            rows.append(
                _row(
                    f"pgd_{norm}",
                    level,
                    n,
                    seed,
                    name,
                    accuracy=float(1 - cumulative[k].mean()),
                    accuracy_single_run=float(1 - broken[k].mean()),
                )
            )

    for norm in settings["minimal_norms"]:
        started = time.perf_counter()
        distance, _ = minimal_perturbations(
            model,
            x,
            y,
            norm,
            attack=settings["minimal_attack"],
            steps=int(settings["minimal_steps"]),
            batch_size=batch_size,
            seed=seed,
        )
        _log_cost(f"minimal_{norm}", started)
        distance = np.where(correct, distance, 0.0)
        result.minimal[norm] = distance
        failed = int(np.isinf(distance).sum())
        if failed:
            log.warning(
                "%s %s: no adversarial found for %d of %d images", settings["minimal_attack"], norm, failed, n
            )
        attack_cls = {"fmn": "FMN", "deepfool": "DeepFool"}[settings["minimal_attack"]]
        rows.append(
            _row(
                f"minimal_{norm}",
                math.nan,
                n,
                seed,
                _attack_name(
                    f"{'L2' if norm == 'l2' else 'Linf'}{attack_cls}", steps=settings["minimal_steps"]
                ),
                value=float(np.median(distance)),
                value_correct=float(np.median(distance[correct])) if correct.any() else math.nan,
                n_failed=failed,
            )
        )
    result.table = pd.DataFrame(rows, columns=COLUMNS)
    return result
