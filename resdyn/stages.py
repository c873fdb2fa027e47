"""One function per workflow rule (method §6): it takes paths and settings, reads its inputs through the
artifact layer (:mod:`resdyn.artifacts`), calls the domain functions and writes its outputs through the
artifact layer. The Snakemake entry points in ``workflow_scripts/`` call exactly one of these.

Sharded stages are named as Snakemake's ``scattergather`` names them, ``"k-of-S"`` with k = 1..S; pairwise
shards split the rows of the pair matrix by :func:`resdyn.distances.shard_rows` (equal numbers of pairs
i < j), shadowing shards split the orbits evenly (each orbit costs the same).

torch is imported inside the stages that run a model (train, evaluate, trajectories, the Lipschitz lower
bound of a multi-layer head), so the many light analysis jobs never pay its import.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from resdyn import distances, shadowing
from resdyn.artifacts import (
    Constants,
    DatasetFile,
    Lipschitz,
    Metrics,
    Pairs,
    Shadowing,
    ShadowingShard,
    Trajectories,
    load_model,
    save_model,
    save_shadowing_curve,
)
from resdyn.config import schema_defaults
from resdyn.device import device_name, full_float32, resolve_device
from resdyn.io import InputError, file_checksum
from resdyn.provenance import software_versions

log = logging.getLogger(__name__)

# Library callers (tests, notebooks) get the workflow's defaults, read from the schema.
_ANALYSIS = schema_defaults("analysis")
_LIPSCHITZ = schema_defaults("lipschitz")

PathLike = str | os.PathLike


def parse_scatteritem(item: str) -> tuple[int, int]:
    """``"k-of-S"`` (Snakemake's scatter item, k = 1..S) → (zero-based shard index, shard count)."""
    match = re.fullmatch(r"(\d+)-of-(\d+)", str(item))
    if not match or not 1 <= int(match[1]) <= int(match[2]):
        raise InputError(f"scatter item {item!r} is not of the form 'k-of-S' with 1 <= k <= S")
    return int(match[1]) - 1, int(match[2])


def even_rows(n: int, n_shards: int, shard: int) -> tuple[int, int]:
    """Rows ``start..stop`` of shard ``shard`` when every row costs the same (shadowing: one orbit vs
    all N)."""
    return shard * n // n_shards, (shard + 1) * n // n_shards


def _same_classes(
    data_path: PathLike, class_names: Sequence[str], model_path: PathLike, trained_on: Sequence[str]
) -> None:
    if list(class_names) != list(trained_on):
        raise InputError(
            f"{data_path}: class names {class_names} differ from those the model {model_path} "
            f"was trained on ({trained_on})"
        )


# ---------------------------------------------------------------------------------------------------------
# data, train, evaluate, trajectories
# ---------------------------------------------------------------------------------------------------------
def prepare_data(name: str, entry: Mapping[str, Any], out_path: PathLike, download_dir: PathLike) -> None:
    """Rule ``prepare_data``: the dataset of config entry ``entry`` as ``results/data/{name}.h5``."""
    from resdyn.data import read_dataset

    read_dataset(name, entry, download_dir).save(out_path)


def train_model(
    data_path: PathLike,
    model_entry: Mapping[str, Any],
    settings: Mapping[str, Any],
    model_out: PathLike,
    log_out: PathLike,
    checkpoint_path: PathLike,
) -> list[dict[str, float]]:
    """Rule ``train``: build the model of ``model_entry`` with initial weights drawn from
    ``torch.manual_seed(settings["seed"])``, train it on the train split (:func:`resdyn.train.train`,
    which writes ``train_log.csv`` and the resumable checkpoint) and save ``model.pt``.
    ``settings`` = {epochs, lr, batch_size, seed, device, channels_last, bf16_autocast} (the last two
    optional, off by default)."""
    import torch

    from resdyn.model import build_model
    from resdyn.train import check_settings, train

    settings = check_settings(settings)
    images, labels, class_names = DatasetFile.load_split(data_path, "train")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(settings["seed"]))
        model = build_model(model_entry, len(class_names))
    rows = train(
        model,
        images,
        labels,
        epochs=int(settings["epochs"]),
        lr=float(settings["lr"]),
        batch_size=int(settings["batch_size"]),
        seed=int(settings["seed"]),
        device=resolve_device(settings["device"]),
        checkpoint_path=checkpoint_path,
        log_path=log_out,
        channels_last=bool(settings["channels_last"]),
        bf16_autocast=bool(settings["bf16_autocast"]),
    )
    save_model(model_out, model.cpu(), model_entry, len(class_names), class_names)
    return rows


