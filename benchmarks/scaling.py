"""Benchmark: wall time and peak memory of each analysis stage against N, with the fitted exponents.

Usage::

    python benchmarks/scaling.py --trajectories results/fashion/resnet18/trajectories.h5 \
        --sizes 1000 2000 5000 10000 --json OUT.json --figure OUT.png
    python benchmarks/scaling.py --sizes 1000 2000 5000 10000 20000 --json OUT.json   # synthetic

Stages, each timed in its own child process (so each has its own peak RSS, ``ru_maxrss``), on the first N
images of the trajectory file (or of ``benchmarks/pairwise.py``'s synthetic generator, 9 depths, 10
classes, when no file is given or N exceeds it):

- ``pairwise/<reading>``: :func:`resdyn.distances.pairwise_shard` over all rows of the reading's view;
- ``shadowing/<reading>``: the reading's pseudo-orbits (nearest-neighbour tables for the definition,
  :func:`resdyn.distances.scan_orbits` with distinct orbits for the authors' reading) and their shadowing
  errors (:func:`resdyn.shadowing.shadowing_errors`);
- ``sample_size/<reading>`` (only for N up to ``--sample-size-max``): the whole sample-size table with
  config.yaml's grid (count 6 from 50, 20 subsets, reference 400).

Readings: ``definition`` and ``authors`` (τ = 1000 for the expansive view, depths 1..T, distinct orbits).
The fitted exponent is the least-squares slope of log time (and log peak RSS above the interpreter's
baseline) against log N over the sizes measured. Numba compilation is excluded (a warm-up call first).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

READINGS = ("definition", "authors")


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


def _views(path: str | None, n: int, reading_name: str):
    """(expansive view, shadowing view, labels) of the first n images."""
    reading = _reading(reading_name)
    if path:
        from resdyn.artifacts import Trajectories

        traj = Trajectories.load(path)
        if n <= len(traj.probs):
            logits, probs, labels = traj.logits[:n], traj.probs[:n], traj.class_labels("true")[:n]
            return reading.expansive_probs(logits, probs), reading.shadowing_probs(logits, probs), labels
    from pairwise import synthetic_trajectories

    probs, labels = synthetic_trajectories(n, 9, 10, seed=0)
    logits = np.log(probs)
    return reading.expansive_probs(logits, probs), reading.shadowing_probs(logits, probs), labels


def _stage(stage: str, reading_name: str, path: str | None, n: int, out: mp.Queue) -> None:
    from resdyn import distances, shadowing
    from resdyn import sample_size as ss

    expansive, shadow, labels = _views(path, n, reading_name)
    reading = _reading(reading_name)
    warm = slice(0, 64)
    distances.pairwise_shard(expansive[warm], labels[warm], 0, 64, n_classes=10)
    distances.scan_orbits(shadow[warm], 0, 64, distinct=True)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    began = time.perf_counter()
    if stage == "pairwise":
        distances.pairwise_shard(expansive, labels, 0, n, n_classes=10, chunk=512)
    elif stage == "shadowing":
        if reading.orbits == "revisit" and reading.same_view:
            result = distances.pairwise_shard(expansive, labels, 0, n, n_classes=10, chunk=512)
            began = time.perf_counter()  # the pairwise stage's own cost is counted there
            orbits, _ = shadowing.greedy_pseudo_orbits(result.nn_index, result.nn_distance)
        else:
            orbits, _ = distances.scan_orbits(shadow, 0, n, distinct=reading.orbits == "distinct")
        shadowing.shadowing_errors(shadow, orbits, 0, n, chunk=512)
    else:
        grid = ss.size_grid(n, count=6, min_size=50, reference=400)
        ss.sample_size_table(expansive, shadow, labels, labels, 10, reading, grid, subsets=20, seed=0)
    seconds = time.perf_counter() - began
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out.put({"seconds": seconds, "peak_rss_mb": peak, "added_rss_mb": peak - base})


def measure(stage: str, reading: str, path: str | None, n: int) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_stage, args=(stage, reading, path, n, queue))
    proc.start()
    row = queue.get()
    proc.join()
    return {"stage": f"{stage}/{reading}", "n": n, **row}


def fit(ns, values) -> float | None:
    pairs = [(n, v) for n, v in zip(ns, values) if v > 0]
    if len(pairs) < 2:
        return None
    x, y = np.log([p[0] for p in pairs]), np.log([p[1] for p in pairs])
    return float(np.polyfit(x, y, 1)[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trajectories")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 2000, 5000, 10000])
    parser.add_argument("--sample-size-max", type=int, default=10000)
    parser.add_argument("--json")
    parser.add_argument("--figure")
    args = parser.parse_args()
    rows = []
    for n in args.sizes:
        for stage in ("pairwise", "shadowing", "sample_size"):
            if stage == "sample_size" and n > args.sample_size_max:
                continue
            for reading in READINGS:
                row = measure(stage, reading, args.trajectories, n)
                rows.append(row)
                print(
                    f"{row['stage']:24s} N = {n:6d}: {row['seconds']:8.2f} s, "
                    f"peak RSS {row['peak_rss_mb']:7.0f} MB (+{row['added_rss_mb']:.0f})",
                    flush=True,
                )
    exponents = {}
    for name in dict.fromkeys(r["stage"] for r in rows):
        mine = [r for r in rows if r["stage"] == name]
        exponents[name] = {
            "time": fit([r["n"] for r in mine], [r["seconds"] for r in mine]),
            "added_memory": fit([r["n"] for r in mine], [r["added_rss_mb"] for r in mine]),
        }
        print(
            f"{name:24s} time ∝ N^{exponents[name]['time']:.2f}, "
            f"added memory ∝ N^{exponents[name]['added_memory']:.2f}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "exponents": exponents}, indent=1))
    if args.figure:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        for name in exponents:
            mine = [r for r in rows if r["stage"] == name]
            ax.loglog([r["n"] for r in mine], [r["seconds"] for r in mine], "o-", label=name)
        ax.set_xlabel("N (test images)")
        ax.set_ylabel("wall time (s)")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(args.figure, dpi=120)


if __name__ == "__main__":
    main()
