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
from pathlib import Path
from typing import Any

import numpy as np

from resdyn import distances, shadowing
from resdyn.artifacts import (
    Constants,
    DatasetFile,
    Lipschitz,
    Metrics,
    Pairs,
    ProbeHeads,
    RobustnessTable,
    SampleSizeSummary,
    SampleSizeTable,
    Shadowing,
    ShadowingShard,
    Trajectories,
    load_model,
    save_model,
    save_probe_table,
    save_shadowing_curve,
)
from resdyn.config import sample_size_settings
from resdyn.device import device_name, full_float32, resolve_device
from resdyn.io import SHA256_CACHE_NAME, InputError, file_checksum
from resdyn.provenance import software_versions
from resdyn.readings import Reading
from resdyn.runs import Run

log = logging.getLogger(__name__)

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
def prepare_data(
    name: str,
    entry: Mapping[str, Any],
    out_path: PathLike,
    download_dir: PathLike,
    *,
    record_path: PathLike | None = None,
    content: str | None = None,
) -> None:
    """Rule ``prepare_data``: the dataset of config entry ``entry`` as ``results/data/{name}.h5`` and,
    with ``record_path``, the record of the user files it read (:func:`resdyn.data.write_source_record`:
    their digest after any download, and ``content``, the job's param of that name)."""
    from resdyn.data import read_dataset, write_source_record

    read_dataset(name, entry, download_dir).save(out_path)
    if record_path is not None:
        cache = Path(record_path).parent / SHA256_CACHE_NAME
        write_source_record(record_path, entry, download_dir, content, cache)


def train_model(
    data_path: PathLike,
    model_entry: Mapping[str, Any],
    settings: Mapping[str, Any],
    model_out: PathLike,
    log_out: PathLike,
    checkpoint_path: PathLike,
    snapshots: Mapping[int, PathLike] | None = None,
) -> list[dict[str, float]]:
    """Rule ``train``: build the model of ``model_entry`` with initial weights drawn from
    ``torch.manual_seed(settings["seed"])``, train it on the train split (:func:`resdyn.train.train`,
    which writes ``train_log.csv`` and the resumable checkpoint) and save ``model.pt``; ``snapshots``
    maps earlier epochs (the config's ``checkpoints``) to the model.pt each one's weights go to, written
    like the last epoch's (the same architecture, class names and numerics record).
    ``settings`` = {epochs, lr, batch_size, seed, device} and, optionally (off when left out),
    ``channels_last`` and ``bf16_autocast``, and ``numerics`` (the schema's default when left out;
    :func:`resdyn.train.check_settings`). The numerics are applied from the initial weights to the end of
    training (:func:`resdyn.numerics.applied`; ``portable`` trains on one CPU thread) and their record
    is saved in model.pt."""
    import torch

    from resdyn.model import build_model
    from resdyn.numerics import applied
    from resdyn.train import check_settings, train

    settings = check_settings(settings)
    log.info("training settings: %s", dict(settings))
    images, labels, class_names = DatasetFile.load_split(data_path, "train")
    device = resolve_device(settings["device"])
    with applied(settings["numerics"], device) as numerics:  # before the first kernel: the initial weights
        log.info("numerics: %s", numerics)
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
            device=device,
            checkpoint_path=checkpoint_path,
            log_path=log_out,
            channels_last=bool(settings["channels_last"]),
            bf16_autocast=bool(settings["bf16_autocast"]),
            numerics=settings["numerics"],
            snapshot_epochs=list(snapshots or {}),
            on_snapshot=lambda epoch, weights: save_model(
                snapshots[epoch], weights, model_entry, len(class_names), class_names, numerics
            ),
        )
    save_model(model_out, model.cpu(), model_entry, len(class_names), class_names, numerics)
    return rows


def evaluate_model(
    model_path: PathLike, data_path: PathLike, metrics_out: PathLike, *, device: str, batch_size: int
) -> dict[str, float | int]:
    """Rule ``evaluate``: Table 1's metrics (:func:`resdyn.train.evaluate`) on the test split →
    metrics.json, with the ``versions`` of the software that made it and the ``numerics`` record of the
    model's training (when model.pt has one, :mod:`resdyn.numerics`)."""
    from resdyn.train import evaluate

    model, meta = load_model(model_path)
    images, labels, class_names = DatasetFile.load_split(data_path, "test")
    _same_classes(data_path, class_names, model_path, meta["class_names"])
    with full_float32(device):
        metrics = evaluate(model, images, labels, device=resolve_device(device), batch_size=batch_size)
    metrics["versions"] = software_versions()
    if "numerics" in meta:
        metrics["numerics"] = meta["numerics"]
    Metrics(metrics).save(metrics_out)
    return metrics