def evaluate_model(
    model_path: PathLike, data_path: PathLike, metrics_out: PathLike, *, device: str, batch_size: int
) -> dict[str, float | int]:
    """Rule ``evaluate``: Table 1's metrics (:func:`resdyn.train.evaluate`) on the test split →
    metrics.json, with the ``versions`` of the software that made it."""
    from resdyn.train import evaluate

    model, meta = load_model(model_path)
    images, labels, class_names = DatasetFile.load_split(data_path, "test")
    _same_classes(data_path, class_names, model_path, meta["class_names"])
    with full_float32(device):
        metrics = evaluate(model, images, labels, device=resolve_device(device), batch_size=batch_size)
    metrics["versions"] = software_versions()
    Metrics(metrics).save(metrics_out)
    return metrics


def record_trajectories(
    model_path: PathLike,
    data_path: PathLike,
    out_path: PathLike,
    *,
    dataset: str,
    model_name: str,
    batch_size: int,
    store_states: bool,
    device: str,
) -> None:
    """Rule ``trajectories``: every test image's states, logits and float64 probabilities at t = 0..T
    (:func:`resdyn.trajectories.trajectory_batches`), written batch by batch, so memory is bounded by
    ``batch_size`` images. On a CUDA device the batch is instead as large as half the free device memory
    allows (:func:`resdyn.trajectories.batch_for_device`). Non-finite logits raise :class:`InputError`
    and leave no file."""
    import torch

    from resdyn.trajectories import batch_for_device, head_params, order_in_class, trajectory_batches

    if batch_size < 1:
        raise InputError(f"trajectories: batch_size must be ≥ 1, got {batch_size}")
    torch_device = resolve_device(device)
    model, meta = load_model(model_path, torch_device)
    images, labels, class_names = DatasetFile.load_split(data_path, "test")
    _same_classes(data_path, class_names, model_path, meta["class_names"])
    N, T = len(labels), model.num_blocks
    batch_size = batch_for_device(model, torch_device, batch_size, N, store_states=store_states)
    with (
        full_float32(torch_device),
        Trajectories.writer(
            out_path, N=N, T=T, n=model.state_dim, C=model.num_classes, store_states=store_states
        ) as writer,
    ):
        pred = np.empty(N, dtype=np.int64)
        for start, states, logits, probs in trajectory_batches(model, images, batch_size, torch_device):
            if not torch.isfinite(logits).all():
                bad = start + int(torch.nonzero(~torch.isfinite(logits).all(dim=2).all(dim=1))[0, 0])
                raise InputError(
                    f"{model_path}: non-finite logits for test image {bad} of {data_path} "
                    f"(a diverged model?); {out_path} not written"
                )
            logits_np = logits.cpu().numpy()
            writer.write_batch(
                start, logits_np, probs.cpu().numpy(), states.cpu().numpy() if store_states else None
            )
            pred[start : start + len(logits_np)] = logits_np[:, T].argmax(axis=1)
        writer.finish(
            labels=labels,
            pred=pred,
            order_in_class=order_in_class(labels),
            head=head_params(model.head),
            class_names=class_names,
            attrs={
                "dataset": dataset,
                "model": model_name,
                "T": T,
                "n": model.state_dim,
                "model_checksum": file_checksum(model_path),
                "data_checksum": file_checksum(data_path),
            },
        )


# ---------------------------------------------------------------------------------------------------------
# pairwise and shadowing (sharded)
# ---------------------------------------------------------------------------------------------------------
def pairwise_shard(
    trajectories_path: PathLike,
    out_path: PathLike,
    scatteritem: str,
    *,
    labels: str = _ANALYSIS["labels"],
    chunk: int = _ANALYSIS["chunk"],
    device: str = "cpu",
) -> None:
    """Rule ``pairwise_shard``: rows ``shard_rows(N, S, k)`` of the pair matrix (method §3.1)."""
    shard, n_shards = parse_scatteritem(scatteritem)
    traj = Trajectories.load(trajectories_path)
    y = traj.class_labels(labels)
    start, stop = distances.shard_rows(traj.probs.shape[0], n_shards, shard)
    log.info(
        "pairwise shard %d/%d: rows %d..%d of N = %d", shard + 1, n_shards, start, stop, traj.probs.shape[0]
    )
    result = distances.pairwise_shard(
        traj.probs,
        y,
        start,
        stop,
        n_classes=len(traj.class_names),
        chunk=chunk,
        device=device_name(device),
    )
    Pairs(result, labels, shard=shard, start=start, stop=stop).save(out_path)


