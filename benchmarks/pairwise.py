"""Benchmark: the project's exact pairwise + shadowing analysis against a naive torch.cdist baseline.

Usage::

    python benchmarks/pairwise.py --n 10000 --depths 17 --classes 10 --json OUT [--trajectories FILE]
    python benchmarks/pairwise.py --n 10000 --classes 100 --json OUT     # CIFAR-100-like heads
    python benchmarks/pairwise.py --n 10000 --classes 1000 --json OUT    # ImageNet-like heads

What is timed, in one run, each in its own child process (so each gets its own peak RSS):

(a) project: ``resdyn.distances.pairwise_shard`` over all rows (every output: e, E, Ē, m_t, per-depth
    nearest neighbours), then every image's greedy pseudo-orbit (``resdyn.shadowing.greedy_pseudo_orbits``)
    and its shadowing error (``resdyn.shadowing.shadowing_errors`` → ``resdyn.distances.min_max_distance``).
(b) baseline: the same outputs the naive way — for each 1,000-row chunk and each depth, ``torch.cdist``
    (float64, ``donot_use_mm_for_euclid_dist``: the matrix-product expansion is not exact at small
    distances, method §6) against all N rows, the full distance matrices reduced by max / mean over depths,
    then masked minima (first occurrence for ties); the orbits' shadowing errors by cdist of the orbit
    points against all images per depth, max over depths, min over images.

Checks: (a) against the float64 brute force (``pairwise_bruteforce``, ``min_max_distance_bruteforce``) on a
subsample, and (a) against (b) on everything (relative 1e-12 on values, identical indices and pairs).
Both sides are warmed up first (numba compilation and torch's first call are not timed). The machine is
shared: the 1-minute load average before and after is reported with the timings.

Generator (``synthetic_trajectories``), a stand-in for a trained ResNet's probability trajectories: each
image gets a label; with probability ``error_rate`` its evidence points to another class (a misclassified
image). Its latent logit vector is ``conf · e_evidence + 0.7 · noise`` with a per-image confidence in
[0.5, 3]; along depth the logits follow a random walk (total step std 0.6) and are multiplied by a scale
that sharpens from 0.2 at t = 0 to 3.2 at t = T, then softmaxed in float64: trajectories start near the
uniform distribution and end near one-hot, with the misclassified images inside another class's cluster.
For C > 10 the evidence gets an extra log((C − 1)/9)/3.2, which offsets the (C − 1)-fold sum of the other
classes in the softmax: the mean top-1 probability at t = T is 0.77 (C = 10), 0.63 (C = 100) and 0.54
(C = 1000), the argmax agrees with the label for about half of the images at every C (an ImageNet
ResNet-50's mean top-1 probability is of the order of 0.6-0.8); the script prints it.
A fraction ``near_dup`` of images copies another image's logits plus 1e-7 noise (near-duplicates), and
``exact_dup`` copies one exactly (ties). With ``--trajectories FILE`` the /probs and /labels of a
trajectories.h5 are used instead.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import queue as queue_module
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from resdyn.io import atomic_output  # noqa: E402

BASELINE_ROWS = 1000
RTOL = 1e-12
CHUNK = 256  # rows per block inside the kernel (results do not depend on it)


def synthetic_trajectories(
    n: int,
    depths: int,
    classes: int,
    *,
    seed: int = 0,
    error_rate: float = 0.1,
    near_dup: float = 0.005,
    exact_dup: float = 0.001,
) -> tuple[np.ndarray, np.ndarray]:
    """Realistic probability trajectories (N, depths, classes) float64 and labels (N,) int64 (module doc)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    evidence = labels.copy()
    wrong = rng.random(n) < error_rate
    evidence[wrong] = (labels[wrong] + rng.integers(1, classes, wrong.sum())) % classes
    latent = 0.7 * rng.standard_normal((n, classes))
    # with C classes the other C − 1 terms of the softmax sum grow (C − 1)-fold: a margin of
    # log((C − 1)/9) at the last depth's scale keeps the heads about as peaked as at C = 10 (0 there)
    margin = np.log(max(classes - 1, 1) / 9) / 3.2 if classes > 10 else 0.0
    latent[np.arange(n), evidence] += rng.uniform(0.5, 3.0, n) + margin
    walk = np.cumsum(rng.standard_normal((n, depths, classes)) * (0.6 / np.sqrt(depths)), axis=1)
    scale = 0.2 + 3.0 * (np.arange(depths) / max(depths - 1, 1)) ** 1.5
    logits = scale[None, :, None] * (latent[:, None, :] + walk)
    pairs = rng.permutation(n)
    n_near, n_exact = int(near_dup * n), int(exact_dup * n)
    near, exact = (
        pairs[: 2 * n_near].reshape(-1, 2),
        pairs[2 * n_near : 2 * (n_near + n_exact)].reshape(-1, 2),
    )
    logits[near[:, 0]] = logits[near[:, 1]] + 1e-7 * rng.standard_normal((len(near), depths, classes))
    logits[exact[:, 0]] = logits[exact[:, 1]]
    logits -= logits.max(axis=2, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=2, keepdims=True)
    return probs, labels.astype(np.int64)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_project(probs: np.ndarray, labels: np.ndarray, n_classes: int) -> dict:
    """(a): the project's whole analysis; returns every output and the seconds it took."""
    from resdyn.distances import pairwise_shard
    from resdyn.shadowing import greedy_pseudo_orbits, shadowing_errors

    warm_p, warm_y = synthetic_trajectories(64, probs.shape[1], n_classes, seed=1)
    warm = pairwise_shard(warm_p, warm_y, 0, 64, n_classes=n_classes, chunk=CHUNK, device="cpu")
    orbits, _ = greedy_pseudo_orbits(warm.nn_index, warm.nn_distance)
    shadowing_errors(warm_p, orbits, 0, 64, chunk=CHUNK)

    began = time.perf_counter()
    result = pairwise_shard(probs, labels, 0, len(labels), n_classes=n_classes, chunk=CHUNK, device="cpu")
    pair_s = time.perf_counter() - began
    orbits, hops = greedy_pseudo_orbits(result.nn_index, result.nn_distance)
    eps, b_star = shadowing_errors(probs, orbits, 0, len(labels), chunk=CHUNK)
    total_s = time.perf_counter() - began
    return {
        "seconds": total_s,
        "pairwise_s": pair_s,
        "shadowing_s": total_s - pair_s,
        "E": result.E,
        "E_pair": result.E_pair,
        "E_mean": result.E_mean,
        "E_mean_pair": result.E_mean_pair,
        "expansive": result.expansive,
        "expansive_pair": result.expansive_pair,
        "depth_min": result.depth_min,
        "depth_min_pair": result.depth_min_pair,
        "nn_index": result.nn_index,
        "nn_distance": result.nn_distance,
        "orbits": orbits,
        "epsilon": eps,
        "shadow_image": b_star,
        "peak_rss_mb": _peak_rss_mb(),
    }