def measure_robustness(
    model_path: PathLike, data_path: PathLike, out_csv: PathLike, *, run: Run, settings: Mapping[str, Any]
) -> Any:
    """Rule ``robustness``: the measured robustness of the trained network ``run`` on its test split
    (:func:`resdyn.robustness.measure_robustness`: clean, Gaussian-noise and PGD accuracies, median
    minimal perturbation; ``settings`` = the config's ``robustness:`` block) → robustness.csv, every row
    with the seed; returns the table."""
    from resdyn import robustness

    settings = robustness.check_settings(settings)
    model, meta = load_model(model_path)
    images, labels, class_names = DatasetFile.load_split(data_path, "test")
    _same_classes(data_path, class_names, model_path, meta["class_names"])
    log.info(
        "%s: robustness on %d of %d test images, %s",
        run.network,
        min(len(labels), settings["max_images"]),
        len(labels),
        settings,
    )
    with full_float32(settings["device"]):
        result = robustness.measure_robustness(model, images, labels, settings)
    RobustnessTable(result.table).save(out_csv)
    log.info("%s", result.table.drop(columns=["attack"]).to_string(index=False))
    return result.table


def record_trajectories(
    model_path: PathLike,
    data_path: PathLike,
    out_path: PathLike,
    *,
    run: Run,
    batch_size: int,
    store_states: bool,
    device: str,
    probes_path: PathLike | None = None,
) -> None:
    """Rule ``trajectories``: every test image's states, logits and float64 probabilities at t = 0..T
    of the trained network ``run`` (its dataset and model name the file)
    (:func:`resdyn.trajectories.trajectory_batches`), written batch by batch, so memory is bounded by
    ``batch_size`` images. On a CUDA device the batch is instead as large as half the free device memory
    allows (:func:`resdyn.trajectories.batch_for_device`). Non-finite logits raise :class:`InputError`
    and leave no file.

    With ``probes_path`` (rule ``probe_trajectories``, method §3.5) the logits are the per-depth probes'
    z_t = W_t x_t + b_t and the file stores every W_t, b_t, so it alone defines the g_t."""
    import torch

    from resdyn.trajectories import batch_for_device, head_params, order_in_class, trajectory_batches

    if batch_size < 1:
        raise InputError(f"trajectories: batch_size must be ≥ 1, got {batch_size}")
    torch_device = resolve_device(device)
    model, meta = load_model(model_path, torch_device)
    images, labels, class_names = DatasetFile.load_split(data_path, "test")
    _same_classes(data_path, class_names, model_path, meta["class_names"])
    probes = None
    if probes_path is not None:
        heads = ProbeHeads.load(probes_path)
        _same_classes(probes_path, heads.class_names, model_path, meta["class_names"])
        if tuple(heads.weight.shape) != (model.num_blocks + 1, model.num_classes, model.state_dim):
            raise InputError(
                f"{probes_path}: probes of shape {tuple(heads.weight.shape)} do not fit {model_path} "
                f"(T+1 = {model.num_blocks + 1}, C = {model.num_classes}, n = {model.state_dim})"
            )
        probes = (heads.weight.double().numpy(), heads.bias.double().numpy())
    N, T = len(labels), model.num_blocks
    batch_size = batch_for_device(model, torch_device, batch_size, N, store_states=store_states)
    with (
        full_float32(torch_device),
        Trajectories.writer(
            out_path, N=N, T=T, n=model.state_dim, C=model.num_classes, store_states=store_states
        ) as writer,
    ):
        pred = np.empty(N, dtype=np.int64)
        for start, states, logits, probs, batch_pred in trajectory_batches(
            model, images, batch_size, torch_device, probes
        ):
            if not torch.isfinite(logits).all():
                bad = start + int(torch.nonzero(~torch.isfinite(logits).all(dim=2).all(dim=1))[0, 0])
                raise InputError(
                    f"{model_path}: non-finite logits for test image {bad} of {data_path} "
                    f"(a diverged model?); {out_path} not written"
                )
            writer.write_batch(
                start,
                logits.cpu().numpy(),
                probs.cpu().numpy(),
                states.cpu().numpy() if store_states else None,
            )
            pred[start : start + len(batch_pred)] = batch_pred.cpu().numpy()
        writer.finish(
            labels=labels,
            pred=pred,
            order_in_class=order_in_class(labels),
            head=head_params(model.head) if probes is None else None,
            depth_heads=probes,
            class_names=class_names,
            attrs={
                "dataset": run.dataset,
                "model": run.model,
                "T": T,
                "n": model.state_dim,
                "model_checksum": file_checksum(model_path),
                "data_checksum": file_checksum(data_path),
            }
            | ({"probes_checksum": file_checksum(probes_path)} if probes_path is not None else {}),
        )


