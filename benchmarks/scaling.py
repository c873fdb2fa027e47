"""Benchmark: wall time and peak memory of each analysis stage against the number of images N, the fitted
exponents, and the ratio of each time to the baseline (the smallest N measured).

Usage (the default, short: synthetic trajectories at N = 500 and 1,000)::

    python benchmarks/scaling.py
    # paper scale: a trained model's test trajectories, then its training images as extra points
    python benchmarks/scaling.py --trajectories results/fashion/resnet18/trajectories.h5 \
        --extra-model results/fashion/resnet18/model.pt --extra-idx /usr/share/datasets/fashion-mnist \
        --extra-cache /tmp/fashion_train_trajectories.npz \
        --sizes 1000 2000 5000 10000 20000 50000 --sample-size-max 10000 --json OUT.json --figure OUT.png

Images: the first N rows of ``--trajectories`` (a ``trajectories.h5``); beyond its rows, the trajectories
of the first training images of the idx folder ``--extra-idx`` through ``--extra-model`` (computed once by
:func:`resdyn.trajectories.trajectory_batches` on the CPU, cached in ``--extra-cache``), appended after the
test images; without those files, ``benchmarks/pairwise.py``'s synthetic generator (9 depths, 10 classes).
Each row says which source it used.

Stages, each timed in its own child process (so each has its own peak RSS, ``ru_maxrss``; numba compiled
by a warm-up call first), under the definition and the authors' reading (τ = 1000 for the expansive view,
depths 1..T, min over depths, distinct orbits, independent pairing):

- ``pairwise``: :func:`resdyn.distances.pairwise_shard` over all N rows of the reading's expansive view,
  with its close-pair list (the pairwise shard jobs together);
- ``shadowing``: the reading's pseudo-orbits (read off the pairwise nearest-neighbour tables for the
  definition, whose pairwise cost is counted in ``pairwise``; :func:`resdyn.distances.scan_orbits` with
  distinct orbits for the authors') and their shadowing errors (:func:`resdyn.shadowing.shadowing_errors`):
  the shadowing shard jobs together;
- ``curve``: the shadowing gather's estimates from the N orbits' ε and δ (best tracing, independent
  pairing, :func:`resdyn.shadowing.shadowing_curve`);
- ``sample_size`` (only for N up to ``--sample-size-max``): :func:`resdyn.sample_size.sample_size_table`
  with config.yaml's grid (count 6 from 50, 20 subsets, reference 400), the whole test set's row and the
  pass's close pairs given (computed untimed: the stage reads them off constants.json and pairs.h5), plus
  the stage's rechecks (:func:`resdyn.sample_size.recheck_full_set`,
  :meth:`resdyn.sample_size.CandidatePairs.from_pass`, :func:`resdyn.sample_size.nearest_from_pass`). Its
  row also splits the CPU time into ``parts``: the pseudo-orbits (:func:`resdyn.distances.scan_orbits`),
  their ε (:func:`resdyn.shadowing.shadowing_errors`), the pair list (built only without the pass's), the
  rechecks of the pass's close pairs and nearest-neighbour tables, the pairwise kernel on subsets that hold
  no listed pair, and the rest (subset draws, the curve and best-tracing estimates, the table).

The probes' analysis (``head: probes``) runs these same functions on a trajectory array of the same shape
(N, T+1, C), so its rows are the definition's; fitting the probes scales with the training images, not N.
The exponent is the least-squares slope of log time (and log added peak RSS: above the child's RSS after
loading its arrays) against log N over the sizes measured.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import queue as queue_module
import resource
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

READINGS = ("definition", "authors")
STAGES = ("pairwise", "shadowing", "curve", "sample_size")
SAMPLE_SIZE = {"count": 6, "min_size": 50, "subsets": 20, "seed": 0, "reference": 400}
QUANTILES = (0.05, 0.95)
CHUNK = 512


def _reading(name: str):
    from resdyn.readings import Reading

    if name == "definition":
        return Reading()
    return Reading(
        name="authors",
        temperature_expansive=1000.0,
        depths="blocks",
        over_depths="min",
        orbits="distinct",
        pairing="independent",
    )


def training_trajectories(model_path: str, idx_folder: str, count: int, cache: str) -> dict[str, np.ndarray]:
    """logits, probs (count, T+1, C) float64 and labels (count,) of the first ``count`` training images of
    an idx folder through the trained model (CPU, batches of 400), cached in ``cache`` (.npz) and reused
    while it holds at least ``count`` rows of the same model file."""
    cache_path = Path(cache)
    if cache_path.exists():
        stored = np.load(cache_path)
        if str(stored["model"]) == str(Path(model_path).resolve()) and len(stored["labels"]) >= count:
            return {key: stored[key][:count] for key in ("logits", "probs", "labels")}
    import torch

    from resdyn.artifacts import load_model
    from resdyn.data import read_dataset
    from resdyn.trajectories import trajectory_batches

    data = read_dataset("extra", {"source": "idx", "path": idx_folder, "max_train": count}, "/nonexistent")
    images, labels = data.splits["train"]
    model, _ = load_model(model_path, "cpu")
    logits, probs = [], []
    for _, _, batch_logits, batch_probs, _ in trajectory_batches(model, images, 400, torch.device("cpu")):
        logits.append(batch_logits.numpy())
        probs.append(batch_probs.numpy())
    out = {"logits": np.concatenate(logits), "probs": np.concatenate(probs), "labels": labels}
    np.savez(cache_path, model=str(Path(model_path).resolve()), **out)
    return out


def _arrays(args: argparse.Namespace, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """logits, probs, labels of the first n images and the name of their source."""
    if args.trajectories:
        from resdyn.artifacts import Trajectories

        traj = Trajectories.load(args.trajectories)
        logits, probs, labels = traj.logits, traj.probs, traj.class_labels("true")
        if n <= len(probs):
            return logits[:n], probs[:n], labels[:n], "test"
        if args.extra_model and args.extra_idx:
            extra = training_trajectories(args.extra_model, args.extra_idx, n - len(probs), args.extra_cache)
            return (
                np.concatenate([logits, extra["logits"]]),
                np.concatenate([probs, extra["probs"]]),
                np.concatenate([labels, extra["labels"]]),
                f"test + {n - len(probs)} training",
            )
    from pairwise import synthetic_trajectories

    probs, labels = synthetic_trajectories(n, 9, 10, seed=0)
    return np.log(probs), probs, labels, "synthetic"


SAMPLE_SIZE_PARTS = {
    "orbits": ("distances", "scan_orbits"),
    "epsilon": ("shadowing", "shadowing_errors"),
    "pair_list": ("CandidatePairs", "build"),
    "pair_list_check": ("CandidatePairs", "from_pass"),
    "nearest_check": ("sample_size", "nearest_from_pass"),
    "pairwise_kernel": ("distances", "pairwise_shard"),
}
"""The functions whose CPU time the sample-size row reports apart (owner, attribute)."""


def _count_cpu(owners: dict, parts: dict) -> None:
    """Replace each of :data:`SAMPLE_SIZE_PARTS`' functions by a wrapper that adds its CPU time to
    ``parts``; ``owners`` maps the owner names to the module or class objects. In the main thread the
    time is the whole process's (all threads: numba's threads work for the call); in another thread (the
    sample-size stage's subset workers, one numba thread each, running side by side) that thread's own, so
    that concurrent calls are not counted twice."""
    lock = threading.Lock()
    for part, (owner_name, attribute) in SAMPLE_SIZE_PARTS.items():
        owner = owners[owner_name]
        raw = vars(owner)[attribute] if isinstance(owner, type) else getattr(owner, attribute)
        inner = raw.__func__ if isinstance(raw, classmethod) else raw
        parts[part] = 0.0

        def timed(*args, _inner=inner, _part=part, **kwargs):
            in_main = threading.current_thread() is threading.main_thread()
            clock = _cpu_seconds if in_main else time.thread_time
            began = clock()
            try:
                return _inner(*args, **kwargs)
            finally:
                spent = clock() - began
                with lock:
                    parts[_part] += spent

        setattr(owner, attribute, classmethod(timed) if isinstance(owner, type) else timed)


def _stage(stage: str, reading_name: str, args: argparse.Namespace, n: int, out: mp.Queue) -> None:
    from resdyn import distances, shadowing
    from resdyn import sample_size as ss

    logits, probs, labels, source = _arrays(args, n)
    reading = _reading(reading_name)
    expansive, shadow = reading.expansive_probs(logits, probs), reading.shadowing_probs(logits, probs)
    n_classes = int(probs.shape[2])
    close = reading.over_depths  # the pass lists the close pairs under it, as the pipeline's does
    warm = slice(0, 64)
    distances.pairwise_shard(
        expansive[warm], labels[warm], 0, 64, n_classes=n_classes, chunk=CHUNK, device="cpu", close=close
    )
    warm_orbits, _ = distances.scan_orbits(shadow[warm], 0, 64, distinct=True)
    shadowing.shadowing_errors(shadow[warm], warm_orbits, 0, 64, chunk=CHUNK)
    if stage == "sample_size":  # what the stage reads off pairs.h5 and constants.json: untimed
        passed = distances.pairwise_shard(
            expansive, labels, 0, n, n_classes=n_classes, chunk=CHUNK, device="cpu", close=close
        )
        full_set = ss.subset_constants(  # the whole set from that pass, as the pipeline's stages do
            expansive,
            shadow,
            labels,
            n_classes,
            reading,
            quantiles=QUANTILES,
            chunk=CHUNK,
            expansive=distances.expansive_constant(passed, reading.over_depths)[:2],
            known_nearest=ss.nearest_from_pass(passed, shadow, reading, "the pass"),
        )
    if stage == "curve":  # its inputs, untimed
        orbits, hops = distances.scan_orbits(shadow, 0, n, distinct=reading.orbits == "distinct")
        eps, b_star = shadowing.shadowing_errors(shadow, orbits, 0, n, chunk=CHUNK)
    parts: dict[str, float] = {}
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    began, cpu_began = time.perf_counter(), _cpu_seconds()
    if stage == "pairwise":
        distances.pairwise_shard(
            expansive, labels, 0, n, n_classes=n_classes, chunk=CHUNK, device="cpu", close=close
        )
    elif stage == "shadowing":
        if reading.orbits == "revisit" and reading.same_view:
            result = distances.pairwise_shard(
                expansive, labels, 0, n, n_classes=n_classes, chunk=CHUNK, device="cpu"
            )
            base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            began, cpu_began = time.perf_counter(), _cpu_seconds()  # the pairwise cost is counted there
            orbits, _ = shadowing.greedy_pseudo_orbits(result.nn_index, result.nn_distance)
        else:
            orbits, _ = distances.scan_orbits(shadow, 0, n, distinct=reading.orbits == "distinct")
        shadowing.shadowing_errors(shadow, orbits, 0, n, chunk=CHUNK)
    elif stage == "curve":
        delta = hops.max(axis=1)
        shadowing.best_tracing(eps, delta, orbits, b_star)
        shadowing.independent_pairing(eps, delta)
        shadowing.shadowing_curve(eps, delta, *QUANTILES)
    else:
        from resdyn.config import sample_size_settings

        grid = ss.size_grid(n, sample_size_settings(SAMPLE_SIZE))
        owners = {
            "distances": distances,
            "shadowing": shadowing,
            "sample_size": ss,
            "CandidatePairs": ss.CandidatePairs,
        }
        _count_cpu(owners, parts)
        ss.recheck_full_set(expansive, shadow, labels, reading, full_set, chunk=CHUNK)
        candidates = ss.CandidatePairs.from_pass(passed, expansive, labels, reading.over_depths, "the pass")
        nearest = ss.nearest_from_pass(passed, shadow, reading, "the pass")
        ss.sample_size_table(
            expansive,
            shadow,
            labels,
            labels,
            n_classes,
            reading,
            grid,
            subsets=SAMPLE_SIZE["subsets"],
            seed=SAMPLE_SIZE["seed"],
            quantiles=QUANTILES,
            chunk=CHUNK,
            full_set=full_set,
            candidates=candidates,
            nearest=nearest,
        )
    seconds, cpu = time.perf_counter() - began, _cpu_seconds() - cpu_began
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    row = {"seconds": seconds, "cpu_seconds": cpu, "peak_rss_mb": peak, "added_rss_mb": peak - base}
    if parts:
        row["parts"] = {**parts, "rest": cpu - sum(parts.values())}
    out.put(row | {"source": source})


def _cpu_seconds() -> float:
    """User + system CPU time of this process, all its threads: the time one core would need (less the
    parallel overheads), the basis of the one-core projections in docs/performance.md."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(stage: str, reading: str, args: argparse.Namespace, n: int) -> dict:
    """One stage at one N in a fresh child process (its own peak RSS)."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_stage, args=(stage, reading, args, n, queue))
    proc.start()
    while True:  # the child's row, or its failure (a child that dies never puts one)
        try:
            row = queue.get(timeout=1.0)
            break
        except queue_module.Empty:
            if not proc.is_alive():
                raise RuntimeError(
                    f"{stage}/{reading} at N = {n} failed (exit code {proc.exitcode})"
                ) from None
    proc.join()
    return {"stage": f"{stage}/{reading}", "n": n, **row}


def fit(ns, values) -> float | None:
    """Least-squares slope of log value against log N (positive values only; None below two points)."""
    pairs = [(n, v) for n, v in zip(ns, values) if v > 0]
    if len(pairs) < 2:
        return None
    x, y = np.log([p[0] for p in pairs]), np.log([p[1] for p in pairs])
    return float(np.polyfit(x, y, 1)[0])


def _exponent(value: float | None) -> str:
    return "   -" if value is None else f"{value:4.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trajectories", help="a trajectories.h5 (test images)")
    parser.add_argument("--extra-model", help="model.pt whose training-image trajectories extend N")
    parser.add_argument("--extra-idx", help="idx folder of those training images")
    parser.add_argument("--extra-cache", default="scaling_extra_trajectories.npz")
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 1000])
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    parser.add_argument("--sample-size-max", type=int, default=10000)
    parser.add_argument("--json")
    parser.add_argument("--figure")
    args = parser.parse_args()
    if args.extra_model and args.extra_idx and args.trajectories and max(args.sizes) > 0:
        from resdyn.artifacts import Trajectories

        n_test = len(Trajectories.load(args.trajectories).probs)
        if max(args.sizes) > n_test:
            # computed once, not in every child, and in a child of its own: a child started by this
            # process inherits its peak RSS, which the model's forward passes would raise to ~1.5 GB
            extra = mp.get_context("spawn").Process(
                target=training_trajectories,
                args=(args.extra_model, args.extra_idx, max(args.sizes) - n_test, args.extra_cache),
            )
            extra.start()
            extra.join()
            if extra.exitcode != 0:
                raise RuntimeError(f"training trajectories failed (exit code {extra.exitcode})")
    rows = []
    for n in sorted(args.sizes):
        for stage in args.stages:
            if stage == "sample_size" and n > args.sample_size_max:
                continue
            for reading in READINGS:
                row = measure(stage, reading, args, n)
                rows.append(row)
                print(
                    f"{row['stage']:24s} N = {n:6d} ({row['source']}): {row['seconds']:8.2f} s "
                    f"(CPU {row['cpu_seconds']:8.2f} s), "
                    f"peak RSS {row['peak_rss_mb']:7.0f} MB (+{row['added_rss_mb']:.0f})",
                    flush=True,
                )
                if "parts" in row:
                    split = ", ".join(f"{part} {cpu:.2f}" for part, cpu in row["parts"].items())
                    print(f"{'':24s} CPU s by part: {split}", flush=True)
    exponents = {}
    print(
        f"\n{'stage':24s} {'N':>6s} {'time':>9s} {'× baseline':>10s} {'(N/N0)²':>8s}   baseline: smallest N"
    )
    for name in dict.fromkeys(r["stage"] for r in rows):
        mine = [r for r in rows if r["stage"] == name]
        base = mine[0]
        for r in mine:
            ratio = r["seconds"] / base["seconds"] if base["seconds"] > 0 else float("nan")
            print(
                f"{name:24s} {r['n']:6d} {r['seconds']:8.2f}s {ratio:10.1f} {(r['n'] / base['n']) ** 2:8.1f}"
            )
        exponents[name] = {
            "time": fit([r["n"] for r in mine], [r["seconds"] for r in mine]),
            "cpu_time": fit([r["n"] for r in mine], [r["cpu_seconds"] for r in mine]),
            "added_memory": fit([r["n"] for r in mine], [r["added_rss_mb"] for r in mine]),
        }
    print()
    for name, exps in exponents.items():
        print(
            f"{name:24s} time ∝ N^{_exponent(exps['time'])}, CPU time ∝ N^{_exponent(exps['cpu_time'])}, "
            f"added memory ∝ N^{_exponent(exps['added_memory'])}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "exponents": exponents}, indent=1))
    if args.figure:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, (ax_time, ax_mem) = plt.subplots(1, 2, figsize=(10, 4))
        for name in exponents:
            mine = [r for r in rows if r["stage"] == name]
            ns = [r["n"] for r in mine]
            ax_time.loglog(ns, [r["seconds"] for r in mine], "o-", label=name)
            ax_mem.loglog(ns, [max(r["added_rss_mb"], 0.1) for r in mine], "o-", label=name)
        ax_time.set_xlabel("N (images)")
        ax_time.set_ylabel("wall time (s)")
        ax_mem.set_xlabel("N (images)")
        ax_mem.set_ylabel("added peak RSS (MB)")
        ax_time.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(args.figure, dpi=120)


if __name__ == "__main__":
    main()
