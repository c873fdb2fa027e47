"""Exact all-pairs min-max reductions over probability trajectories (method §3.1, §3.2, §6; paper Def. 1–2).

Notation: ``probs[i, t]`` = p_t(i) ∈ R^C for N images and depths t = 0..T (D = T+1), labels y_i ∈ 0..C−1,
d_t(i, j) = ‖p_t(i) − p_t(j)‖₂. Arithmetic, shared bit for bit by every path and by the reference
:func:`pairwise_bruteforce`: d_t = sqrt(Σ_c (p_t(i)_c − p_t(j)_c)²), the sum taken sequentially over
c = 0..C−1 in float64 — always from differences, never ‖u‖² + ‖v‖² − 2u·v (off by ~4e-4 relative at
d ~ 1e-7 in float64, everything lost in float32; method §6); sqrt correctly rounded; the mean over depths
is the sequential sum over t = 0..T divided by D.

Quantities (one :class:`PairwiseResult`):

- E[a, b] = min over pairs i < j with {y_i, y_j} = {a, b} of max_t d_t(i, j), its pair and
  t* = argmax_t d_t (ties: smaller t); Ē[a, b] the same with mean_t; symmetric, diagonal empty (NaN, −1).
- the g-expansive constant e = min_{a<b} E[a, b] (= the min over all different-class pairs), pair, t*.
- m_t = min over different-class pairs of d_t, with its pair.
- nearest neighbours: nn_index[t, i] = argmin_{j ≠ i} d_t(i, j), nn_distance[t, i] (all classes).
- close pairs (optional, for a reading's ``max`` or ``min`` over depths S): every different-class pair
  with S_t d_t < r, sorted by (value, i, j), and r itself; r = :func:`close_radius` aims at
  :data:`CLOSE_PAIRS` of them. Every pair left off has S_t d_t ≥ r. The sample-size stage takes each
  subset's e from this list (:class:`resdyn.sample_size.CandidatePairs`) instead of searching again.
- Tie rule everywhere: equal values → the lexicographically smaller (i, j), i < j (smaller j for the
  nearest-neighbour tables).

Sharding (ARCHITECTURE "Pairwise"): shard k of S owns rows ``shard_rows(N, S, k)`` and visits the pairs
(i, j), i < j, with i in its rows. Its E, Ē, m_t are minima over exactly those pairs. Its nearest-neighbour
tables are filled from both sides of those pairs (row i from its partners j > i, row j from its partners
i in the shard), so a shard also holds partial entries for rows after its own; :func:`merge_pairwise`
(element-wise min with the tie rule, associative) over shards tiling 0..N gives every row's nearest
j ≠ i, identical for any shard count. (This visits each pair once; having every shard look at all j for
its own rows, as the contract's wording suggests, would cost up to twice the arithmetic.)

CPU algorithm (``resdyn._kernels.fused_pairs``, numba, exact): one pass over the pairs i < j, all depths
at once, vectorised over a column block of partners j, taken for 32 rows at a time so that each column
value is loaded once per 32 rows (:func:`kernel_blocking`; it is what keeps C = 100 and 1000 heads, whose
partners do not fit in cache, fast). Each squared distance is computed once
and feeds, per depth, the nearest-neighbour tables of both images, the per-depth different-class minimum,
and the running max / sum over depths. Comparisons are made on squared distances where they are certain
(relative margin 1e-15 either side) and on the square roots inside the margin, so ties are decided on the
same values as the reference; where a tile visits pairs out of lexicographic order, equal values go to
the smaller pair explicitly. Below C = 32, Ē is pruned by ‖mean_t p_t(i) − mean_t p_t(j)‖ ≤ mean_t d_t
(triangle inequality), so the D square roots of a pair are taken only when it can still win. t* of each
E[a, b] is recorded when the pair wins. Rows are split into
blocks of equal pair counts run in parallel (prange) and merged exactly. The arithmetic is the full
N²/2·D·C brute force (~25 GFLOP at paper scale), done once, fused and vectorised; see
benchmarks/pairwise.py for the measured speed against the torch.cdist baseline.

GPU (``device="cuda"``): the same quantities from a chunked brute force in torch with the same
sequential arithmetic (CUDA's float64 sqrt is IEEE, so the same bits); ties resolved by first occurrence
in (i, j) order. The rows per chunk follow the free device memory; the squared distances come from a
Triton kernel compiled without FMA contraction (``resdyn._gpu_kernels``), the class pairs are reduced
with ``scatter_reduce`` (:func:`_pairwise_torch`).

Memory: the kernel holds, per row block (4 per thread), two (D, N) tables (float64 + int64) and
O(D·chunk) scratch; nothing is N² or N²·D. Measured at N = 10,000, T+1 = 17, C = 10 on 2 threads
(8 blocks): ``pairwise_shard`` over all rows raised the process's peak RSS by 96 MB (221 → 317 MB,
the rest being the interpreter, numba, scipy and the 13.6 MB input); ``min_max_distance`` for 10,000
queries added nothing beyond that.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from resdyn import _kernels
from resdyn.io import InputError

log = logging.getLogger(__name__)

if TYPE_CHECKING:  # torch is imported where the CUDA path runs, not at module import
    import torch


@dataclass
class PairwiseResult:
    """The pairwise statistics of method §3.1 (also the partial result of one shard).

    Empty entries hold NaN (values) and −1 (pairs, depths); unfilled nearest-neighbour rows −1 / inf.
    """

    expansive: float  # e = min_{y_i != y_j} max_t d_t(i, j)
    expansive_pair: np.ndarray  # (2,) int64, i < j
    expansive_t_star: int  # argmax_t d_t(i*, j*), ties → smaller t
    E: np.ndarray  # (C, C) float64
    E_pair: np.ndarray  # (C, C, 2) int64
    E_t_star: np.ndarray  # (C, C) int64
    E_mean: np.ndarray  # (C, C) float64
    E_mean_pair: np.ndarray  # (C, C, 2) int64
    depth_min: np.ndarray  # (T+1,) float64
    depth_min_pair: np.ndarray  # (T+1, 2) int64
    nn_index: np.ndarray  # (T+1, N) int64
    nn_distance: np.ndarray  # (T+1, N) float64
    n_shards: int = 1
    close_value: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (K,) float64, ascending
    close_pair: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.int64))  # (K, 2), i < j
    close_bound: float = math.nan  # r: every pair left off has S_t d_t >= r; NaN: no list

    @property
    def n_classes(self) -> int:
        return self.E.shape[0]


# --------------------------------------------------------------------------------------------- validation


def _check_inputs(probs: Any, labels: Any, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    probs = np.asarray(probs)
    labels = np.asarray(labels)
    if probs.ndim != 3:
        raise InputError(f"probs must be (N, T+1, C), got shape {probs.shape}")
    if not np.issubdtype(probs.dtype, np.floating):
        raise InputError(f"probs must be floating point, got dtype {probs.dtype}")
    probs = np.ascontiguousarray(probs, dtype=np.float64)
    n_images = probs.shape[0]
    if labels.shape != (n_images,):
        raise InputError(f"labels must be (N,) = ({n_images},), got shape {labels.shape}")
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        raise InputError(f"labels must be integers, got dtype {labels.dtype}")
    labels = labels.astype(np.int64)
    if n_images < 2:
        raise InputError(f"pairwise statistics need N >= 2 images, got N = {n_images}")
    if not np.isfinite(probs).all():
        bad = np.argwhere(~np.isfinite(probs))[0]
        raise InputError(f"probs[{bad[0]}, {bad[1]}, {bad[2]}] is not finite")
    if int(n_classes) < 1:
        raise InputError(f"n_classes must be >= 1, got {n_classes}")
    if labels.min() < 0 or labels.max() >= n_classes:
        raise InputError(
            f"labels hold values in {labels.min()}..{labels.max()}, outside 0..{n_classes - 1} (n_classes)"
        )
    return probs, labels


def shard_rows(n_images: int, n_shards: int, shard: int) -> tuple[int, int]:
    """Rows ``start..stop-1`` of shard ``shard`` of ``n_shards`` over the pair matrix of ``n_images`` rows.

    Row i has N−1−i partners j > i, so rows before i hold P(i) = i(2N−i−1)/2 pairs; shard k starts at the
    first row with P(i) ≥ k·P(N)/S, which balances the i < j pairs (the dominant cost of the scan) across
    shards. Consecutive shards tile 0..N; a shard may be empty when S > N.
    """
    if n_images < 0 or n_shards < 1 or not 0 <= shard < n_shards:
        raise ValueError(f"invalid shard {shard} of {n_shards} for N = {n_images}")

    def boundary(k: int) -> int:
        if k <= 0:
            return 0
        if k >= n_shards:
            return n_images
        total = n_images * (n_images - 1) // 2
        target = k * total  # compare P(i) * S >= k * total in integers
        lo, hi = 0, n_images
        while lo < hi:
            mid = (lo + hi) // 2
            if mid * (2 * n_images - mid - 1) // 2 * n_shards >= target:
                hi = mid
            else:
                lo = mid + 1
        return lo

    return boundary(shard), boundary(shard + 1)


# ------------------------------------------------------------------------------------- exact arithmetic


def squared_distance(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Σ_c (u_c − v_c)², summed sequentially over the last axis (the module's reference arithmetic)."""
    u, v = np.broadcast_arrays(u, v)
    total = np.zeros(u.shape[:-1])
    for c in range(u.shape[-1]):
        diff = u[..., c] - v[..., c]
        total += diff * diff
    return total