def fit_probes(
    model_path: PathLike,
    data_path: PathLike,
    probes_out: PathLike,
    table_out: PathLike,
    *,
    settings: Mapping[str, Any],
    batch_size: int,
) -> Any:
    """Rule ``probes``: one linear probe per depth on the frozen network's training states, each fitted to
    convergence (:func:`resdyn.probes.fit_probes`) → probes.pt, and the per-depth table probes.csv: train
    and test accuracy and loss (mean cross-entropy) of each probe, the accuracy of the network's own head at
    that depth, ‖W_t‖₂ and Lip(g_t) ≤ ‖W_t‖₂/2 (method §3.5), and the fit's L-BFGS iterations and final
    gradient norm. ``settings`` = {tolerance, max_iter, l2, batch_size, cache_gib, device};
    ``batch_size`` is the scoring batch. The full-batch fit is deterministic and has no epochs to resume:
    a killed job refits from the start."""
    import pandas as pd

    from resdyn import probes
    from resdyn.lipschitz import depth_heads_lipschitz

    model, meta = load_model(model_path)
    train_images, train_labels, class_names = DatasetFile.load_split(data_path, "train")
    _same_classes(data_path, class_names, model_path, meta["class_names"])
    settings = probes.check_settings(settings)
    weight, bias, rows = probes.fit_probes(model, train_images, train_labels, settings)
    test_images, test_labels, _ = DatasetFile.load_split(data_path, "test")
    device = resolve_device(settings["device"])
    train = probes.probe_scores(
        model, weight, bias, train_images, train_labels, batch_size=batch_size, device=device
    )
    test = probes.probe_scores(
        model, weight, bias, test_images, test_labels, batch_size=batch_size, device=device
    )
    lip = depth_heads_lipschitz(weight.numpy())["per_depth"]
    table = pd.DataFrame(
        {
            "depth": np.arange(len(lip)),
            "train_accuracy": train["accuracy"],
            "train_loss": train["loss"],
            "test_accuracy": test["accuracy"],
            "test_loss": test["loss"],
            "head_test_accuracy": test["head_accuracy"],
            "weight_norm": [row["fc"] for row in lip],
            "lip_g": [row["g"] for row in lip],
            "iterations": [int(row["iterations"]) for row in rows],
            "grad_norm": [row["grad_norm"] for row in rows],
        }
    )
    ProbeHeads(weight, bias, class_names, settings, rows).save(probes_out)
    save_probe_table(table_out, table)
    return table


# ---------------------------------------------------------------------------------------------------------
# pairwise and shadowing (sharded)
# ---------------------------------------------------------------------------------------------------------
def view_of(traj: Trajectories, reading: Reading, stage: str) -> np.ndarray:
    """The probabilities ``stage`` ("expansive" or "shadowing") sees under ``reading`` in a loaded
    trajectory file (method §3.4): stored p_t at τ = 1, else softmax(z_t/τ) from the float64 logits."""
    temperature = getattr(reading, f"temperature_{stage}")
    if temperature != 1.0:
        traj.require_float64_logits(f"reading '{reading.name}' (temperature {temperature:g})")
    view = reading.expansive_probs if stage == "expansive" else reading.shadowing_probs
    return view(traj.logits, traj.probs)


def pairwise_shard(
    trajectories_path: PathLike, out_path: PathLike, scatteritem: str, *, run: Run, chunk: int, device: str
) -> None:
    """Rule ``pairwise_shard``: rows ``shard_rows(N, S, k)`` of the pair matrix (method §3.1) of the
    expansive view of ``run``'s reading, with its label source, and their close pairs under the reading's
    reduction over depths (max or min; none under mean), which the sample-size stage reads."""
    reading = run.reading
    shard, n_shards = parse_scatteritem(scatteritem)
    traj = Trajectories.load(trajectories_path)
    probs = view_of(traj, reading, "expansive")
    y = traj.class_labels(reading.labels)
    start, stop = distances.shard_rows(probs.shape[0], n_shards, shard)
    log.info(
        "pairwise shard %d/%d (reading %s): rows %d..%d of N = %d",
        shard + 1,
        n_shards,
        reading.name,
        start,
        stop,
        probs.shape[0],
    )
    result = distances.pairwise_shard(
        probs,
        y,
        start,
        stop,
        n_classes=len(traj.class_names),
        chunk=chunk,
        device=device_name(device),
        close=reading.over_depths,
    )
    Pairs(
        result,
        reading.labels,
        first_depth=reading.first_depth,
        temperature=reading.temperature_expansive,
        shard=shard,
        start=start,
        stop=stop,
    ).save(out_path)


def gather_pairwise(shard_paths: Sequence[PathLike], out_path: PathLike, *, run: Run) -> None:
    """Rule ``pairwise_gather``: merge every shard (associative min, ties → smaller (i, j)) into pairs.h5,
    after checking that every shard has the label source and the view of ``run``'s reading and that the
    shards tile the rows 0..N exactly (a missing shard would still leave plausible-looking nearest
    neighbours: each shard also fills later rows)."""
    shards = [Pairs.load(path, shard=True) for path in shard_paths]
    reading = run.reading
    expected = (reading.labels, reading.first_depth, reading.temperature_expansive)
    for s, path in zip(shards, shard_paths):
        if (s.labels, s.first_depth, s.temperature) != expected:
            raise InputError(
                f"{path}: shard of labels {s.labels!r}, first depth {s.first_depth}, temperature "
                f"{s.temperature:g}, but run {run.title} asks for {expected[0]!r}, {expected[1]}, "
                f"{expected[2]:g} (a stale shard: rerun with -R pairwise_shard)"
            )
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
    labels, first_depth, temperature = expected
    Pairs(merged, labels, first_depth=first_depth, temperature=temperature).save(out_path)