def _first_min(values, torch):
    low = values.min()
    flat = int(torch.argmax((values == low).reshape(-1).to(torch.uint8)))
    return float(low), flat


def _class_pair_minima(values, y, r0: int, upper, n_classes: int, best, best_pair, torch) -> None:
    """Fold the rows r0.. of a (rows, N) matrix of pair values into ``best`` / ``best_pair`` (C, C; upper
    triangle): per class pair {a, b} the minimum over i < j, ties → the lexicographically smaller (i, j).

    Vectorised over the classes with ``scatter_reduce`` (two passes over the matrix per reduction), so the
    baseline's cost does not grow with C (a loop over the C partner classes would make it C times slower,
    an unfair baseline at C = 1000).
    """
    rows, n = values.shape
    big = torch.iinfo(torch.int64).max
    cols = torch.arange(n)
    masked = torch.where(upper, values, torch.inf)
    by_col = y[None, :].expand(rows, n)
    # per row i and partner class b: the smallest value over j > i of class b, and the first such j
    low = torch.full((rows, n_classes), torch.inf, dtype=values.dtype)
    low = low.scatter_reduce(1, by_col, masked, "amin")
    hit = masked == low.gather(1, by_col)
    first_j = torch.full((rows, n_classes), big).scatter_reduce(
        1, by_col, torch.where(hit, cols[None, :], big), "amin"
    )
    row_y = y[r0 : r0 + rows]
    low[torch.arange(rows), row_y] = torch.inf  # same-class pairs are not class pairs
    # per row class a and partner class b: the smallest over rows i of class a, and the first such i
    by_row = row_y[:, None].expand(rows, n_classes)
    low_ab = torch.full((n_classes, n_classes), torch.inf, dtype=values.dtype)
    low_ab = low_ab.scatter_reduce(0, by_row, low, "amin")
    hit = (low == low_ab.gather(0, by_row)) & torch.isfinite(low)
    first_i = torch.full((n_classes, n_classes), big).scatter_reduce(
        0, by_row, torch.where(hit, torch.arange(rows)[:, None], big), "amin"
    )
    low_ab, first_i, first_j = low_ab.numpy(), first_i.numpy(), first_j.numpy()
    a, b = np.nonzero(np.isfinite(low_ab))
    i = first_i[a, b]
    values, pairs_i, pairs_j = low_ab[a, b], r0 + i, first_j[i, b]
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    # candidates in (value, i, j) order, then the first per class pair {lo, hi}: the chunk's best
    order = np.lexsort((pairs_j, pairs_i, values, hi, lo))
    lo, hi, values, pairs_i, pairs_j = lo[order], hi[order], values[order], pairs_i[order], pairs_j[order]
    first = np.r_[True, (lo[1:] != lo[:-1]) | (hi[1:] != hi[:-1])]
    lo, hi, values, pairs_i, pairs_j = lo[first], hi[first], values[first], pairs_i[first], pairs_j[first]
    cur_v, cur_i, cur_j = best[lo, hi], best_pair[lo, hi, 0], best_pair[lo, hi, 1]
    lex = (cur_i < 0) | (pairs_i < cur_i) | ((pairs_i == cur_i) & (pairs_j < cur_j))
    take = (values < cur_v) | ((values == cur_v) & lex)
    best[lo[take], hi[take]] = values[take]
    best_pair[lo[take], hi[take]] = np.stack([pairs_i[take], pairs_j[take]], axis=1)