_REDUCTIONS = {"max": _kernels.REDUCE_MAX, "min": _kernels.REDUCE_MIN, "mean": _kernels.REDUCE_MEAN}


def reduced_distances(
    probs: np.ndarray, first: np.ndarray, second: np.ndarray, over_depths: str
) -> np.ndarray:
    """S_t d_t(first[k], second[k]) for every k, S the reduction ``over_depths`` (max, min or mean over the
    D depths of the (N, D, C) ``probs``), d_t in this module's arithmetic and the mean the sequential sum
    over t divided by D: the values the pairwise kernel compares, for a given list of pairs (a numba kernel,
    O(1) memory per pair)."""
    if over_depths not in _REDUCTIONS:
        raise InputError(f"over_depths must be one of {sorted(_REDUCTIONS)}, got {over_depths!r}")
    out = np.empty(np.size(first))
    if out.size:
        _kernels.pair_reduce(
            np.ascontiguousarray(probs, dtype=np.float64),
            np.ascontiguousarray(first, dtype=np.int64),
            np.ascontiguousarray(second, dtype=np.int64),
            _REDUCTIONS[over_depths],
            out,
        )
    return out


# ----------------------------------------------------------------------------------- min_max_distance


@contextlib.contextmanager
def kernel_threads(threads: int, *, announce: bool = True) -> Iterator[int]:
    """Run the CPU kernels (:mod:`resdyn._kernels`: this module's and :mod:`resdyn.shadowing`'s) on
    ``threads`` numba threads inside the block (yields the count used), then restore the count before it;
    ``announce`` states the count in the log (a job's count; off for the short switches inside a stage).

    A job's kernels must use the CPUs it was given (its Snakemake ``threads``, which SLURM allocates as
    ``--cpus-per-task``): numba ignores the ``OMP_NUM_THREADS`` that Snakemake exports and starts one thread
    per CPU the process may run on, so without this every job would run on all of them at once. The count
    is capped at numba's pool (``NUMBA_NUM_THREADS``, default those CPUs): numba cannot start more. The
    kernels' results do not depend on it (exact merges).

    Raises:
        ValueError: ``threads`` < 1.
    """
    import numba

    requested, pool = int(threads), numba.config.NUMBA_NUM_THREADS
    if requested < 1:
        raise ValueError(f"kernel threads: {threads!r}, need at least 1")
    used, before = min(requested, pool), numba.get_num_threads()
    numba.set_num_threads(used)
    if announce:
        log.info("CPU kernels on %d numba thread(s) (%d requested, pool %d)", used, requested, pool)
    try:
        yield used
    finally:
        numba.set_num_threads(before)


def concurrent_callers(requested: int | None = None) -> int:
    """How many Python threads may run this module's CPU kernels at once, one numba thread each:
    ``requested`` (default numba's thread count: ``NUMBA_NUM_THREADS``, else the machine's cores) when
    numba's threading layer allows concurrent callers (:func:`resdyn._kernels.thread_safe`), else 1. The
    kernels' results do not depend on the threads that run them."""
    import numba

    wanted = numba.get_num_threads() if requested is None else int(requested)
    return wanted if wanted > 1 and _kernels.thread_safe() else 1