def shadowing_shard(
    trajectories_path: PathLike,
    pairs_path: PathLike,
    out_path: PathLike,
    scatteritem: str,
    *,
    run: Run,
    chunk: int,
) -> None:
    """Rule ``shadowing_shard``: the greedy pseudo-orbits starting at images ``start..stop`` of the
    shadowing view of ``run``'s reading, their ε and b*.

    Orbits that may revisit an image are read off pairs.h5's nearest-neighbour tables when the pairwise
    stage saw the same probabilities (one temperature); otherwise (distinct orbits, or a separate
    shadowing temperature) each hop is found by an exact search over all images
    (:func:`distances.scan_orbits`).
    """
    reading = run.reading
    shard, n_shards = parse_scatteritem(scatteritem)
    probs = view_of(Trajectories.load(trajectories_path), reading, "shadowing")
    start, stop = even_rows(probs.shape[0], n_shards, shard)
    log.info(
        "shadowing shard %d/%d (reading %s): orbits %d..%d of N = %d",
        shard + 1,
        n_shards,
        reading.name,
        start,
        stop,
        probs.shape[0],
    )
    if reading.orbits == "revisit" and reading.same_view:
        pairs = Pairs.load(pairs_path).result
        orbits, hops = shadowing.greedy_pseudo_orbits(pairs.nn_index, pairs.nn_distance)
        orbits, hops = orbits[start:stop], hops[start:stop]
    else:
        orbits, hops = distances.scan_orbits(probs, start, stop, distinct=reading.orbits == "distinct")
    eps, b_star = shadowing.shadowing_errors(probs, orbits, 0, len(orbits), chunk=chunk)
    ShadowingShard(
        start, stop, orbits, hops, eps, b_star, N=probs.shape[0], shard=shard, n_shards=n_shards
    ).save(out_path)


def gather_shadowing(
    shard_paths: Sequence[PathLike],
    out_h5: PathLike,
    out_curve_csv: PathLike,
    out_curve_png: PathLike,
    *,
    run: Run,
    quantiles: Sequence[float],
) -> dict[str, Any]:
    """Rule ``shadowing_gather``: for ``run``, join the shards' orbits, form every g-shadowing estimate
    (method §3.2,
    §3.4: best tracing, independent pairing, curve) and write shadowing.h5, the curve CSV and its plot.
    Under a reading with ``depths: blocks`` the file records ``first_depth`` = 1, the model depth of orbit
    position 0."""
    from resdyn.figures import plot_shadowing_curve

    reading = run.reading
    parts = sorted((ShadowingShard.load(path) for path in shard_paths), key=lambda p: (p.start, p.stop))
    if not parts:
        raise InputError("gather_shadowing got no shard files")
    sizes = {p.N for p in parts}
    if len(sizes) != 1:
        raise InputError(f"shadowing shards disagree on the number of orbits N: {sorted(sizes)}")
    n_orbits = sizes.pop()
    eps, b_star = shadowing.merge_shadowing(
        [shadowing.ShadowingPart(p.start, p.stop, p.epsilon, p.shadow_image) for p in parts],
        n_orbits=n_orbits,
    )
    orbits = np.concatenate([p.orbits for p in parts])
    hops = np.concatenate([p.hops for p in parts])
    delta = hops.max(axis=1)
    summaries = {
        "best_tracing": shadowing.best_tracing(eps, delta, orbits, b_star),
        "independent": shadowing.independent_pairing(eps, delta),
    }
    curve, summaries["curve"] = shadowing.shadowing_curve(eps, delta, *quantiles)
    attrs = {"first_depth": reading.first_depth} if reading.first_depth else {}
    Shadowing(orbits, hops, eps, b_star, **summaries, attrs=attrs).save(out_h5)
    save_shadowing_curve(out_curve_csv, curve)
    plot_shadowing_curve(curve, summaries["curve"], out_curve_png)
    return summaries