def run_baseline(probs: np.ndarray, labels: np.ndarray, n_classes: int) -> dict:
    """(b): the naive torch.cdist analysis (module doc); returns every output and its seconds."""
    import torch

    from resdyn.shadowing import greedy_pseudo_orbits

    torch.set_num_threads(os.cpu_count() or 1)
    torch.cdist(torch.rand(8, 4, dtype=torch.float64), torch.rand(8, 4, dtype=torch.float64))
    mode = "donot_use_mm_for_euclid_dist"
    began = time.perf_counter()
    n, depths, _ = probs.shape
    X = torch.from_numpy(probs)
    y = torch.from_numpy(labels)
    cols = torch.arange(n)
    E = np.full((2, n_classes, n_classes), np.inf)
    E_pair = np.full((2, n_classes, n_classes, 2), -1, np.int64)
    dm = np.full(depths, np.inf)
    dm_pair = np.full((depths, 2), -1, np.int64)
    nn_index = np.empty((depths, n), np.int64)
    nn_distance = np.empty((depths, n))
    for r0 in range(0, n, BASELINE_ROWS):
        r1 = min(r0 + BASELINE_ROWS, n)
        rows = torch.arange(r0, r1)
        upper = cols[None, :] > rows[:, None]
        diff = (y[r0:r1, None] != y[None, :]) & upper
        dmax = dsum = None
        for t in range(depths):
            dist = torch.cdist(X[r0:r1, t], X[:, t], compute_mode=mode)
            dmax = dist.clone() if dmax is None else torch.maximum(dmax, dist)
            dsum = dist.clone() if dsum is None else dsum + dist
            own = dist.clone()
            own[torch.arange(r1 - r0), rows] = torch.inf
            low = own.min(dim=1, keepdim=True).values
            nn_distance[t, r0:r1] = low[:, 0].numpy()
            nn_index[t, r0:r1] = torch.where(own == low, cols[None, :], n).min(dim=1).values.numpy()
            v, flat = _first_min(torch.where(diff, dist, torch.inf), torch)
            if v < dm[t]:
                dm[t], dm_pair[t] = v, (r0 + flat // n, flat % n)
        mean = dsum / depths
        for k, values in enumerate((dmax, mean)):
            _class_pair_minima(values, y, r0, upper, n_classes, E[k], E_pair[k], torch)
    orbits, _ = greedy_pseudo_orbits(nn_index, nn_distance)
    queries = torch.from_numpy(probs[orbits, np.arange(depths)[None, :]])
    eps = np.empty(n)
    b_star = np.empty(n, np.int64)
    for r0 in range(0, n, BASELINE_ROWS):
        r1 = min(r0 + BASELINE_ROWS, n)
        worst = None
        for t in range(depths):
            dist = torch.cdist(queries[r0:r1, t], X[:, t], compute_mode=mode)
            worst = dist if worst is None else torch.maximum(worst, dist)
        low = worst.min(dim=1, keepdim=True).values
        eps[r0:r1] = low[:, 0].numpy()
        b_star[r0:r1] = torch.where(worst == low, cols[None, :], n).min(dim=1).values.numpy()
    upper = np.triu(np.ones((n_classes, n_classes), bool), 1)
    flat_v, flat_p = E[0][upper], E_pair[0][upper]
    order = np.lexsort((flat_p[:, 1], flat_p[:, 0], flat_v))
    seconds = time.perf_counter() - began
    return {
        "seconds": seconds,
        "E": np.where(np.isfinite(E[0]), E[0], np.nan),
        "E_pair": E_pair[0],
        "E_mean": np.where(np.isfinite(E[1]), E[1], np.nan),
        "E_mean_pair": E_pair[1],
        "expansive": float(flat_v[order[0]]),
        "expansive_pair": flat_p[order[0]],
        "depth_min": dm,
        "depth_min_pair": dm_pair,
        "nn_index": nn_index,
        "nn_distance": nn_distance,
        "orbits": orbits,
        "epsilon": eps,
        "shadow_image": b_star,
        "peak_rss_mb": _peak_rss_mb(),
    }


def compare(project: dict, baseline: dict) -> dict[str, bool]:
    """Per output: values within relative 1e-12 and identical indices / pairs (upper triangles of E, Ē)."""
    n_cls = project["E"].shape[0]
    upper = np.triu(np.ones((n_cls, n_cls), bool), 1)
    checks = {}
    for key in ("E", "E_mean"):
        a, b = project[key][upper], baseline[key][upper]
        checks[key] = bool(np.allclose(a, b, rtol=RTOL, atol=0, equal_nan=True))
        checks[key + "_pair"] = bool(
            np.array_equal(project[key + "_pair"][upper], baseline[key + "_pair"][upper])
        )
    for key in ("expansive", "depth_min", "nn_distance", "epsilon"):
        checks[key] = bool(np.allclose(project[key], baseline[key], rtol=RTOL, atol=0))
    for key in ("expansive_pair", "depth_min_pair", "nn_index", "orbits", "shadow_image"):
        checks[key] = bool(np.array_equal(project[key], baseline[key]))
    return checks


def check_bruteforce(
    probs: np.ndarray, labels: np.ndarray, n_classes: int, n_sub: int, seed: int = 0
) -> dict:
    """(a) vs the float64 brute force: the pairwise stage on a random subsample of images, and
    min_max_distance for a random subsample of orbit queries against all N images."""
    from resdyn.distances import (
        merge_pairwise,
        min_max_distance,
        min_max_distance_bruteforce,
        pairwise_bruteforce,
        pairwise_shard,
        shard_rows,
    )

    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(len(labels), size=min(n_sub, len(labels)), replace=False))
    sub_p, sub_y = probs[keep], labels[keep]
    reference = pairwise_bruteforce(sub_p, sub_y, n_classes)
    fast = merge_pairwise(
        [
            pairwise_shard(
                sub_p, sub_y, *shard_rows(len(keep), 3, k), n_classes=n_classes, chunk=CHUNK, device="cpu"
            )
            for k in range(3)
        ]
    )
    fields = ("E", "E_pair", "E_mean", "E_mean_pair", "expansive", "expansive_pair", "depth_min")
    fields += ("depth_min_pair", "nn_index", "nn_distance")

    def as_dict(r):
        return {k: getattr(r, k) for k in fields}

    left, right = as_dict(fast), as_dict(reference)
    for d in (left, right):
        d.update(epsilon=np.zeros(1), orbits=np.zeros(1), shadow_image=np.zeros(1))
    checks = {
        f"pairwise_{k}": v
        for k, v in compare(left, right).items()
        if k not in ("epsilon", "orbits", "shadow_image")
    }
    queries_idx = rng.choice(len(labels), size=(min(64, len(labels)), probs.shape[1]))
    queries = probs[queries_idx, np.arange(probs.shape[1])[None, :]]
    v_fast, i_fast = min_max_distance(queries, probs)
    v_ref, i_ref = zip(
        *(min_max_distance_bruteforce(queries[k : k + 8], probs) for k in range(0, len(queries), 8))
    )
    checks["min_max_value"] = bool(np.array_equal(v_fast, np.concatenate(v_ref)))
    checks["min_max_index"] = bool(np.array_equal(i_fast, np.concatenate(i_ref)))
    return checks


