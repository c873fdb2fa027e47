"""File-level drivers of the sharded analysis stages (DESIGN §6): read trajectories, run one shard, merge.

The numerics live in :mod:`resdyn.distances` (pairwise reductions) and :mod:`resdyn.shadowing`
(pseudo-orbits and shadowing errors); this module only moves arrays between HDF5 files and those
functions, so the Snakemake entry points stay one call each. Shards are named as Snakemake's
``scattergather`` names them, ``"k-of-S"`` with k = 1..S.
"""
from __future__ import annotations

import json
import logging
import os
import re
from typing import Any, Sequence

import h5py
import numpy as np
import torch

from resdyn import distances, shadowing
from resdyn.io import InputError, atomic_output, open_h5
from resdyn.trajectories import load_probs

log = logging.getLogger(__name__)

LABEL_SOURCES = ("true", "predicted")


def parse_scatteritem(item: str) -> tuple[int, int]:
    """``"k-of-S"`` (Snakemake's scatter item, k = 1..S) → (zero-based shard index, shard count)."""
    match = re.fullmatch(r"(\d+)-of-(\d+)", str(item))
    if not match or not 1 <= int(match[1]) <= int(match[2]):
        raise InputError(f"scatter item {item!r} is not of the form 'k-of-S' with 1 <= k <= S")
    return int(match[1]) - 1, int(match[2])


def even_rows(n: int, n_shards: int, shard: int) -> tuple[int, int]:
    """Rows ``start..stop`` of shard ``shard`` when every row costs the same (shadowing: one orbit vs all N)."""
    return shard * n // n_shards, (shard + 1) * n // n_shards


def load_labelled_probs(trajectories_path: str | os.PathLike, labels: str = "true"):
    """Probability trajectories (N, T+1, C) float64, the labels y_i the constants use, and C.

    ``labels`` is ``"true"`` (the test labels, DESIGN §2) or ``"predicted"`` (the model's predictions at
    depth T, the config switch).
    """
    if labels not in LABEL_SOURCES:
        raise InputError(f"analysis.labels = {labels!r}; expected one of {LABEL_SOURCES}")
    probs, true_labels, class_names = load_probs(trajectories_path)
    if labels == "predicted":
        with open_h5(trajectories_path, required=["pred"]) as handle:
            y = handle["pred"][()].astype(np.int64)
    else:
        y = true_labels
    return probs, y, len(class_names)


def run_pairwise_shard(
    trajectories_path: str | os.PathLike,
    out_path: str | os.PathLike,
    scatteritem: str,
    *,
    labels: str = "true",
    chunk: int = 512,
    device: str = "cpu",
) -> None:
    """One scatter job of the pairwise stage: rows ``shard_rows(N, S, k)`` of the pair matrix."""
    shard, n_shards = parse_scatteritem(scatteritem)
    probs, y, n_classes = load_labelled_probs(trajectories_path, labels)
    start, stop = distances.shard_rows(probs.shape[0], n_shards, shard)
    log.info("pairwise shard %d/%d: rows %d..%d of N = %d", shard + 1, n_shards, start, stop, probs.shape[0])
    result = distances.pairwise_shard(probs, y, start, stop, n_classes=n_classes, chunk=chunk, device=device)
    distances.save_pairwise(out_path, result, {"labels": labels, "shard": shard, "n_shards": n_shards,
                                               "start": start, "stop": stop})


def gather_pairwise(shard_paths: Sequence[str | os.PathLike], out_path: str | os.PathLike) -> None:
    """Merge every shard's partial result (associative min, ties → smaller (i, j)) into ``pairs.h5``."""
    results, label_sources, spans = [], set(), []
    for path in shard_paths:
        results.append(distances.load_pairwise(path))
        with open_h5(path) as handle:
            label_sources.add(str(handle.attrs.get("labels", "true")))
            try:
                spans.append((int(handle.attrs["start"]), int(handle.attrs["stop"]), str(path)))
            except KeyError:
                raise InputError(f"{path}: missing attribute 'start'/'stop' of a pairwise shard") from None
    if len(label_sources) != 1:
        raise InputError(f"pairwise shards disagree on the label source: {sorted(label_sources)}")
    # A missing shard would still leave plausible-looking nearest neighbours (each shard also fills rows
    # after its own), so check that the shards tile 0..N exactly before merging.
    n_images = results[0].nn_index.shape[1]
    covered = 0
    for start, stop, path in sorted(spans):
        if start != covered:
            raise InputError(f"{path}: pairwise shards do not tile the rows 0..{n_images}: "
                             f"this one starts at {start}, expected {covered}")
        covered = stop
    if covered != n_images:
        raise InputError(f"pairwise shards cover rows 0..{covered} only, expected 0..{n_images}")
    merged = distances.merge_pairwise(results)
    distances.save_pairwise(out_path, merged, {"labels": label_sources.pop(), "n_shards": len(results)})