# ---------------------------------------------------------------------------------------------------------
# Lipschitz, constants
# ---------------------------------------------------------------------------------------------------------
def lipschitz(
    trajectories_path: PathLike,
    out_path: PathLike,
    *,
    model_path: PathLike | None = None,
    data_path: PathLike | None = None,
    solver: str,
    eps: float,
    device: str,
) -> dict[str, Any]:
    """Rule ``lipschitz``: ``lipschitz.json`` for the head g stored in trajectories.h5 (method §3.3), or
    for its per-depth probes (:func:`resdyn.lipschitz.depth_heads_lipschitz`, method §3.5).

    A linear head gets Lip_FC = ‖W‖₂ exactly; a multi-layer head gets LipSDP-Neuron and -Layer (certified
    upper bounds) and a lower bound, the largest Jacobian norm over the test states (from /states when
    stored, else recomputed from the model batch by batch). Lip(g) = Lip_FC / 2 accounts for the softmax.
    """
    from resdyn.lipschitz import depth_heads_lipschitz, head_lipschitz
    from resdyn.trajectories import ModelStates

    traj = Trajectories.load(trajectories_path)
    layers = traj.head
    started = time.perf_counter()
    if traj.depth_heads is not None:
        result = depth_heads_lipschitz(traj.depth_heads[0])
    elif len(layers) == 1:
        result = head_lipschitz(layers, solver=solver, eps=eps)
    else:
        with Trajectories.open_states(trajectories_path) as states:
            if states is None and model_path is not None and data_path is not None:
                torch_device = resolve_device(device)
                model, _ = load_model(model_path, torch_device)
                images, _, _ = DatasetFile.load_split(data_path, "test")
                states = ModelStates(model, images, device=torch_device)
            result = head_lipschitz(layers, states, solver=solver, eps=eps)
    # The time goes to the job's log, not into lipschitz.json: a result file must be identical for identical
    # inputs, also when a killed job is rerun (docs/reliability.md, "Interrupted jobs").
    log.info("Lipschitz constants of the head in %.2f s", time.perf_counter() - started)
    Lipschitz(result).save(out_path)
    return result


def constants(
    out_path: PathLike,
    *,
    trajectories_path: PathLike,
    pairs_path: PathLike,
    shadowing_path: PathLike,
    lipschitz_path: PathLike,
    run: Run,
) -> dict[str, Any]:
    """Rule ``constants``: every constant of ``run`` (:func:`resdyn.constants.assemble_constants`) →
    constants.json, with the ``versions`` of the software
    that made it (:func:`resdyn.provenance.software_versions`); returns the dictionary."""
    from resdyn.constants import assemble_constants

    result = assemble_constants(
        Trajectories.load(trajectories_path),
        Pairs.load(pairs_path),
        Shadowing.load(shadowing_path),
        Lipschitz.load(lipschitz_path),
        run.reading,
    )
    result["versions"] = software_versions()
    Constants(result).save(out_path)
    return result


# ---------------------------------------------------------------------------------------------------------
# sample size (method §3.6)
# ---------------------------------------------------------------------------------------------------------
_FULL_SET_KEYS = {
    "g_expansive": "g_expansive.value",
    "sh_paper": "g_shadowing.paper.value",
    "sh_curve": "g_shadowing.curve.value",
    "sh_independent": "g_shadowing.independent.value",
}


def sample_size(
    trajectories_path: PathLike,
    out_csv: PathLike,
    out_json: PathLike,
    out_png: PathLike,
    *,
    run: Run,
    settings: Mapping[str, Any],
    quantiles: Sequence[float],
    chunk: int,
    constants_path: PathLike | None = None,
    pairs_path: PathLike | None = None,
) -> dict[str, Any]:
    """Rule ``sample_size``: e and every Sh estimate of ``run``'s reading on B class-stratified random
    subsets per size of the grid (:mod:`resdyn.sample_size`, method §3.6) →
    sample_size.csv (one row per subset), sample_size.json (medians, bands, slopes, the reference size)
    and the log-log figure sample_size.png.

    ``settings`` is the config's ``sample_size`` block (sizes or count and min_size, subsets, seed,
    reference; :func:`resdyn.config.sample_size_settings`). The subset of size N is the whole test set: when
    ``constants_path`` is given, its row is that constants.json's estimates
    (:func:`resdyn.sample_size.full_set_from_constants`; the pairwise and shadowing stages already computed
    them with the same kernels), not a recomputation, and the pair's e and the best-traced orbit's Sh,
    recomputed from the trajectories (:func:`resdyn.sample_size.recheck_full_set`), must equal it exactly,
    else InputError (the files come from different inputs) and nothing is written. Without it the whole
    test set is computed like every subset. The subsets' e come from the close pairs that the pairwise
    pass listed in ``pairs_path`` (:meth:`resdyn.sample_size.CandidatePairs.from_pass`, rechecked against
    the trajectories), or, without them, from a list built here; revisiting orbits take the pass's
    nearest neighbours where they lie in a subset (:func:`resdyn.sample_size.nearest_from_pass`, rechecked
    too). Returns the summary."""
    from resdyn import sample_size as ss
    from resdyn.figures import plot_sample_size

    reading = run.reading
    settings = sample_size_settings(settings)
    traj = Trajectories.load(trajectories_path)
    expansive, shadow = view_of(traj, reading, "expansive"), view_of(traj, reading, "shadowing")
    n_images = expansive.shape[0]
    grid = ss.size_grid(n_images, settings)
    log.info(
        "sample size (reading %s): sizes %s, %d subsets each, seed %d",
        reading.name,
        grid,
        settings["subsets"],
        settings["seed"],
    )
    labels = traj.class_labels(reading.labels)
    full_set = None
    if constants_path is not None:
        found = Constants.load(constants_path)
        if found.number("N", integer=True) != n_images:
            raise InputError(
                f"{constants_path}: N = {found.number('N', integer=True)}, but {trajectories_path} holds "
                f"{n_images} test images: the two files come from different inputs (rerun the constants)"
            )
        try:
            full_set = ss.full_set_from_constants(found.data, traj.index)
        except InputError as err:
            raise InputError(f"{constants_path}: {err}: the two files come from different inputs") from err
        recomputed = ss.recheck_full_set(expansive, shadow, labels, reading, full_set, chunk=chunk)
        for estimate, value in recomputed.items():
            if value != full_set[estimate]:
                key = _FULL_SET_KEYS[estimate]
                raise InputError(
                    f"{constants_path}: '{key}' = {full_set[estimate]!r}, but the whole test set of "
                    f"{trajectories_path} gives {value!r} under reading '{reading.name}': the two "
                    "files come from different inputs (rerun the constants)"
                )
    candidates = nearest = None
    if pairs_path is not None:
        passed = Pairs.load(pairs_path).result
        candidates = ss.CandidatePairs.from_pass(
            passed, expansive, labels, reading.over_depths, str(pairs_path)
        )
        nearest = ss.nearest_from_pass(passed, shadow, reading, str(pairs_path))
        log.info(
            "sample size: %s",
            "no close pairs from the pairwise pass: building the list"
            if candidates is None
            else f"{len(candidates.value)} close pairs from the pairwise pass (bound {candidates.bound:.6g})",
        )
    started = time.perf_counter()
    table = ss.sample_size_table(
        expansive,
        shadow,
        labels,
        traj.labels,
        len(traj.class_names),
        reading,
        grid,
        subsets=settings["subsets"],
        seed=settings["seed"],
        test_index=traj.index,
        quantiles=quantiles,
        chunk=chunk,
        full_set=full_set,
        candidates=candidates,
        nearest=nearest,
    )
    log.info("sample size: %d subsets in %.2f s", len(table), time.perf_counter() - started)
    summary = ss.summarize(table, n_images, settings["reference"])
    summary["reading"] = {"name": reading.name, **reading.settings()}
    summary["settings"] = settings
    SampleSizeTable(table).save(out_csv)
    SampleSizeSummary(summary).save(out_json)
    plot_sample_size(table, summary, out_png, f"{run.network} / reading {reading.name}")
    return summary