def _child(target, args, queue) -> None:
    queue.put(target(*args))


def in_child(target, *args) -> dict:
    """Run ``target(*args)`` in a fresh process (its own peak RSS) and return its dict."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(target, args, queue))
    proc.start()
    while True:  # a child killed (e.g. out of memory) before it answers must not hang the benchmark
        try:
            out = queue.get(timeout=5)
            break
        except queue_module.Empty:
            if not proc.is_alive():
                raise RuntimeError(f"{target.__name__} died with exit code {proc.exitcode}") from None
    proc.join()
    if proc.exitcode:
        raise RuntimeError(f"{target.__name__} failed with exit code {proc.exitcode}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--depths", type=int, default=17)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--subsample", type=int, default=600, help="images in the brute-force check")
    parser.add_argument("--trajectories", type=Path, help="use /probs and /labels of a trajectories.h5")
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--skip-baseline", action="store_true", help="time (a) only (no ratio)")
    args = parser.parse_args(argv)

    if args.trajectories:
        from resdyn.artifacts import Trajectories

        trajectories = Trajectories.load(args.trajectories)
        probs, labels = trajectories.probs, trajectories.labels
        n_classes = int(max(labels.max() + 1, args.classes))
        source = str(args.trajectories)
    else:
        probs, labels = synthetic_trajectories(args.n, args.depths, args.classes, seed=args.seed)
        n_classes, source = args.classes, f"synthetic (seed {args.seed})"
    top1 = probs.max(axis=2).mean(axis=0)  # mean top-1 probability per depth
    load_before = os.getloadavg()[0]
    project = in_child(run_project, probs, labels, n_classes)
    baseline = None if args.skip_baseline else in_child(run_baseline, probs, labels, n_classes)
    load_after = os.getloadavg()[0]
    brute = check_bruteforce(probs, labels, n_classes, args.subsample, seed=args.seed)
    versus = compare(project, baseline) if baseline else {}
    report = {
        "source": source,
        "n": int(probs.shape[0]),
        "depths": int(probs.shape[1]),
        "classes": n_classes,
        "top1_first_depth": float(top1[0]),
        "top1_last_depth": float(top1[-1]),
        "input_mb": probs.nbytes / 2**20,
        "cpu_count": os.cpu_count(),
        "load_before": load_before,
        "load_after": load_after,
        "project_s": project["seconds"],
        "project_pairwise_s": project["pairwise_s"],
        "project_shadowing_s": project["shadowing_s"],
        "peak_rss_mb": project["peak_rss_mb"],
        "baseline_s": baseline["seconds"] if baseline else None,
        "baseline_peak_rss_mb": baseline["peak_rss_mb"] if baseline else None,
        "ratio": baseline["seconds"] / project["seconds"] if baseline else None,
        "identical": bool(all(versus.values())) if baseline else None,
        "bruteforce_identical": bool(all(brute.values())),
        "checks_vs_baseline": versus,
        "checks_vs_bruteforce": brute,
    }
    rows = [("project (a)", project["seconds"], project["peak_rss_mb"])]
    if baseline:
        rows.append(("baseline (b) torch.cdist", baseline["seconds"], baseline["peak_rss_mb"]))
    print(
        f"N={report['n']} T+1={report['depths']} C={n_classes} cpus={os.cpu_count()} "
        f"load {load_before:.1f} -> {load_after:.1f}  [{source}]"
    )
    print(
        f"mean top-1 probability {top1[0]:.3f} at t = 0, {top1[-1]:.3f} at t = T; "
        f"input {probs.nbytes / 2**20:.0f} MB"
    )
    print(f"{'method':<28}{'seconds':>10}{'peak RSS MB':>14}")
    for name, seconds, rss in rows:
        print(f"{name:<28}{seconds:>10.2f}{rss:>14.0f}")
    print(
        f"  project split: pairwise {project['pairwise_s']:.2f} s, shadowing {project['shadowing_s']:.2f} s"
    )
    if baseline:
        print(f"ratio baseline/project = {report['ratio']:.1f}, identical = {report['identical']}")
    print(f"brute-force subsample identical = {report['bruteforce_identical']}")
    for name, ok in {**versus, **brute}.items():
        if not ok:
            print(f"  MISMATCH: {name}")
    with atomic_output(args.json) as tmp:
        tmp.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