def gather_pairwise(shard_paths: Sequence[PathLike], out_path: PathLike) -> None:
    """Rule ``pairwise_gather``: merge every shard (associative min, ties → smaller (i, j)) into pairs.h5,
    after checking that the shards agree on the label source and tile the rows 0..N exactly (a missing
    shard would still leave plausible-looking nearest neighbours: each shard also fills later rows)."""
    shards = [Pairs.load(path, shard=True) for path in shard_paths]
    label_sources = {s.labels for s in shards}
    if len(label_sources) != 1:
        raise InputError(f"pairwise shards disagree on the label source: {sorted(label_sources)}")
    n_images = shards[0].result.nn_index.shape[1]
    covered = 0
    for s, path in sorted(zip(shards, shard_paths), key=lambda sp: (sp[0].start, sp[0].stop)):
        if s.start != covered:
            raise InputError(
                f"{path}: pairwise shards do not tile the rows 0..{n_images}: "
                f"this one starts at {s.start}, expected {covered}"
            )
        covered = s.stop
    if covered != n_images:
        raise InputError(f"pairwise shards cover rows 0..{covered} only, expected 0..{n_images}")
    merged = distances.merge_pairwise([s.result for s in shards])
    Pairs(merged, label_sources.pop()).save(out_path)


def shadowing_shard(
    trajectories_path: PathLike,
    pairs_path: PathLike,
    out_path: PathLike,
    scatteritem: str,
    *,
    chunk: int = _ANALYSIS["chunk"],
) -> None:
    """Rule ``shadowing_shard``: ε and b* of the greedy pseudo-orbits starting at rows ``start..stop``."""
    shard, n_shards = parse_scatteritem(scatteritem)
    probs = Trajectories.load(trajectories_path).probs
    pairs = Pairs.load(pairs_path).result
    orbits, _ = shadowing.greedy_pseudo_orbits(pairs.nn_index, pairs.nn_distance)
    start, stop = even_rows(orbits.shape[0], n_shards, shard)
    log.info(
        "shadowing shard %d/%d: orbits %d..%d of N = %d", shard + 1, n_shards, start, stop, orbits.shape[0]
    )
    eps, b_star = shadowing.shadowing_errors(probs, orbits, start, stop, chunk=chunk)
    ShadowingShard(start, stop, eps, b_star, shard=shard, n_shards=n_shards).save(out_path)


def gather_shadowing(
    shard_paths: Sequence[PathLike],
    pairs_path: PathLike,
    out_h5: PathLike,
    out_curve_csv: PathLike,
    out_curve_png: PathLike,
    *,
    quantiles: Sequence[float] = shadowing.DEFAULT_QUANTILES,
) -> dict[str, Any]:
    """Rule ``shadowing_gather``: merge the shards, form both g-shadowing estimates (method §3.2) and write
    shadowing.h5, the curve CSV and its plot."""
    from resdyn.figures import plot_shadowing_curve

    parts = [ShadowingShard.load(path) for path in shard_paths]
    pairs = Pairs.load(pairs_path).result
    orbits, hops = shadowing.greedy_pseudo_orbits(pairs.nn_index, pairs.nn_distance)
    eps, b_star = shadowing.merge_shadowing(
        [shadowing.ShadowingPart(p.start, p.stop, p.epsilon, p.shadow_image) for p in parts],
        n_orbits=orbits.shape[0],
    )
    delta = hops.max(axis=1)
    best = shadowing.best_tracing(eps, delta, orbits, b_star)
    curve, curve_summary = shadowing.shadowing_curve(eps, delta, *quantiles)
    Shadowing(orbits, hops, eps, b_star, best_tracing=best, curve=curve_summary).save(out_h5)
    save_shadowing_curve(out_curve_csv, curve)
    plot_shadowing_curve(curve, curve_summary, out_curve_png)
    return {"paper": best, "curve": curve_summary}


# ---------------------------------------------------------------------------------------------------------
# Lipschitz, constants
# ---------------------------------------------------------------------------------------------------------
def lipschitz(
    trajectories_path: PathLike,
    out_path: PathLike,
    *,
    model_path: PathLike | None = None,
    data_path: PathLike | None = None,
    solver: str = _LIPSCHITZ["solver"],
    eps: float = _LIPSCHITZ["eps"],
    device: str = "cpu",
) -> dict[str, Any]:
    """Rule ``lipschitz``: ``lipschitz.json`` for the head g stored in trajectories.h5 (method §3.3).

    A linear head gets Lip_FC = ‖W‖₂ exactly; a multi-layer head gets LipSDP-Neuron and -Layer (certified
    upper bounds) and a lower bound, the largest Jacobian norm over the test states (from /states when
    stored, else recomputed from the model batch by batch). Lip(g) = Lip_FC / 2 accounts for the softmax.
    """
    from resdyn.lipschitz import head_lipschitz
    from resdyn.trajectories import ModelStates

    layers = Trajectories.load(trajectories_path).head
    started = time.perf_counter()
    if len(layers) == 1:
        result = head_lipschitz(layers, solver=solver, eps=eps)
    else:
        with Trajectories.open_states(trajectories_path) as states:
            if states is None and model_path is not None and data_path is not None:
                torch_device = resolve_device(device)
                model, _ = load_model(model_path, torch_device)
                images, _, _ = DatasetFile.load_split(data_path, "test")
                states = ModelStates(model, images, device=torch_device)
            result = head_lipschitz(layers, states, solver=solver, eps=eps)
    result["seconds"] = time.perf_counter() - started
    Lipschitz(result).save(out_path)
    return result