# ---------------------------------------------------------------------------------------------------------
# tables and figures
# ---------------------------------------------------------------------------------------------------------
PaperKey = tuple[str, str]


def _networks(runs: Sequence[Run], sources: Sequence[Any], what: str) -> dict[tuple[str, str], list[Any]]:
    """{(dataset, model): [source of replicate 1, 2, …]} from ``sources[k]``, the file of ``runs[k]``;
    the replicates of each (dataset, model) must be 1..K."""
    if len(runs) != len(sources):
        raise InputError(f"{len(runs)} runs but {len(sources)} {what} files")
    grouped: dict[tuple[str, str], dict[int, Any]] = {}
    for run, source in zip(runs, sources):
        grouped.setdefault((run.dataset, run.model), {})[run.replicate] = source
    for key, found in grouped.items():
        if sorted(found) != list(range(1, len(found) + 1)):
            raise InputError(f"{'/'.join(key)}: replicates {sorted(found)}, expected 1..{len(found)}")
    return {key: [found[k] for k in sorted(found)] for key, found in grouped.items()}


def _paper_rows(
    runs: Sequence[Run], paper_rows: Sequence[PaperKey | None] | None
) -> dict[tuple[str, str], PaperKey | None] | None:
    """{(dataset, model): the paper's (dataset, model) it stands for, or None}, or None without the
    paper's numbers (config ``paper_reference`` false). Logs when no run matches a row of the paper."""
    if paper_rows is None:
        return None
    if len(paper_rows) != len(runs):
        raise InputError(f"{len(runs)} runs but {len(paper_rows)} paper rows")
    found = {
        (run.dataset, run.model): None if row is None else tuple(row) for run, row in zip(runs, paper_rows)
    }
    if not any(found.values()):
        log.warning(
            "paper_reference is true, but no run stands for one of the paper's (set `paper_row: mnist` or "
            "`paper_row: cifar10` on a dataset entry; models resnet18 and resnet50 match by name or by "
            "their own `paper_row`): the paper's columns stay n/a"
        )
    return found


def table1(
    runs: Sequence[Run],
    metrics_paths: Sequence[PathLike],
    stem: PathLike,
    *,
    paper_rows: Sequence[PaperKey | None] | None,
) -> None:
    """Rule ``table1``: Table 1 over every trained network's metrics.json (``metrics_paths[k]`` of
    ``runs[k]``; method §3.6: mean ± sd over replicates) → ``{stem}.csv|md|tex``; ``paper_rows[k]`` is
    the paper's row ``runs[k]`` stands for (None: no paper columns)."""
    from resdyn import tables

    metrics = _networks(runs, [Metrics.load(path) for path in metrics_paths], "metrics.json")
    table = tables.table1(metrics, paper_rows=_paper_rows(runs, paper_rows))
    tables.write_table(table, stem)