def run_shadowing_shard(
    trajectories_path: str | os.PathLike,
    pairs_path: str | os.PathLike,
    out_path: str | os.PathLike,
    scatteritem: str,
    *,
    chunk: int = 512,
) -> None:
    """One scatter job of the shadowing stage: ε and b* of the orbits starting at rows ``start..stop``."""
    shard, n_shards = parse_scatteritem(scatteritem)
    probs, _, _ = load_labelled_probs(trajectories_path)
    pairs = distances.load_pairwise(pairs_path)
    orbits, _ = shadowing.greedy_pseudo_orbits(pairs.nn_index, pairs.nn_distance)
    start, stop = even_rows(orbits.shape[0], n_shards, shard)
    log.info("shadowing shard %d/%d: orbits %d..%d of N = %d", shard + 1, n_shards, start, stop, orbits.shape[0])
    eps, b_star = shadowing.shadowing_errors(probs, orbits, start, stop, chunk=chunk)
    with atomic_output(out_path) as tmp, h5py.File(tmp, "w") as handle:
        handle.create_dataset("epsilon", data=eps)
        handle.create_dataset("shadow_image", data=b_star)
        handle.attrs.update(start=start, stop=stop, shard=shard, n_shards=n_shards)


def gather_shadowing(
    shard_paths: Sequence[str | os.PathLike],
    pairs_path: str | os.PathLike,
    out_h5: str | os.PathLike,
    out_curve_csv: str | os.PathLike,
    out_curve_png: str | os.PathLike,
    *,
    quantiles: Sequence[float] = shadowing.DEFAULT_QUANTILES,
) -> dict[str, Any]:
    """Merge the shadowing shards, form both g-shadowing estimates and write shadowing.h5, the curve CSV
    and its plot. The two summaries are stored as JSON attributes ``best_tracing`` and ``curve``."""
    parts = []
    for path in shard_paths:
        with open_h5(path, required=["epsilon", "shadow_image"]) as handle:
            parts.append(shadowing.ShadowingPart(int(handle.attrs["start"]), int(handle.attrs["stop"]),
                                                 handle["epsilon"][()], handle["shadow_image"][()]))
    pairs = distances.load_pairwise(pairs_path)
    orbits, hops = shadowing.greedy_pseudo_orbits(pairs.nn_index, pairs.nn_distance)
    eps, b_star = shadowing.merge_shadowing(parts, n_orbits=orbits.shape[0])
    delta = hops.max(axis=1)
    best = shadowing.best_tracing(eps, delta, orbits, b_star)
    curve, curve_summary = shadowing.shadowing_curve(eps, delta, *quantiles)
    shadowing.save_shadowing(out_h5, orbits, hops, eps, b_star,
                             attrs={"best_tracing": json.dumps(best), "curve": json.dumps(curve_summary)})
    shadowing.save_shadowing_curve(out_curve_csv, curve)
    shadowing.plot_shadowing_curve(curve, curve_summary, out_curve_png)
    return {"paper": best, "curve": curve_summary}


class ModelStates:
    """The states x_t(i) (N, T+1, n) of a trained model on the test images, computed batch by batch.

    Array-like (``shape``, ``__getitem__`` with a slice of images) so that a consumer that reads its points
    in chunks, such as :func:`resdyn.lipschitz.jacobian_lower_bound`, never holds all N·(T+1)·n values
    (2.8 GB at paper scale) when trajectories.h5 was written without /states.
    """

    def __init__(self, model_path: str | os.PathLike, data_path: str | os.PathLike, *, device: str = "cpu"):
        from resdyn.data import load_split
        from resdyn.model import load_model

        self.model, _ = load_model(model_path, device=device)
        self.model.eval()
        self.device = device
        self.images, _, _ = load_split(data_path, "test")
        with torch.no_grad():
            states, _ = self._states(slice(0, 1))
        self.shape = (self.images.shape[0],) + tuple(states.shape[1:])

    def _states(self, rows: slice):
        from resdyn.data import images_to_tensor

        states, logits = self.model.trajectory(images_to_tensor(self.images[rows]).to(self.device))
        return states, logits

    def __getitem__(self, rows: slice) -> np.ndarray:
        if not isinstance(rows, slice):
            raise TypeError("ModelStates supports slices of images only")
        with torch.no_grad():
            states, _ = self._states(rows)
        return states.double().cpu().numpy()


def write_lipschitz(
    trajectories_path: str | os.PathLike,
    out_path: str | os.PathLike,
    *,
    model_path: str | os.PathLike | None = None,
    data_path: str | os.PathLike | None = None,
    solver: str = "SCS",
    eps: float = 1e-6,
    device: str = "cpu",
) -> dict[str, Any]:
    """``lipschitz.json`` for the head g stored in trajectories.h5 (DESIGN §3.3).

    A linear head gets Lip_FC = ‖W‖₂ exactly; a multi-layer head gets LipSDP-Neuron and -Layer (certified
    upper bounds) and a lower bound, the largest Jacobian norm over the test states (from /states when
    stored, else recomputed from the model batch by batch). Lip(g) = Lip_FC / 2 accounts for the softmax.
    """
    import time

    from resdyn.io import write_json
    from resdyn.lipschitz import head_lipschitz
    from resdyn.trajectories import load_head

    layers = load_head(trajectories_path)
    started = time.perf_counter()
    if len(layers) == 1:
        result = head_lipschitz(layers, solver=solver, eps=eps)
    else:
        with open_h5(trajectories_path) as handle:
            if "states" in handle:
                result = head_lipschitz(layers, handle["states"], solver=solver, eps=eps)
            elif model_path is not None and data_path is not None:
                result = head_lipschitz(layers, ModelStates(model_path, data_path, device=device),
                                        solver=solver, eps=eps)
            else:
                result = head_lipschitz(layers, solver=solver, eps=eps)
    result["seconds"] = time.perf_counter() - started
    write_json(out_path, result)
    return result