def constants(
    out_path: PathLike,
    *,
    trajectories_path: PathLike,
    pairs_path: PathLike,
    shadowing_path: PathLike,
    lipschitz_path: PathLike,
) -> dict[str, Any]:
    """Rule ``constants``: every constant of one (dataset, model)
    (:func:`resdyn.constants.assemble_constants`) → constants.json, with the ``versions`` of the software
    that made it (:func:`resdyn.provenance.software_versions`); returns the dictionary."""
    from resdyn.constants import assemble_constants

    result = assemble_constants(
        Trajectories.load(trajectories_path),
        Pairs.load(pairs_path),
        Shadowing.load(shadowing_path),
        Lipschitz.load(lipschitz_path),
    )
    result["versions"] = software_versions()
    Constants(result).save(out_path)
    return result


# ---------------------------------------------------------------------------------------------------------
# tables and figures
# ---------------------------------------------------------------------------------------------------------
def table1(metrics_paths: Sequence[PathLike], stem: PathLike, *, paper_reference: bool = False) -> None:
    """Rule ``table1``: Table 1 over every run's metrics.json → ``{stem}.csv|md|tex``."""
    from resdyn import tables

    metrics = {tables.result_key(path): Metrics.load(path) for path in metrics_paths}
    tables.write_table(tables.table1(metrics, paper_reference=paper_reference), stem)


def table2(constants_paths: Sequence[PathLike], stem: PathLike, *, paper_reference: bool = False) -> None:
    """Rule ``table2``: Table 2 over every run's constants.json."""
    from resdyn import tables

    found = {tables.result_key(path): Constants.load(path) for path in constants_paths}
    tables.write_table(tables.table2(found, paper_reference=paper_reference), stem)


def table3(
    pairs_paths: Sequence[PathLike], trajectories_paths: Sequence[PathLike], stem: PathLike, *, k: int
) -> None:
    """Rule ``table3``: Table 3 (the k closest class pairs) over every run's pairs.h5 and trajectories.h5."""
    from resdyn import tables

    sources = {
        tables.result_key(p): (Pairs.load(p), Trajectories.load(t))
        for p, t in zip(pairs_paths, trajectories_paths)
    }
    tables.write_table(tables.table3(sources, k), stem)


def figures(
    *,
    data_path: PathLike,
    trajectories_path: PathLike,
    pairs_path: PathLike,
    shadowing_path: PathLike,
    constants_path: PathLike,
    figure2_png: PathLike,
    figure3_png: PathLike,
    pairs_png: PathLike,
    orbit_png: PathLike,
    orbit_table_stem: PathLike,
    k: int,
    dataset: str,
    model: str,
) -> None:
    """Rule ``figures``: Figures 2 and 3, the image pairs of Table 3 and the best-traced pseudo-orbit of
    Tables 4–5 (as a strip and as a CSV/Markdown/LaTeX table) for one (dataset, model)."""
    from resdyn import figures as fig
    from resdyn.tables import best_orbit, best_orbit_table, closest_pairs, write_table

    traj, pairs = Trajectories.load(trajectories_path), Pairs.load(pairs_path)
    run = f"{dataset} / {model}"
    fig.figure_class_expansive(
        pairs, traj, figure2_png, "E_mean", f"Figure 2 ({run}): closest pairs by mean distance over depths"
    )
    fig.figure_class_expansive(
        pairs, traj, figure3_png, "E", f"Figure 3 ({run}): closest pairs by max distance over depths"
    )
    fig.plot_closest_pairs(
        closest_pairs(pairs, traj, k), data_path, pairs_png, f"Table 3 ({run}): closest different-class pairs"
    )
    orbit = best_orbit(Shadowing.load(shadowing_path), Constants.load(constants_path), traj)
    fig.plot_best_orbit(orbit, data_path, orbit_png, f"Tables 4-5 ({run}): best-traced pseudo-orbit")
    write_table(best_orbit_table(orbit, dataset, model), orbit_table_stem)