def table2(
    runs: Sequence[Run],
    constants_paths: Sequence[PathLike],
    sample_size_paths: Sequence[PathLike],
    stem: PathLike,
    *,
    paper_rows: Sequence[PaperKey | None] | None,
) -> None:
    """Rule ``table2``: Table 2 over every trained network's constants.json, with the reference-size
    columns from its sample_size.json (method §3.6); ``runs`` and ``paper_rows`` as for :func:`table1`."""
    from resdyn import tables

    found = _networks(runs, [Constants.load(path) for path in constants_paths], "constants.json")
    summaries = _networks(
        runs, [SampleSizeSummary.load(path) for path in sample_size_paths], "sample_size.json"
    )
    table = tables.table2(found, paper_rows=_paper_rows(runs, paper_rows), sample_size=summaries)
    tables.write_table(table, stem)


def readings_table(
    runs: Sequence[Run],
    constants_paths: Sequence[PathLike],
    sample_size_paths: Sequence[PathLike],
    stem: PathLike,
    *,
    paper_rows: Sequence[PaperKey | None] | None,
) -> None:
    """Rule ``readings_table``: the readings table (method §3.4) over every run and its
    ``constants_paths[k]``, with the reference-size columns from ``sample_size_paths[k]`` (method §3.6)."""
    from resdyn import tables

    if not len(runs) == len(constants_paths) == len(sample_size_paths):
        raise InputError(
            f"{len(runs)} runs, {len(constants_paths)} constants.json and "
            f"{len(sample_size_paths)} sample_size.json files"
        )
    replicated = any(run.replicate > 1 for run in runs)

    def key(run: Run) -> tuple[Any, ...]:
        base = (run.dataset, run.model, run.reading.name)
        return (*base, run.replicate) if replicated else base

    found = {key(run): Constants.load(path) for run, path in zip(runs, constants_paths)}
    summaries = {key(run): SampleSizeSummary.load(path) for run, path in zip(runs, sample_size_paths)}
    table = tables.readings_table(found, paper_rows=_paper_rows(runs, paper_rows), sample_size=summaries)
    tables.write_table(table, stem)


def table3(
    runs: Sequence[Run],
    pairs_paths: Sequence[PathLike],
    trajectories_paths: Sequence[PathLike],
    stem: PathLike,
    *,
    k: int,
) -> None:
    """Rule ``table3``: Table 3 (the k closest class pairs) over every run's pairs.h5 and trajectories.h5."""
    from resdyn import tables

    if not len(runs) == len(pairs_paths) == len(trajectories_paths):
        raise InputError(
            f"{len(runs)} runs, {len(pairs_paths)} pairs.h5 and {len(trajectories_paths)} trajectories"
        )
    sources = {
        (run.dataset, run.model): (Pairs.load(p), Trajectories.load(t))
        for run, p, t in zip(runs, pairs_paths, trajectories_paths)
    }
    tables.write_table(tables.table3(sources, k), stem)


def probes_figure(table_paths: Mapping[str, PathLike], out_png: PathLike, *, dataset: str) -> None:
    """Rule ``probes_figure``: probe and final-head test accuracy against depth for every model of one
    dataset (``table_paths``: model → its probes.csv)."""
    from resdyn.artifacts import load_probe_table
    from resdyn.figures import plot_probe_accuracy

    tables = {model: load_probe_table(path) for model, path in table_paths.items()}
    plot_probe_accuracy(tables, out_png, f"Per-depth heads ({dataset}): test accuracy against depth")


def figures(
    run: Run,
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
) -> None:
    """Rule ``figures``: Figures 2 and 3, the image pairs of Table 3 and the best-traced pseudo-orbit of
    Tables 4–5 (as a strip and as a CSV/Markdown/LaTeX table) of the trained network ``run``."""
    from resdyn import figures as fig
    from resdyn.tables import best_orbit, best_orbit_table, closest_pairs, write_table

    traj, pairs = Trajectories.load(trajectories_path), Pairs.load(pairs_path)
    title = run.network
    fig.figure_class_expansive(
        pairs, traj, figure2_png, "E_mean", f"Figure 2 ({title}): closest pairs by mean distance over depths"
    )
    fig.figure_class_expansive(
        pairs, traj, figure3_png, "E", f"Figure 3 ({title}): closest pairs by max distance over depths"
    )
    closest = closest_pairs(pairs, traj, k)
    orbit = best_orbit(Shadowing.load(shadowing_path), Constants.load(constants_path), traj)
    # one read of the dataset file for both figures' images
    pair_indices, orbit_indices = fig.closest_pair_indices(closest), fig.best_orbit_indices(orbit)
    images = DatasetFile.test_images(data_path, pair_indices + orbit_indices)
    pair_images, orbit_images = images[: len(pair_indices)], images[len(pair_indices) :]
    fig.plot_closest_pairs(
        closest, pair_images, pairs_png, f"Table 3 ({title}): closest different-class pairs"
    )
    fig.plot_best_orbit(orbit, orbit_images, orbit_png, f"Tables 4-5 ({title}): best-traced pseudo-orbit")
    write_table(best_orbit_table(orbit, run.dataset, run.model), orbit_table_stem)