def _depth_order(points: np.ndarray) -> np.ndarray:
    """Depths of the (N, D, C) ``points`` sorted by decreasing total variance: the most spread depth prunes
    best as a lower bound. Estimated on at most 2,048 evenly spaced points (it only orders the pruning,
    never a result; over all 10,000 points at C = 1000 the variance took 1.8 s)."""
    step = max(1, points.shape[0] // 2048)
    spread = points[::step].var(axis=0).sum(axis=1)
    return np.argsort(-spread, kind="stable").astype(np.int64)


@dataclass
class ClassWindows:
    """The points of one depth arranged for the kernels' windowed searches
    (:func:`resdyn._kernels.class_windows`): split by their largest coordinate c (the first on ties) into C
    groups, each sorted by its coordinate c. A point's distance to a query is at least their difference in
    that coordinate, so a search visits only the part of each group within its current bound.

    Attributes: ``sorted_points`` (1, C, N) the points coordinate-major in group order, ``keys`` (N,) each
    position's coordinate c, ``points`` (N,) the point at each position, ``bounds`` (C + 1,) the groups'
    first positions (group c at bounds[c]..bounds[c+1]−1)."""

    sorted_points: np.ndarray
    keys: np.ndarray
    points: np.ndarray
    bounds: np.ndarray
    depth: int

    @classmethod
    def build(cls, points: np.ndarray, depth: int) -> ClassWindows:
        """The windows of the (N, D, C) float64 ``points`` at ``depth``. O(N·C + N log N)."""
        n_points, _, n_coords = points.shape
        windows = cls(
            np.empty((1, n_coords, n_points)),
            np.empty(n_points),
            np.empty(n_points, dtype=np.int64),
            np.empty(n_coords + 1, dtype=np.int64),
            int(depth),
        )
        _kernels.class_windows(points, windows.depth, *windows.arrays())
        return windows

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(sorted_points, keys, points, bounds): the kernels' arguments."""
        return self.sorted_points, self.keys, self.points, self.bounds

    def nearest(self, points: np.ndarray, images: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``width`` nearest other images of each of ``images`` at this depth, nearest first (ties:
        the smaller index), and their distances: (len(images), width) int64 and float64, −1 / inf past
        the N − 1 others (:func:`resdyn._kernels.nearest_window`). ``points`` are the (N, D, C) points the
        windows were built from."""
        index = np.empty((images.size, width), dtype=np.int64)
        value = np.empty((images.size, width), dtype=np.float64)
        _kernels.nearest_window(points, self.depth, *self.arrays(), images, index, value)
        return index, value


def min_max_distance(
    queries: np.ndarray, points: np.ndarray, *, chunk: int = 1024, seeds: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """ε(q) = min_b max_t ‖points[b, t] − q[t]‖₂ and its argmin b (ties: smaller b), for every query q.

    method §3.2 (shadowing error of a pseudo-orbit q_t = p_t(a_t), paper Definition 2). Exact in float64
    with the module's arithmetic. A numba kernel (:func:`resdyn._kernels.min_max_window`) prunes with the
    lower bound d_{t0} ≤ max_t d_t at the most spread depth t0 and checks the rest with early abandoning;
    queries with the same coordinates at t0 (orbits that have merged by then) share the bound's work. Each
    query's incumbent starts at the best of the group's 8 nearest points at t0 and its ``seeds``; the
    points within the group's widest incumbent at t0 are then found through :class:`ClassWindows` (only
    the points whose difference in one coordinate is within it are visited) and checked further (in any
    order: the tie rule is applied explicitly). ``chunk`` queries are processed at a time (memory
    O(chunk·D·C + N·C + threads·N)).

    Args:
        queries: (M, T+1, C) float.
        points: (N, T+1, C) float, N ≥ 1.
        chunk: queries per block.
        seeds: optional (M, S) indices into ``points``, candidates likely to be close to each query (for a
            pseudo-orbit its start image); they only speed the sweep up, never change its result.

    Returns:
        (M,) float64 values and (M,) int64 indices into ``points``.
    """
    queries = np.asarray(queries, dtype=np.float64)
    points = np.ascontiguousarray(points, dtype=np.float64)
    if points.ndim != 3 or points.shape[0] < 1:
        raise InputError(f"points must be (N, T+1, C) with N >= 1, got shape {points.shape}")
    if queries.ndim != 3 or queries.shape[1:] != points.shape[1:]:
        raise InputError(f"queries must be (M, {points.shape[1]}, {points.shape[2]}), got {queries.shape}")
    if not (np.isfinite(queries).all() and np.isfinite(points).all()):
        raise InputError("queries or points contain NaN or inf")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    n_query = queries.shape[0]
    seeds = np.zeros((n_query, 0), np.int64) if seeds is None else np.asarray(seeds, dtype=np.int64)
    if seeds.ndim != 2 or seeds.shape[0] != n_query:
        raise InputError(f"seeds must be ({n_query}, S), got shape {seeds.shape}")
    if seeds.size and (seeds.min() < 0 or seeds.max() >= points.shape[0]):
        raise InputError(f"seeds hold point indices outside 0..{points.shape[0] - 1}")
    values = np.empty(n_query)
    index = np.empty(n_query, dtype=np.int64)
    if n_query == 0:
        return values, index
    order = _depth_order(points)
    windows = ClassWindows.build(points, order[0])
    at_t0 = np.ascontiguousarray(queries[:, order[0], :])
    # equal coordinates at t0 share a group (compared as bytes: exactly equal floats)
    as_bytes = at_t0.view(np.dtype((np.void, at_t0.dtype.itemsize * at_t0.shape[1]))).ravel()
    _, group_of = np.unique(as_bytes, return_inverse=True)
    group_of = group_of.ravel()
    by_group = np.argsort(group_of, kind="stable")
    for begin in tqdm(range(0, n_query, chunk), desc="min-max", disable=None, leave=False):
        members = by_group[begin : begin + chunk]
        keys = group_of[members]
        groups = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1], True]).astype(np.int64)
        block = np.ascontiguousarray(queries[members])
        block_values = np.empty(len(members))
        block_index = np.empty(len(members), dtype=np.int64)
        _kernels.min_max_window(
            points,
            block,
            order,
            *windows.arrays(),
            np.ascontiguousarray(seeds[members]),
            groups,
            block_values,
            block_index,
        )
        values[members] = block_values
        index[members] = block_index
    return values, index


def min_max_distance_bruteforce(queries: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reference for :func:`min_max_distance`: all (query, point, depth) distances in plain float64."""
    queries = np.asarray(queries, dtype=np.float64)
    points = np.asarray(points, dtype=np.float64)
    dist = np.sqrt(squared_distance(queries[:, None, :, :], points[None, :, :, :]))  # (M, N, D)
    worst = dist.max(axis=2)
    best = worst.min(axis=1)
    index = np.argmax(worst == best[:, None], axis=1)  # first occurrence: smaller b
    return best, index.astype(np.int64)


DISTINCT_FIRST = 2
"""Nearest images :func:`scan_orbits` lists first for a distinct orbit's hop; only the orbits that have
visited all of them search again for their t + 1 nearest. (On 3,466 Fashion-MNIST images, resnet18 and
resnet50, the authors' view: 94.6–96.4 % of the hops take the nearest image, 3.5–5.2 % the second,
0.1–0.2 % a later one; docs/performance.md.)"""


def scan_orbits(
    probs: np.ndarray,
    start: int,
    stop: int,
    *,
    distinct: bool = False,
    known: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy pseudo-orbits from images ``start..stop-1``, each hop found by an exact nearest-neighbour search
    over all N images (the shadowing stage's orbits when they may not revisit or see their own temperature,
    and every sample-size subset's).

    a_0 = i, a_{t+1} = argmin_{j ∈ A_t} d_{t+1}(a_t, j) with ties → smaller j, hop
    δ_t = d_{t+1}(a_t, a_{t+1}), for t = 0..D−2 (D = the view's depths). A_t = {j ≠ a_t}
    (``distinct=False``: the orbits :func:`resdyn.shadowing.greedy_pseudo_orbits` reads off the
    nearest-neighbour tables) or A_t = {j ∉ {a_0..a_t}} (``distinct=True``: no image twice, the authors'
    chains). d is this module's arithmetic (float64, from differences, squares summed over classes in
    order, then the square root), so both routes give the same orbits and hops bit for bit.

    The orbits advance one depth at a time, and each image that some orbit occupies at depth t is searched
    once (:func:`resdyn._kernels.nearest_window`, in parallel): greedy orbits merge, so at t ≥ 1 only a
    fraction of the images are occupied (measured in docs/performance.md). A search visits only the
    points of :class:`ClassWindows` whose difference in one coordinate is within its current bound, a
    fraction of the N for confident probability vectors and all N at worst. A revisiting orbit takes the
    searched image's nearest other image; a distinct one the first of its t + 1 nearest that the orbit has
    not visited (it has visited t images besides a_t, so one of those t + 1 is free); the search lists
    :data:`DISTINCT_FIRST` first and only the orbits that visited all of them search their t + 1. Cost
    O(D·N·(C + log N)) for the windows plus O(searches·window·C), memory O(N·C + threads·N +
    (stop−start)·D).

    Args:
        probs: (N, D, C) float64 probability trajectories (a reading's view), D ≥ 2.
        start, stop: the orbits' start images, 0 ≤ start ≤ stop ≤ N.
        distinct: forbid revisits.
        known: revisiting orbits only: (index, distance), each (D, N), an image's nearest other image at
            each depth and its distance where the caller already knows them (index −1 where not; e.g. a
            subset image whose nearest neighbour in the whole test set lies in the subset: it is then its
            nearest in the subset too, ties included). Only the other occupied images are searched.

    Returns:
        orbits (stop−start, D) int64 with orbits[k, 0] = start + k, and hops (stop−start, D−1) float64.

    Raises:
        InputError: D < 2, N < 2, a bad range, or distinct orbits longer than the N images can fill.
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 3:
        raise InputError(f"probs must be (N, D, C), got shape {probs.shape}")
    n_images, depths, _ = probs.shape
    if depths < 2:
        raise InputError(f"probs have {depths} depth(s); a pseudo-orbit needs at least 2")
    if n_images < 2:
        raise InputError(f"pseudo-orbits need N >= 2 images, got N = {n_images}")
    if known is not None and (distinct or np.shape(known[0]) != (depths, n_images)):
        raise InputError(f"known nearest images need revisiting orbits and ({depths}, {n_images}) tables")
    if distinct and n_images < depths:
        raise InputError(
            f"distinct pseudo-orbits visit {depths} different images, but there are only N = {n_images}: "
            "they run out of images (use orbits: revisit, or more test images)"
        )
    if not 0 <= start <= stop <= n_images:
        raise InputError(f"orbit range {start}..{stop} is outside 0..{n_images}")
    orbits = np.empty((stop - start, depths), dtype=np.int64)
    hops = np.empty((stop - start, depths - 1), dtype=np.float64)
    orbits[:, 0] = np.arange(start, stop)
    if stop == start:
        return orbits, hops
    points = np.ascontiguousarray(probs)
    for t in range(depths - 1):
        windows = ClassWindows.build(points, t + 1)  # one depth at a time: O(N·C) memory at any C
        occupied, which = np.unique(orbits[:, t], return_inverse=True)
        which = which.ravel().astype(np.int64)
        if not distinct:
            if known is None:
                index, value = (column[:, 0] for column in windows.nearest(points, occupied, 1))
            else:  # search only the images whose nearest is not known
                index, value = known[0][t + 1, occupied].copy(), known[1][t + 1, occupied].copy()
                unknown = np.flatnonzero(index < 0)
                if unknown.size:
                    searched = windows.nearest(points, occupied[unknown], 1)
                    index[unknown], value[unknown] = (column[:, 0] for column in searched)
            orbits[:, t + 1] = index[which]
            hops[:, t] = value[which]
            continue
        # the first listed image not yet on the orbit (a_t itself is never listed)
        rows = np.arange(orbits.shape[0], dtype=np.int64)
        index, value = windows.nearest(points, occupied, min(t + 1, DISTINCT_FIRST))
        if _kernels.first_unvisited(index, value, which, rows, orbits, t, hops):
            rows = np.flatnonzero(orbits[:, t + 1] < 0).astype(np.int64)
            again, which = np.unique(orbits[rows, t], return_inverse=True)
            index, value = windows.nearest(points, again, t + 1)
            _kernels.first_unvisited(index, value, which.ravel().astype(np.int64), rows, orbits, t, hops)
    return orbits, hops


# ------------------------------------------------------------------------------------------ pairwise

CLOSE_PAIRS = 4096
"""Different-class pairs a pass's close-pair list aims at (:func:`close_radius`): twice the
:data:`resdyn.sample_size.PAIRS_AT_LEAST` the sample-size stage needs, against the sample's error."""

CLOSE_CAP = 8 * CLOSE_PAIRS
"""Close pairs a shard may record (each row block of the kernel has room for this many): a shard past it
gives no list (the sample-size stage then builds its own), since the radius was far off."""

CLOSE_SAMPLE = 512
"""Evenly spaced images whose different-class pairs :func:`close_radius` ranks."""

CLOSE_REDUCTIONS = ("max", "min")
"""The reductions over depths whose close pairs a pass lists. Under the mean a pair's bound at one depth
is D·r, which would list far too many pairs; a pass under it lists none."""


def close_radius(
    probs: np.ndarray, labels: np.ndarray, over_depths: str, wanted: int = CLOSE_PAIRS
) -> tuple[float, np.ndarray]:
    """The radius r below which about ``wanted`` different-class pairs of the (N, D, C) ``probs`` have
    S_t d_t (S = ``over_depths``, max or min), estimated from the m ≤ :data:`CLOSE_SAMPLE` evenly spaced
    images: about (N/m)² times as many pairs of the whole set lie below a value as of the sample, so r is
    1.01 × the sampled pairs' S_t d_t of rank ⌈wanted·(m/N)²⌉ (the largest when fewer); 0 without a sampled
    different-class pair. A function of the whole arrays only, so every shard of a pass finds the same r.

    Returns r and the sampled pairs' (pairs, D) distances d_t (to choose a depth by)."""
    if over_depths not in CLOSE_REDUCTIONS:
        raise InputError(f"close pairs are listed for over_depths max or min, not {over_depths!r}")
    n_images, depths, _ = probs.shape
    sample = np.unique(np.linspace(0, n_images - 1, min(n_images, CLOSE_SAMPLE)).astype(np.int64))
    first, second = np.triu_indices(sample.size, 1)  # rows of the sample
    across = labels[sample[first]] != labels[sample[second]]
    first, second = sample[first[across]], sample[second[across]]
    at_depth = np.stack(
        [reduced_distances(probs[:, t : t + 1], first, second, "max") for t in range(depths)], axis=1
    ).reshape(-1, depths)
    sampled = np.sort(at_depth.max(axis=1) if over_depths == "max" else at_depth.min(axis=1))
    rank = math.ceil(wanted * (sample.size / n_images) ** 2)
    radius = float(sampled[min(rank, sampled.size) - 1]) * 1.01 if sampled.size else 0.0
    return radius, at_depth


def close_list(
    value: np.ndarray, first: np.ndarray, second: np.ndarray, radius: float
) -> tuple[np.ndarray, np.ndarray]:
    """The pairs (first[k], second[k]) with value[k] < radius, sorted by (value, first, second): their values
    (K,) and pairs (K, 2) int64."""
    keep = value < radius
    value, first, second = value[keep], first[keep], second[keep]
    order = np.lexsort((second, first, value))
    return value[order], np.stack([first[order], second[order]], axis=1).astype(np.int64).reshape(-1, 2)


def _record_threshold(radius: float) -> float:
    """The squared value up to which a kernel records a pair for the list below ``radius``: widened, so
    that every pair it skips has a root strictly above ``radius`` (negative, recording nothing, at 0)."""
    return (radius * (1.0 + 1e-12)) ** 2 if radius > 0 else -1.0


def _close_radius_of(probs: np.ndarray, labels: np.ndarray, close: str | None) -> float:
    """The radius a pass lists close pairs below under the reduction ``close``; NaN for no list."""
    return close_radius(probs, labels, close)[0] if close in CLOSE_REDUCTIONS else math.nan


def _attach_close(
    result: PairwiseResult,
    radius: float,
    recorded: int,
    squared: np.ndarray,
    first: np.ndarray,
    second: np.ndarray,
) -> None:
    """Give ``result`` the close pairs below ``radius`` among the pairs a path recorded within
    :func:`_record_threshold` (``recorded`` of them; their squared reduced distances and pairs): no list
    (bound NaN) when it recorded more than :data:`CLOSE_CAP` (the radius was far off) or none was asked
    for (``radius`` NaN)."""
    if math.isnan(radius) or recorded > CLOSE_CAP:
        result.close_bound = math.nan
        return
    result.close_value, result.close_pair = close_list(np.sqrt(squared), first, second, radius)
    result.close_bound = radius


def _empty_result(n_images: int, depths: int, n_classes: int) -> PairwiseResult:
    return PairwiseResult(
        expansive=math.nan,
        expansive_pair=np.full(2, -1, np.int64),
        expansive_t_star=-1,
        E=np.full((n_classes, n_classes), np.nan),
        E_pair=np.full((n_classes, n_classes, 2), -1, np.int64),
        E_t_star=np.full((n_classes, n_classes), -1, np.int64),
        E_mean=np.full((n_classes, n_classes), np.nan),
        E_mean_pair=np.full((n_classes, n_classes, 2), -1, np.int64),
        depth_min=np.full(depths, np.nan),
        depth_min_pair=np.full((depths, 2), -1, np.int64),
        nn_index=np.full((depths, n_images), -1, np.int64),
        nn_distance=np.full((depths, n_images), np.inf),
    )


def _pick(values: np.ndarray, pairs: np.ndarray, axis: int = 0) -> np.ndarray:
    """Index along ``axis`` of the smallest value (NaN = empty), ties → lexicographically smaller pair,
    then the earlier position (the order of a stable sort on (value, i, j)).

    A 1-D input is sorted; a stacked one (a few partial results over large tables, e.g. row blocks ×
    C × C) is folded one slice at a time, so the temporaries stay the size of one slice (at C = 1000 a
    sort over the stacked tables took seconds and several copies of them)."""
    big = np.iinfo(np.int64).max

    def keys(v: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return (
            np.where(np.isnan(v), np.inf, v),
            np.where(p[..., 0] < 0, big, p[..., 0]),
            np.where(p[..., 1] < 0, big, p[..., 1]),
        )

    if values.ndim == 1:
        v, first, second = keys(values, pairs)
        return np.lexsort((second, first, v))[0]
    values = np.moveaxis(values, axis, 0)
    pairs = np.moveaxis(pairs, axis, 0)
    best_v, best_f, best_s = keys(values[0], pairs[0])
    best = np.zeros(best_v.shape, np.int64)
    for k in range(1, values.shape[0]):
        v, first, second = keys(values[k], pairs[k])
        better = (v < best_v) | ((v == best_v) & ((first < best_f) | ((first == best_f) & (second < best_s))))
        best[better] = k
        best_v[better], best_f[better], best_s[better] = v[better], first[better], second[better]
    return best


def _take(array: np.ndarray, index: np.ndarray, axis: int = 0) -> np.ndarray:
    return np.take_along_axis(array, np.expand_dims(index, axis), axis=axis).squeeze(axis)


def _t_star(probs: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """argmax_t d_t(i, j) for each pair (ties → smaller t); −1 for an empty pair. A numba kernel with
    the module's arithmetic, O(1) memory per pair (a (K, T+1, C) gather was 68 GB for the C × C pairs
    at C = 1000)."""
    pairs = np.ascontiguousarray(np.asarray(pairs, dtype=np.int64).reshape(-1, 2))
    out = np.full(pairs.shape[0], -1, np.int64)
    if len(pairs):
        _kernels.pair_t_star(np.ascontiguousarray(probs, dtype=np.float64), pairs, out)
    return out


def _finish(result: PairwiseResult, probs: np.ndarray, t_star: np.ndarray | None = None) -> PairwiseResult:
    """Symmetrise E / Ē, fill t* (``t_star``, the (C, C) upper triangle, when the caller has it; else
    computed from the pairs), and derive e = min_{a<b} E[a, b] (ties → smaller pair)."""
    n_cls = result.E.shape[0]
    upper = np.triu(np.ones((n_cls, n_cls), bool), 1)
    for value, pair in ((result.E, result.E_pair), (result.E_mean, result.E_mean_pair)):
        value[~upper] = np.nan
        pair[~upper] = -1
        value.T[upper] = value[upper]
        pair.transpose(1, 0, 2)[upper] = pair[upper]
    # d_t is symmetric: the upper triangle suffices
    t_star = _t_star(probs, result.E_pair[upper]) if t_star is None else np.asarray(t_star)[upper]
    result.E_t_star = np.full((n_cls, n_cls), -1, np.int64)
    result.E_t_star[upper] = t_star
    result.E_t_star.T[upper] = t_star
    flat_v = result.E[upper]
    flat_p = result.E_pair[upper]
    if np.isfinite(flat_v).any():
        k = int(_pick(flat_v, flat_p))
        result.expansive = float(flat_v[k])
        result.expansive_pair = flat_p[k].astype(np.int64)
        result.expansive_t_star = int(_t_star(probs, flat_p[k][None])[0])
    else:
        result.expansive = math.nan
        result.expansive_pair = np.full(2, -1, np.int64)
        result.expansive_t_star = -1
    return result


def _row_blocks(start: int, stop: int, n_images: int, n_blocks: int) -> np.ndarray:
    """Split rows start..stop-1 into ``n_blocks`` blocks holding about equal numbers of pairs i < j."""
    rows = np.arange(start, stop + 1, dtype=np.int64)
    before = rows * (2 * n_images - rows - 1) // 2  # pairs i < j in the rows < i
    targets = before[0] + (before[-1] - before[0]) * np.arange(1, n_blocks) // n_blocks
    inner = rows[np.searchsorted(before, targets)]
    return np.concatenate([[start], inner, [stop]]).astype(np.int64)


ROW_TILE = 32
"""Rows of a tile in the fused kernel (:func:`kernel_blocking`)."""
TILE_COLUMNS = 128
"""Most columns per column block of the fused kernel."""
MEAN_BOUND_MAX_CLASSES = 32
"""Below this many classes the fused kernel prunes Ē by the mean trajectories (:func:`kernel_blocking`)."""


def kernel_blocking(n_classes: int, chunk: int, n_images: int) -> tuple[int, int, bool]:
    """(rows per tile, columns per block, mean bound) for :func:`resdyn._kernels.fused_pairs` at C classes.

    :data:`ROW_TILE` rows share each column block of at most min(``chunk``, :data:`TILE_COLUMNS`)
    columns: the tile's squared distances to the block (32 × 128 float64 per depth, in L1) are computed
    together, so each column value is loaded once per 32 rows. That divides the memory traffic by 32, which
    matters from C ≈ 30 on, where a row's partners (D·C·N values: 17 × 1000 × 10,000 float64 = 1.4 GB at
    C = 1000) no longer fit in cache (measured at C = 1000, N = 1,500: 4.4 s of CPU time against 14.5 s
    one row at a time; at C = 10, N = 5,000: 1.8 s against 2.2 s). Below :data:`MEAN_BOUND_MAX_CLASSES` the
    kernel prunes Ē by ‖mean_t p_t(i) − mean_t p_t(j)‖ ≤ mean_t d_t, since there the D square roots of a
    pair cost as much as its D·C distance terms; above, every different-class pair's mean is computed.
    Either way the arithmetic per pair, and so every bit of the result, is the same.
    """
    jblock = int(min(chunk, n_images, TILE_COLUMNS))
    return ROW_TILE, jblock, n_classes < MEAN_BOUND_MAX_CLASSES


def pairwise_shard(
    probs: np.ndarray,
    labels: np.ndarray,
    start: int,
    stop: int,
    *,
    n_classes: int,
    chunk: int,
    device: str,
    close: str | None = None,
) -> PairwiseResult:
    """Partial pairwise statistics of the rows ``start..stop-1`` (method §3.1, §6; ARCHITECTURE "Pairwise").

    Covers the pairs (i, j), i < j, with start ≤ i < stop: E[a, b] = min max_t d_t, Ē[a, b] = min mean_t d_t
    over {y_i, y_j} = {a, b}, m_t = min d_t over different-class pairs, e = min_{a<b} E[a, b]; and the
    nearest-neighbour tables from both sides of these pairs (rows i: partners j > i; rows j: partners i in
    the shard), so that :func:`merge_pairwise` over shards tiling 0..N gives every row's nearest j ≠ i.
    All values are exact (bitwise equal to :func:`pairwise_bruteforce`).

    Args:
        probs: (N, T+1, C) float probability trajectories, N ≥ 2.
        labels: (N,) int in 0..n_classes−1, at least two distinct values.
        start, stop: the shard's rows (see :func:`shard_rows`).
        n_classes: C of the label space (E is C×C even if a class is absent).
        chunk: columns j per block of the fused kernel (scratch memory O(threads·(T+1)·chunk)).
        device: "cpu" (numba kernel), a torch device such as "cuda" or "cuda:1" (chunked brute force),
            or "auto" (CUDA when torch sees one, else CPU). Both give the same bits.
        close: the reading's reduction over depths: under "max" or "min" (:data:`CLOSE_REDUCTIONS`)
            also list the shard's close pairs, below the radius :func:`close_radius` finds on all N rows
            (``close_value``, ``close_pair``, ``close_bound``; no list, bound NaN, if the shard recorded
            more than :data:`CLOSE_CAP` pairs within the slightly widened radius
            :func:`_record_threshold`); "mean" or None: no list.

    Raises:
        InputError: malformed arrays or labels out of range. ValueError: a single class.
    """
    probs, labels = _check_inputs(probs, labels, n_classes)
    n_images, depths, n_feat = probs.shape
    if not 0 <= start <= stop <= n_images:
        raise InputError(f"shard rows {start}..{stop} are outside 0..{n_images}")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    from resdyn.device import device_name

    device = device_name(device)
    radius = _close_radius_of(probs, labels, close)
    if device != "cpu":
        return _pairwise_torch(
            probs, labels, start, stop, n_classes=n_classes, chunk=chunk, device=device, close=(close, radius)
        )
    result = _empty_result(n_images, depths, n_classes)
    result.close_bound = radius
    if start == stop:
        return result
    cmajor = np.ascontiguousarray(probs.transpose(1, 2, 0))
    mean_traj = np.ascontiguousarray(probs.mean(axis=1).T)
    from numba import get_num_threads

    # blocks of rows with equal pair counts, a few per thread so that uneven blocks even out
    n_blocks = max(1, min(stop - start, 4 * get_num_threads()))
    bounds = _row_blocks(start, stop, n_images, n_blocks)
    rtile, jblock, mean_bound = kernel_blocking(n_feat, chunk, n_images)
    close_mode = _REDUCTIONS["min" if close == "min" else "max"]
    record = -1.0 if math.isnan(radius) else _record_threshold(radius)
    kernel = _kernels.fused_pairs(
        cmajor,
        mean_traj,
        labels,
        int(n_classes),
        bounds,
        jblock,
        rtile,
        mean_bound,
        close_mode,
        record,
        CLOSE_CAP,
    )
    nn_s, nn_i, dm_s, dm_p, e_max, e_max_p, e_max_t, e_mean, e_mean_p, cl_i, cl_j, cl_s, cl_n = kernel
    # each block's counter goes on past its room, so an overflow shows in the sum
    kept = np.concatenate([np.arange(min(n, CLOSE_CAP)) + b * CLOSE_CAP for b, n in enumerate(cl_n)])
    kept = kept.astype(np.int64)
    _attach_close(result, radius, int(cl_n.sum()), *(a.ravel()[kept] for a in (cl_s, cl_i, cl_j)))
    # merge the blocks: every candidate is a genuine pair with its exact value, only ties remain
    nn_d = np.sqrt(nn_s)
    k = _pick(np.where(nn_i < 0, np.inf, nn_d), np.stack([nn_i, nn_i], axis=-1), axis=0)
    result.nn_distance = _take(nn_d, k)
    result.nn_index = _take(nn_i, k)
    result.nn_distance[result.nn_index < 0] = np.inf
    dm_d = np.sqrt(dm_s)
    k = _pick(dm_d, dm_p, axis=0)
    result.depth_min = np.where(np.isfinite(_take(dm_d, k)), _take(dm_d, k), np.nan)
    result.depth_min_pair = np.take_along_axis(dm_p, k[None, :, None], axis=0)[0]
    for value, pair, out_v, out_p in (
        (e_max, e_max_p, "E", "E_pair"),
        (e_mean, e_mean_p, "E_mean", "E_mean_pair"),
    ):
        k = _pick(value, pair, axis=0)
        v = _take(value, k)
        setattr(result, out_v, np.where(np.isfinite(v), v, np.nan))
        setattr(result, out_p, np.take_along_axis(pair, k[None, :, :, None], axis=0)[0].copy())
        if out_v == "E":
            t_star = _take(e_max_t, k)
    return _finish(result, probs, t_star)


def _ieee_sqrt(values: torch.Tensor) -> torch.Tensor:
    """Correctly rounded float64 sqrt. CUDA's double sqrt is IEEE (0 ulp); torch's CPU kernel is not
    always (1 ulp differences were observed), so CPU tensors go through numpy's sqrt."""
    import torch

    if values.device.type == "cpu":
        return torch.from_numpy(np.sqrt(values.numpy()))
    return torch.sqrt(values)


def _pairwise_torch(
    probs: np.ndarray,
    labels: np.ndarray,
    start: int,
    stop: int,
    *,
    n_classes: int,
    chunk: int,
    device: Any,
    fused: bool | None = None,
    close: tuple[str | None, float] = (None, math.nan),
) -> PairwiseResult:
    """Chunked brute force in torch (for a GPU): the same sequential float64 arithmetic, so the same bits.

    Rows are taken a chunk at a time against all N partners: ``chunk`` rows on the CPU; on a CUDA device
    as many as half its free memory holds (:func:`resdyn.device.fit_count`, about 12 live (rows, N)
    float64 tensors). A chunk's squared distances at one depth come from the Triton kernel
    (:func:`resdyn._gpu_kernels.sq_distances`; ``fused``, by default on a CUDA device with Triton), else
    from one torch operation per class (``sq += d·d`` with d and d·d each rounded, as the kernel does). Each
    statistic is a masked minimum whose ties are broken by the first occurrence in row-major (i, j) order
    (``argmax`` of the equality mask, documented to return the first maximal index); E and Ē reduce all
    class pairs of a chunk at once with ``scatter_reduce`` (:func:`_fold_class_pairs`), so the cost does not
    grow with C² (a loop over class pairs was ~10⁶ reductions at C = 1000). ``close`` = (the reduction,
    its radius) lists the close pairs as :func:`pairwise_shard` does, from the same squared values.
    """
    import torch

    from resdyn import _gpu_kernels
    from resdyn.device import fit_count

    dev = torch.device(device)
    n_images, depths, n_feat = probs.shape
    result = _empty_result(n_images, depths, n_classes)
    close_name, radius = close
    listing = not math.isnan(radius)
    record = _record_threshold(radius) if listing else -1.0
    recorded: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    X = torch.from_numpy(probs).to(dev)
    y = torch.from_numpy(labels).to(dev)
    cols = torch.arange(n_images, device=dev)
    big = torch.iinfo(torch.int64).max
    best = {
        name: (np.full((n_classes, n_classes), np.inf), np.full((n_classes, n_classes, 2), -1, np.int64))
        for name in ("max", "mean")
    }
    dm_v = np.full(depths, np.inf)
    dm_p = np.full((depths, 2), -1, np.int64)
    if fused is None:
        fused = dev.type == "cuda" and _gpu_kernels.available()
    XT = X.permute(1, 2, 0).contiguous() if fused else None  # (D, C, N) for the kernel

    def first_min(values: torch.Tensor) -> tuple[float, int]:
        low = values.min()
        flat = torch.argmax((values == low).reshape(-1).to(torch.uint8))
        return float(low), int(flat)

    step = fit_count(dev, 12 * 8 * n_images, default=max(1, min(chunk, n_images)), limit=max(1, stop - start))
    for r0 in tqdm(range(start, stop, step), desc="pairwise (torch)", disable=None, leave=False):
        r1 = min(r0 + step, stop)
        rows = torch.arange(r0, r1, device=dev)
        upper = cols[None, :] > rows[:, None]
        diff = y[r0:r1, None] != y[None, :]
        dmax = torch.zeros((r1 - r0, n_images), dtype=torch.float64, device=dev)
        dsum = torch.zeros_like(dmax)
        # the squared max or min over depths, compared with the kernel's recording threshold as it does
        reduced_sq = torch.full_like(dmax, torch.inf if close_name == "min" else 0.0) if listing else None
        sq = torch.empty_like(dmax)
        tmp = None if fused else torch.empty_like(dmax)
        for t in range(depths):
            if fused:
                _gpu_kernels.sq_distances(XT[t], r0, r1, out=sq)
            else:
                sq.zero_()
                for c in range(n_feat):
                    torch.sub(X[r0:r1, t, c, None], X[None, :, t, c], out=tmp)
                    tmp.mul_(tmp)
                    sq.add_(tmp)
            dist = _ieee_sqrt(sq)
            dmax = torch.maximum(dmax, dist)
            if listing:
                reduced_sq = (torch.minimum if close_name == "min" else torch.maximum)(reduced_sq, sq)
            dsum = dsum + dist
            own = dist.clone()
            own[torch.arange(r1 - r0, device=dev), rows] = torch.inf
            low = own.min(dim=1, keepdim=True).values
            first = torch.where(own == low, cols[None, :], big).min(dim=1).values
            result.nn_distance[t, r0:r1] = low[:, 0].cpu().numpy()
            result.nn_index[t, r0:r1] = first.cpu().numpy()
            masked = torch.where(upper & diff, dist, torch.inf)
            v, flat = first_min(masked)
            if v < dm_v[t]:
                dm_v[t] = v
                dm_p[t] = (r0 + flat // n_images, flat % n_images)
        mean = dsum / depths
        for name, values in (("max", dmax), ("mean", mean)):
            _fold_class_pairs(values, y, r0, upper, n_classes, *best[name])
        if listing:
            hit = upper & diff & (reduced_sq <= record)
            rows_hit, cols_hit = hit.nonzero(as_tuple=True)
            recorded.append(
                (reduced_sq[hit].cpu().numpy(), (rows_hit + r0).cpu().numpy(), cols_hit.cpu().numpy())
            )
    squared, first, second = (
        np.concatenate([part[k] for part in recorded]) if recorded else np.zeros(0, dtype)
        for k, dtype in enumerate((np.float64, np.int64, np.int64))
    )
    _attach_close(result, radius, squared.size, squared, first, second)
    result.depth_min = np.where(np.isfinite(dm_v), dm_v, np.nan)
    result.depth_min_pair = dm_p
    for name, out_v, out_p in (("max", "E", "E_pair"), ("mean", "E_mean", "E_mean_pair")):
        value, pair = best[name]
        setattr(result, out_v, np.where(np.isfinite(value), value, np.nan))
        setattr(result, out_p, pair)
    return _finish(result, probs)


def _fold_class_pairs(
    values: torch.Tensor,
    y: torch.Tensor,
    r0: int,
    upper: torch.Tensor,
    n_classes: int,
    best: np.ndarray,
    best_pair: np.ndarray,
) -> None:
    """Fold the chunk rows r0.. of a (rows, N) matrix of pair values into ``best`` / ``best_pair`` (C, C,
    upper triangle lo < hi): per class pair the minimum over pairs i < j, ties → the lexicographically
    smaller (i, j). Per row and partner class the minimum and its first j (``scatter_reduce`` over the
    columns), then per row class the first row attaining it (over the rows); exact, as min is."""
    import torch

    rows, n = values.shape
    dev = values.device
    big = torch.iinfo(torch.int64).max
    masked = torch.where(upper, values, torch.inf)
    by_col = y[None, :].expand(rows, n)
    low = torch.full((rows, n_classes), torch.inf, dtype=values.dtype, device=dev)
    low = low.scatter_reduce(1, by_col, masked, "amin")
    hit = masked == low.gather(1, by_col)
    first_j = torch.full((rows, n_classes), big, device=dev).scatter_reduce(
        1, by_col, torch.where(hit, torch.arange(n, device=dev)[None, :], big), "amin"
    )
    row_y = y[r0 : r0 + rows]
    low[torch.arange(rows, device=dev), row_y] = torch.inf  # same-class pairs are no class pair
    by_row = row_y[:, None].expand(rows, n_classes)
    low_ab = torch.full((n_classes, n_classes), torch.inf, dtype=values.dtype, device=dev)
    low_ab = low_ab.scatter_reduce(0, by_row, low, "amin")
    hit = (low == low_ab.gather(0, by_row)) & torch.isfinite(low)
    first_i = torch.full((n_classes, n_classes), big, device=dev).scatter_reduce(
        0, by_row, torch.where(hit, torch.arange(rows, device=dev)[:, None], big), "amin"
    )
    low_ab, first_i = low_ab.cpu().numpy(), first_i.cpu().numpy()
    found = np.isfinite(low_ab)
    pair = np.full((n_classes, n_classes, 2), -1, np.int64)
    a_idx, b_idx = np.nonzero(found)
    i_idx = first_i[a_idx, b_idx]
    pair[a_idx, b_idx, 0] = r0 + i_idx
    pair[a_idx, b_idx, 1] = (
        first_j[torch.from_numpy(i_idx).to(dev), torch.from_numpy(b_idx).to(dev)].cpu().numpy()
    )
    # the class pair {lo, hi} from rows of class lo (upper triangle) or of class hi (lower, transposed)
    upper_cls = np.triu(np.ones((n_classes, n_classes), bool), 1)
    v, p = np.where(upper_cls, low_ab, np.inf), np.where(upper_cls[..., None], pair, -1)
    v_t, p_t = low_ab.T, pair.transpose(1, 0, 2)
    take = upper_cls & _better(v_t, p_t, v, p)
    v, p = np.where(take, v_t, v), np.where(take[..., None], p_t, p)
    take = upper_cls & _better(v, p, best, best_pair)
    best[take], best_pair[take] = v[take], p[take]


def _better(v: np.ndarray, p: np.ndarray, v0: np.ndarray, p0: np.ndarray) -> np.ndarray:
    """Where the finite candidate (v, p) beats the incumbent (v0, p0): smaller value, or equal value and
    lexicographically smaller pair (−1 = empty incumbent)."""
    lex = (p0[..., 0] < 0) | (p[..., 0] < p0[..., 0]) | ((p[..., 0] == p0[..., 0]) & (p[..., 1] < p0[..., 1]))
    return np.isfinite(v) & ((v < v0) | ((v == v0) & lex))


def merge_pairwise(results: Sequence[PairwiseResult]) -> PairwiseResult:
    """Merge partial results: element-wise minimum, ties → lexicographically smaller pair (smaller j).

    Associative and commutative, so shards can be merged in any grouping or order; over shards tiling
    0..N the result equals :func:`pairwise_bruteforce` (method §6). ``n_shards`` adds up.
    """
    results = list(results)
    if not results:
        raise ValueError("merge_pairwise needs at least one result")
    shapes = {(r.E.shape, r.nn_index.shape) for r in results}
    if len(shapes) != 1:
        raise InputError(f"partial results disagree in shape (E, nearest): {sorted(shapes)}")
    first = results[0]
    out = _empty_result(first.nn_index.shape[1], first.nn_index.shape[0], first.E.shape[0])
    out.n_shards = int(sum(r.n_shards for r in results))

    stack = lambda name: np.stack([np.asarray(getattr(r, name)) for r in results])  # noqa: E731
    for value_name, pair_name, extra in (
        ("E", "E_pair", "E_t_star"),
        ("E_mean", "E_mean_pair", None),
        ("depth_min", "depth_min_pair", None),
    ):
        values, pairs = stack(value_name), stack(pair_name)
        k = _pick(values, pairs, axis=0)
        setattr(out, value_name, _take(values, k))
        setattr(out, pair_name, np.take_along_axis(pairs, k[None, ..., None], axis=0)[0])
        if extra:
            setattr(out, extra, _take(stack(extra), k))
    dist, index = stack("nn_distance"), stack("nn_index")
    k = _pick(np.where(index < 0, np.inf, dist), np.stack([index, index], axis=-1), axis=0)
    out.nn_distance = _take(dist, k)
    out.nn_index = _take(index, k)
    values = np.array([r.expansive for r in results], dtype=np.float64)
    pairs = np.stack([np.asarray(r.expansive_pair, dtype=np.int64) for r in results])
    k = int(_pick(values, pairs))
    out.expansive = float(values[k])
    out.expansive_pair = pairs[k].copy()
    out.expansive_t_star = int(results[k].expansive_t_star)
    # close pairs: each shard lists those of its own rows below the same radius (else no list)
    bounds = {float(r.close_bound) for r in results}
    if len(bounds) == 1 and math.isfinite(next(iter(bounds))):
        pair = np.concatenate([np.asarray(r.close_pair, np.int64).reshape(-1, 2) for r in results])
        value = np.concatenate([np.asarray(r.close_value, np.float64) for r in results])
        out.close_value, out.close_pair = close_list(value, pair[:, 0], pair[:, 1], math.inf)
        out.close_bound = next(iter(bounds))
    return out


OVER_DEPTHS = tuple(sorted(_REDUCTIONS))  # max, mean, min


def expansive_constant(
    result: PairwiseResult, over_depths: str = "max"
) -> tuple[float, np.ndarray, int | None]:
    """The g-expansive constant under a reading's ``over_depths`` (method §3.1, §3.4), read off a merged
    :class:`PairwiseResult`: e = min over different-class pairs i < j of S_t d_t(i, j), with

    - ``max``: S = max_t (Definition 1): ``result.expansive``, its pair and t* = argmax_t;
    - ``mean``: S = mean_t: the smallest Ē[a, b] over class pairs a < b (ties → smaller pair); no depth;
    - ``min``: S = min_t (the authors' code): min_t m_t, since min over pairs of min over t is min over t of
      the per-depth minima m_t; its pair and the depth index t attaining it (ties → smaller pair, then
      smaller t).

    Returns (value, pair (2,) int64, depth index or None); (NaN, [−1, −1], None) without a
    different-class pair. Depth indices count from the view's first depth.
    """
    if over_depths not in OVER_DEPTHS:
        raise InputError(f"over_depths = {over_depths!r}; expected one of {OVER_DEPTHS}")
    empty = (math.nan, np.full(2, -1, np.int64), None)
    if over_depths == "max":
        if not np.isfinite(result.expansive):
            return empty
        return (
            float(result.expansive),
            np.asarray(result.expansive_pair, np.int64),
            int(result.expansive_t_star),
        )
    if over_depths == "mean":
        upper = np.triu(np.ones(result.E_mean.shape, bool), 1)
        values, pairs = result.E_mean[upper], result.E_mean_pair[upper]
    else:
        values, pairs = result.depth_min, result.depth_min_pair
    if not np.isfinite(values).any():
        return empty
    k = int(_pick(values, pairs))  # a stable sort: among equal (value, pair) the first, i.e. the smaller t
    return float(values[k]), np.asarray(pairs[k], np.int64), (k if over_depths == "min" else None)


def pairwise_bruteforce(
    probs: np.ndarray, labels: np.ndarray, n_classes: int, close: str | None = None
) -> PairwiseResult:
    """Reference for the pairwise stage: every d_t(i, j) in plain float64 (memory N²·(T+1); small N only).

    Same arithmetic as the module docstring; every minimum is the first occurrence in row-major order over
    i < j (= the lexicographically smallest pair), every argmax over t the first (= the smaller t). With
    ``close`` "max" or "min", the close pairs: every different-class pair whose max_t or min_t d_t is
    below :func:`close_radius`, sorted (the pass's list without its cap).
    """
    probs, labels = _check_inputs(probs, labels, n_classes)
    n_images, depths, _ = probs.shape
    dist = np.sqrt(squared_distance(probs[:, None, :, :], probs[None, :, :, :]))  # (N, N, D)
    worst = dist.max(axis=2)
    total = np.zeros((n_images, n_images))
    for t in range(depths):
        total += dist[:, :, t]
    mean = total / depths
    iu, ju = np.triu_indices(n_images, 1)
    yi, yj = labels[iu], labels[ju]
    different = yi != yj
    result = _empty_result(n_images, depths, n_classes)
    for t in range(depths):
        d = dist[:, :, t].copy()
        np.fill_diagonal(d, np.inf)
        result.nn_index[t] = np.argmin(d, axis=1)
        result.nn_distance[t] = d[np.arange(n_images), result.nn_index[t]]
        vals = dist[iu, ju, t][different]
        if vals.size:  # a single class has no different-class pair: m_t stays NaN
            k = int(np.argmin(vals))
            result.depth_min[t] = vals[k]
            result.depth_min_pair[t] = (iu[different][k], ju[different][k])
    for a in range(n_classes):
        for b in range(n_classes):
            mask = ((yi == a) & (yj == b)) | ((yi == b) & (yj == a))
            if a == b or not mask.any():
                continue
            for matrix, value, pair in (
                (worst, result.E, result.E_pair),
                (mean, result.E_mean, result.E_mean_pair),
            ):
                vals = matrix[iu[mask], ju[mask]]
                k = int(np.argmin(vals))
                value[a, b] = vals[k]
                pair[a, b] = (iu[mask][k], ju[mask][k])
            result.E_t_star[a, b] = int(np.argmax(dist[result.E_pair[a, b, 0], result.E_pair[a, b, 1]]))
    vals = worst[iu, ju][different]
    if vals.size:
        k = int(np.argmin(vals))
        result.expansive = float(vals[k])
        result.expansive_pair = np.array([iu[different][k], ju[different][k]], np.int64)
        result.expansive_t_star = int(np.argmax(dist[result.expansive_pair[0], result.expansive_pair[1]]))
    else:
        result.expansive, result.expansive_pair, result.expansive_t_star = (
            math.nan,
            np.full(2, -1, np.int64),
            -1,
        )
    radius = _close_radius_of(probs, labels, close)
    if not math.isnan(radius):
        reduced = (worst if close == "max" else dist.min(axis=2))[iu, ju]
        result.close_value, result.close_pair = close_list(
            reduced[different], iu[different], ju[different], radius
        )
        result.close_bound = radius
    return result