def robustness_table(
    runs: Sequence[Run],
    constants_paths: Sequence[PathLike],
    trained_runs: Sequence[Run],
    robustness_paths: Sequence[PathLike],
    stem: PathLike,
    figure_png: PathLike,
    *,
    trained_accuracy: float,
    n_boot: int,
    seed: int,
) -> Any:
    """Rule ``robustness_table``: Spearman's ρ across runs (all, and the networks with clean accuracy ≥
    ``trained_accuracy``) of every constant (every reading's
    constants.json, ``constants_paths[k]`` of ``runs[k]``) with every robustness measure (the robustness.csv
    of each trained network, ``robustness_paths[k]`` of ``trained_runs[k]``), its bootstrap interval and
    the number of runs (:func:`resdyn.tables.robustness_table`) → ``{stem}.csv|md|tex``; the scatter of
    the reading ``definition``'s constants against the headline measures (:func:`headline_measures`) →
    ``figure_png``. Fewer than 3 runs give a table whose ``Reason`` says so. Returns the table."""
    from resdyn import tables
    from resdyn.figures import plot_robustness_scatter

    if len(runs) != len(constants_paths) or len(trained_runs) != len(robustness_paths):
        raise InputError(
            f"robustness table: {len(runs)} runs with {len(constants_paths)} constants.json, "
            f"{len(trained_runs)} trained networks with {len(robustness_paths)} robustness.csv"
        )
    measured = {
        run.training_folder: RobustnessTable.load(path).measures()
        for run, path in zip(trained_runs, robustness_paths)
    }
    networks: dict[str, tuple[dict[str, Constants], dict[str, float]]] = {}
    for run, path in zip(runs, constants_paths):
        if run.training_folder not in measured:
            raise InputError(f"robustness table: no robustness.csv for {run.network} ({run.training_folder})")
        found, _ = networks.setdefault(run.network, ({}, measured[run.training_folder]))
        found[run.reading.name] = Constants.load(path)
    per_run = tables.robustness_runs(networks)
    table = tables.robustness_table(per_run, trained_accuracy=trained_accuracy, n_boot=n_boot, seed=seed)
    tables.write_table(table, stem)
    every_run = tables.correlations_of(table, tables.ALL_NETWORKS)
    among_trained = tables.correlations_of(table, tables.trained_networks_label(trained_accuracy))
    trained = tables.trained_networks(per_run, trained_accuracy)
    shown = [c for c in per_run.constants if c.endswith(f"[{runs[0].reading.name}]")]
    measures = headline_measures(per_run.measures)
    plot_robustness_scatter(per_run.frame, shown, measures, every_run, figure_png, trained, among_trained)
    return table


def dynamics(
    runs: Sequence[Run],
    epochs: Sequence[int],
    metrics_paths: Sequence[PathLike],
    constants_paths: Sequence[PathLike],
    stem: PathLike,
    figure_pngs: Mapping[tuple[str, str], PathLike],
) -> Any:
    """Rule ``dynamics``: the dynamics table over every run (``runs[k]``, whose weights are those after
    training epoch ``epochs[k]``, with its network's ``metrics_paths[k]`` and its ``constants_paths[k]``;
    :func:`resdyn.tables.dynamics_table`) → ``{stem}.csv|md|tex``, and per (dataset, model) its figure
    against the epoch → ``figure_pngs[(dataset, model)]`` (:func:`resdyn.figures.plot_dynamics`). Returns
    the table."""
    from resdyn import tables
    from resdyn.figures import plot_dynamics

    if not len(runs) == len(epochs):
        raise InputError(f"dynamics: {len(runs)} runs but {len(epochs)} epochs")
    keys = [
        tables.DynamicsKey(run.dataset, run.model, run.replicate, int(epoch), run.reading.name)
        for run, epoch in zip(runs, epochs)
    ]
    table = tables.dynamics_table(
        keys,
        [Metrics.load(path) for path in metrics_paths],
        [Constants.load(path) for path in constants_paths],
    )
    tables.write_table(table, stem)
    for (dataset, model), png in figure_pngs.items():
        rows = table[(table["Dataset"] == dataset) & (table["Model"] == model)]
        plot_dynamics(rows, png, f"{dataset} / {model}")
    return table


def headline_measures(measures: Sequence[str]) -> list[str]:
    """The measures the scatter figure shows, of those present: the clean accuracy, the accuracy at the
    largest σ or ε of each noise/PGD grid, and the median minimal perturbations."""
    shown = []
    for prefix in ("clean_accuracy", "noise_accuracy@", "pgd_linf_accuracy@", "pgd_l2_accuracy@", "minimal_"):
        group = [m for m in measures if m.startswith(prefix)]
        shown += group if prefix == "minimal_" else group[-1:]
    return shown
