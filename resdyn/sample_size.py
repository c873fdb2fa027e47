"""How much the constants depend on the sample (method §3.6): e and the g-shadowing estimates on random
class-stratified subsets of the test set, and the constants at a common reference size.

e and every Sh estimate are extremes over the N test images (a minimum over pairs, a best orbit, a
minimum over the curve's levels), so they move with N: more images give closer different-class pairs. The
stage computes them again, exactly and with the same kernels, on subsets:

- **Grid.** Subset sizes n_1 < … < n_K = N: the configured ``sizes`` (those below N), or else ``count``
  sizes spaced geometrically from ``min_size`` to N, n_k = round(min_size · (N/min_size)^((k−1)/(count−1)))
  (duplicates after rounding dropped); the ``reference`` size is added when it is below N. N itself is
  always the last size.
- **Subsets.** For each size n < N, B subsets (``subsets``), each stratified by the true test labels: class
  c gets q_c = ⌊n·N_c/N⌋ images plus one for the n − Σ⌊·⌋ classes with the largest remainders
  n·N_c/N − ⌊n·N_c/N⌋ (ties: the smaller class), drawn without replacement with
  ``numpy.random.default_rng([seed, n, b])`` for subset b = 0..B−1. A subset's seed depends on
  (seed, n, b) only: adding a size does not move the other subsets, and every model and reading of a
  dataset sees the same subsets (paired comparisons). Rows are kept in test-set order, so ties resolve as
  in the full set. Size N is the whole test set, one subset.
- **Estimates on a subset** (:func:`subset_constants`): e and its pair under the reading's (method §3.4)
  reduction over depths. For max and min (every shipped reading) they are the first pair of
  :class:`CandidatePairs` (the whole set's closest different-class pairs: the close pairs the pairwise
  pass listed in pairs.h5, rechecked, or else built once per table with a kd-tree; certified with the
  kernels' arithmetic) that lies in the subset: exact, since every pair left off the list is ≥ its bound
  > every listed value. A subset holding no listed pair, and every subset under the mean, runs
  :func:`resdyn.distances.pairwise_shard` over its rows and :func:`resdyn.distances.expansive_constant`
  (how many do is measured in docs/performance.md). The pseudo-orbits of the subset's own images by
  :func:`resdyn.distances.scan_orbits` (the nearest images found by an exact windowed search of the
  subset, each image an orbit occupies searched once: the same orbits and hops as the nearest-neighbour
  tables of a pairwise pass, bit for bit, at a fraction of its cost; a revisiting orbit first takes the
  whole set's nearest neighbour from pairs.h5 when it lies in the subset), their ε by
  :func:`resdyn.shadowing.shadowing_errors`, then Sh best tracing (``sh_paper``), the curve estimate
  (``sh_curve``, with the analysis quantiles) and the independent pairing (``sh_independent``).
  The subset of size N therefore reproduces ``constants.json`` bit for bit. The stage does not recompute
  it: the pairwise, shadowing and constants stages did, with the same kernels, so its row is read from
  constants.json (:func:`full_set_from_constants`), and :func:`recheck_full_set` recomputes, in
  O(N·D·C), e at the stated pair and Sh of the stated best-traced orbit to refuse a constants.json of
  other inputs. (Recomputing size N was a quarter of the stage's cost at N = 10,000.)
- **Summary** (:func:`summarize`): per size and estimate the median and the 5–95 % band (numpy's
  default linear quantiles) over the subsets where the estimate is defined; the log-log slope of the
  median against n, fitted by least squares over the sizes with a positive median:
  log median(n) ≈ a + s·log n, so median ∝ n^s; and the reference block: the same median and band at
  n = ``reference``, or null with a reason when N < reference (no extrapolation).

For points spread with a density in d dimensions the smallest distance among ~n² pairs shrinks as
n^(−2/d) (a nearest neighbour's as n^(−1/d)); the fitted slope is the empirical counterpart.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from resdyn import distances, shadowing
from resdyn.artifacts import SampleSizeTable
from resdyn.io import InputError
from resdyn.readings import Reading

BAND = (0.05, 0.95)
"""Quantiles of the band around the median (method §3.6: 5–95 %)."""

ESTIMATES = SampleSizeTable.ESTIMATES
"""The estimates computed on every subset (columns of sample_size.csv)."""

COLUMNS = list(SampleSizeTable.COLUMNS)
"""Columns of sample_size.csv (owned by :class:`resdyn.artifacts.SampleSizeTable`): size, subset number,
e and its pair (test indices), Sh best tracing and its orbit's start image (test index), Sh curve, Sh
independent; undefined values are empty."""


def size_grid(n_images: int, settings: Mapping[str, Any]) -> list[int]:
    """The subset sizes for a test set of ``n_images`` images, ascending, ending with N (module docstring).

    ``settings`` are the canonical ``sample_size`` settings (:func:`resdyn.config.sample_size_settings`):
    their ``sizes``, when given, replace the geometric grid of ``count`` sizes from ``min_size`` to N;
    sizes ≥ N are dropped (N itself is always the last); ``reference`` is added when it is below N.
    """
    if n_images < 2:
        raise InputError(f"sample size: the test set has N = {n_images} image(s); subsets need N >= 2")
    reference = settings["reference"]
    if settings.get("sizes"):
        grid = {int(s) for s in settings["sizes"] if 2 <= int(s) < n_images}
    elif settings["count"] <= 1 or settings["min_size"] >= n_images:
        grid = set()
    else:
        spaced = np.rint(np.geomspace(settings["min_size"], n_images, settings["count"])).astype(np.int64)
        grid = {int(s) for s in spaced if s < n_images}
    if 2 <= reference < n_images:
        grid.add(int(reference))
    return sorted(grid) + [int(n_images)]


def class_quotas(strata: np.ndarray, n: int) -> np.ndarray:
    """Images per class in a stratified subset of size ``n``: the largest-remainder (Hamilton) rounding of
    n·N_c/N, ties to the smaller class. Sums to n; equals the class counts when n = N."""
    strata = np.asarray(strata)
    counts = np.bincount(strata) if strata.size else np.zeros(0, np.int64)
    total = int(counts.sum())
    if not 0 <= n <= total:
        raise InputError(f"sample size: a subset of n = {n} images from N = {total}")
    exact = counts * n  # n·N_c, compared over N in integers: no rounding in the quota itself
    quotas = exact // total
    remainders = exact - quotas * total
    missing = n - int(quotas.sum())
    order = np.lexsort((np.arange(counts.size), -remainders))  # largest remainder, then smaller class
    quotas[order[:missing]] += 1
    return quotas.astype(np.int64)


def stratified_subset(strata: np.ndarray, n: int, seed: int, subset: int) -> np.ndarray:
    """Rows of subset ``subset`` of size ``n``: per class c, :func:`class_quotas` rows drawn without
    replacement by ``numpy.random.default_rng([seed, n, subset])`` (classes in order), sorted ascending.
    The whole test set (0..N−1) when n = N."""
    strata = np.asarray(strata, dtype=np.int64)
    quotas = class_quotas(strata, n)
    if n == strata.size:
        return np.arange(n, dtype=np.int64)
    rng = np.random.default_rng([int(seed), int(n), int(subset)])
    chosen = [
        rng.choice(np.flatnonzero(strata == c), size=int(q), replace=False)
        for c, q in enumerate(quotas)
        if q > 0
    ]
    return np.sort(np.concatenate(chosen)).astype(np.int64)


LIST_MARGIN = 1e-9
"""Relative margin between a kd-tree's distances and the kernels' (:mod:`resdyn.distances` arithmetic): a
pair the tree leaves out at radius r has d_t ≥ r·(1 − LIST_MARGIN) in the kernels' arithmetic. Both sum
the C squared differences of float64 coordinates, each sum within (C + 3)·2⁻⁵³ relative of the exact
one (non-negative terms), so they differ by less than 3e-13 relative up to C = 1000."""

PAIRS_AT_LEAST = 2048
""":class:`CandidatePairs` widens its radius until it lists this many pairs (or every pair): a stratified
subset of n of the N images holds one of them with probability about 1 − exp(−2048·(n/N)²), e.g.
1 − e⁻³² at n = N/8; the subsets that hold none run the pairwise kernel."""

MAX_CANDIDATES = 4_000_000
"""The most candidate pairs :class:`CandidatePairs` examines (~100 MB of indices and values at their
peak): beyond, it keeps the list of the last radius within the limit, or shrinks the radius."""

MAX_ROUNDS = 64
"""Radii :class:`CandidatePairs` tries before it gives up (no list: every subset runs the kernel)."""


@dataclass
class CandidatePairs:
    """The different-class pairs of the whole test set with the smallest e-values S_t d_t(i, j) (S the
    reading's ``max`` or ``min`` over depths), in the kernels' order: ascending value, ties → the
    lexicographically smaller (i, j), i < j (rows).

    Contract: every different-class pair that is not listed has S_t d_t ≥ ``bound`` > every listed value
    (``bound`` = inf: every different-class pair is listed). So for any subset, the first listed pair with
    both images in it is its e and pair exactly as the pairwise kernel finds them (rows keep their order in
    a subset, so the tie rule carries over); a subset holding no listed pair needs the kernel.
    """

    n_images: int
    value: np.ndarray  # (K,) float64
    first: np.ndarray  # (K,) int64, first < second
    second: np.ndarray  # (K,) int64
    bound: float

    @classmethod
    def build(cls, probs: np.ndarray, labels: np.ndarray, over_depths: str) -> CandidatePairs | None:
        """The list for the (N, D, C) view ``probs`` and the labels its e compares; None for ``mean``
        (whose per-depth bound, D·r, would list far too many pairs) or when no radius within
        :data:`MAX_ROUNDS` rounds keeps the candidates within :data:`MAX_CANDIDATES`.

        Candidates: the pairs within a radius r at a depth, found by a kd-tree (:class:`scipy.spatial.
        cKDTree`, ``query_pairs``) at every depth for ``min`` (min_t d_t < r needs d_t < r at some t), at
        one depth for ``max`` (max_t d_t < r needs d_t < r at every t): the one at which the fewest of the
        sampled different-class pairs below come within r. Their S_t d_t is computed with the kernels'
        arithmetic (:func:`resdyn.distances.reduced_distances`), and those below bound =
        r·(1 − :data:`LIST_MARGIN`) are listed: a pair the tree left out has S_t d_t ≥ bound. r starts
        where a sample predicts twice :data:`PAIRS_AT_LEAST` listed pairs
        (:func:`resdyn.distances.close_radius`, as the pairwise pass's list) and grows by a quarter until
        :data:`PAIRS_AT_LEAST` pairs are listed or r exceeds twice the data's extent (then every pair is a
        candidate and ``bound`` = inf); past :data:`MAX_CANDIDATES` candidates the last list that fitted is
        kept (shorter, still exact) or, before any, r shrinks by a quarter. Neither the start nor the depth
        changes the contract, only the rounds it takes.
        """
        from scipy.spatial import cKDTree

        if over_depths not in distances.CLOSE_REDUCTIONS:
            return None
        probs = np.ascontiguousarray(probs, dtype=np.float64)
        labels = np.asarray(labels, dtype=np.int64)
        n_images, depths, _ = probs.shape
        radius, at_depth = distances.close_radius(probs, labels, over_depths, 2 * PAIRS_AT_LEAST)
        if over_depths == "max":  # the depth that lets the fewest sampled pairs through at that radius
            used = [int(np.argmin(np.count_nonzero(at_depth < radius, axis=0)))]
        else:
            used = list(range(depths))
        trees = {t: cKDTree(np.ascontiguousarray(probs[:, t])) for t in used}
        extent = max(float(np.linalg.norm(probs[:, t].max(axis=0) - probs[:, t].min(axis=0))) for t in used)
        if not radius > 0:  # duplicates everywhere: start from the extent's scale
            radius = extent / n_images if extent > 0 else 1.0
        kept = None  # (values, pairs, bound) of the last radius whose candidates fitted
        for _ in range(MAX_ROUNDS):
            complete = radius > 2.0 * extent  # every pair is within r: the list holds them all
            found = [trees[t].query_pairs(radius, output_type="ndarray") for t in used]
            pairs = np.concatenate(found) if len(found) > 1 else found[0]
            if len(used) > 1:
                pairs = np.unique(pairs[:, 0].astype(np.int64) * n_images + pairs[:, 1])
                pairs = np.stack([pairs // n_images, pairs % n_images], axis=1)
            pairs = pairs.astype(np.int64).reshape(-1, 2)
            pairs.sort(axis=1)  # i < j
            pairs = pairs[labels[pairs[:, 0]] != labels[pairs[:, 1]]]
            if len(pairs) > MAX_CANDIDATES:
                if kept is not None:  # a shorter list is still exact: keep the last one that fitted
                    break
                radius /= 1.25
                continue
            value = distances.reduced_distances(probs, pairs[:, 0], pairs[:, 1], over_depths)
            bound = math.inf if complete else radius * (1.0 - LIST_MARGIN)
            kept = (value, pairs, bound)
            if complete or np.count_nonzero(value < bound) >= PAIRS_AT_LEAST:
                break
            radius *= 1.25  # small steps: the candidates grow like r^(intrinsic dimension)
        if kept is None:
            return None
        value, pairs, bound = kept
        value, pairs = distances.close_list(value, pairs[:, 0], pairs[:, 1], bound)
        return cls(n_images, value, pairs[:, 0].copy(), pairs[:, 1].copy(), bound)

    @classmethod
    def from_pass(
        cls,
        result: distances.PairwiseResult,
        probs: np.ndarray,
        labels: np.ndarray,
        over_depths: str,
        where: str,
    ) -> CandidatePairs | None:
        """The list the pairwise pass already made (its close pairs, :func:`resdyn.distances.pairwise_shard`
        with ``close``, gathered in pairs.h5 ``where``) for the view ``probs`` and ``labels``; None when the
        pass made none (an older pairs.h5, the mean reading, or a radius so far off that a shard gave up)
        or it holds fewer than :data:`PAIRS_AT_LEAST` / 4 pairs (too few to spare the kernel on the larger
        subsets): then :meth:`build` makes one.

        Its contract is the class's: every different-class pair left off has S_t d_t ≥ the pass's radius.
        The listed pairs are rechecked: different labels and S_t d_t recomputed
        (:func:`resdyn.distances.reduced_distances`) equal to the listed values bit for bit.

        Raises:
            InputError: the list does not fit ``probs`` and ``labels`` (``where`` comes from other inputs).
        """
        if not math.isfinite(result.close_bound) or len(result.close_value) < PAIRS_AT_LEAST // 4:
            return None
        n_images = probs.shape[0]
        first, second = result.close_pair[:, 0], result.close_pair[:, 1]
        if result.nn_index.shape[1] != n_images:
            raise InputError(
                f"{where}: pairs of N = {result.nn_index.shape[1]} images, but the trajectories hold "
                f"{n_images}: the two files come from different inputs"
            )
        labels = np.asarray(labels)
        value = distances.reduced_distances(probs, first, second, over_depths)
        wrong = np.flatnonzero((value != result.close_value) | (labels[first] == labels[second]))
        if wrong.size:
            k = int(wrong[0])
            listed, recomputed = float(result.close_value[k]), float(value[k])
            raise InputError(
                f"{where}: close pair ({first[k]}, {second[k]}) is listed at {listed!r}, but the "
                f"trajectories give {recomputed!r} under over_depths {over_depths!r} with labels "
                f"{labels[first[k]]}, {labels[second[k]]}: the two files come from different inputs"
            )
        return cls(
            n_images, result.close_value.copy(), first.copy(), second.copy(), float(result.close_bound)
        )

    def expansive(self, members: np.ndarray) -> tuple[float, np.ndarray] | None:
        """e of the subset ``members`` (sorted rows) and its pair as subset rows: the first listed pair
        with both images in it; (NaN, [−1, −1]) when the list is complete and holds none (no
        different-class pair); None when it is not complete and holds none (e ≥ ``bound``, unknown)."""
        inside = np.zeros(self.n_images, dtype=bool)
        inside[members] = True
        hit = inside[self.first] & inside[self.second]
        k = int(np.argmax(hit)) if hit.size else 0
        if hit.size and hit[k]:
            pair = np.searchsorted(members, [self.first[k], self.second[k]]).astype(np.int64)
            return float(self.value[k]), pair
        if self.bound == math.inf:
            return math.nan, np.full(2, -1, np.int64)
        return None


def subset_constants(
    expansive_probs: np.ndarray,
    shadowing_probs: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    reading: Reading,
    *,
    quantiles: Sequence[float],
    chunk: int,
    expansive: tuple[float, np.ndarray] | None = None,
    known_nearest: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Every estimate of method §3.6 on one sample: the reading's views of its images, exactly as the
    pairwise, shadowing and constants stages compute them on the whole test set.

    Args:
        expansive_probs, shadowing_probs: (n, D, C) float64, the reading's two views of the sample's rows.
        labels: (n,) the labels the reading's e compares (true or predicted).
        n_classes: C of the label space.
        reading: the estimator choices (method §3.4).
        quantiles: the curve window (``analysis.curve_quantiles``).
        chunk: block size of the kernels.
        expansive: the sample's e and its pair (2 sample rows; NaN and [−1, −1] without a
            different-class pair) when already known (:meth:`CandidatePairs.expansive`); else the
            pairwise kernel runs over the sample.
        known_nearest: revisiting orbits: the sample images' nearest other sample image at each depth of
            the shadowing view where already known, (D, n) index (sample rows, −1 where not) and distance
            (:func:`resdyn.distances.scan_orbits`' ``known``); only the others are searched.

    Returns:
        {g_expansive, pair (2 sample rows or None), sh_paper, orbit_start (a sample row), sh_curve,
        sh_independent}; an undefined estimate is None.
    """
    n = expansive_probs.shape[0]
    result = None
    if expansive is None:  # the sample-size stage runs on the CPU
        result = distances.pairwise_shard(
            expansive_probs, labels, 0, n, n_classes=n_classes, chunk=chunk, device="cpu"
        )
        value, pair, _ = distances.expansive_constant(result, reading.over_depths)
    else:
        value, pair = expansive
    if result is not None and reading.orbits == "revisit" and reading.same_view:
        orbits, hops = shadowing.greedy_pseudo_orbits(result.nn_index, result.nn_distance)  # already paid
    else:
        distinct = reading.orbits == "distinct"
        known = None if distinct else known_nearest
        orbits, hops = distances.scan_orbits(shadowing_probs, 0, n, distinct=distinct, known=known)
    eps, b_star = shadowing.shadowing_errors(shadowing_probs, orbits, 0, n, chunk=chunk)
    delta = hops.max(axis=1)
    best = shadowing.best_tracing(eps, delta, orbits, b_star)
    _, curve = shadowing.shadowing_curve(eps, delta, *quantiles)
    independent = shadowing.independent_pairing(eps, delta)
    defined = bool(np.isfinite(value))
    return {
        "g_expansive": float(value) if defined else None,
        "pair": [int(pair[0]), int(pair[1])] if defined else None,
        "sh_paper": best["value"],
        "orbit_start": best["orbit_start"] if best["value"] is not None else None,
        "sh_curve": curve["value"],
        "sh_independent": independent["value"],
    }


def sample_size_table(
    expansive_probs: np.ndarray,
    shadowing_probs: np.ndarray,
    labels: np.ndarray,
    strata: np.ndarray,
    n_classes: int,
    reading: Reading,
    grid: Sequence[int],
    *,
    subsets: int,
    seed: int,
    test_index: np.ndarray | None = None,
    quantiles: Sequence[float],
    chunk: int,
    full_set: Mapping[str, Any] | None = None,
    candidates: CandidatePairs | None = None,
    nearest: tuple[np.ndarray, np.ndarray] | None = None,
    workers: int | None = None,
) -> pd.DataFrame:
    """One row per subset (columns :data:`COLUMNS`): for each size n of ``grid``, ``subsets`` stratified
    subsets (:func:`stratified_subset` of ``strata``; one for n = N) and their :func:`subset_constants`.

    ``test_index`` maps rows to test indices (default: the rows themselves); pairs and orbit starts are
    reported as test indices. Undefined estimates are NaN (empty in the CSV), their indices −1.
    ``full_set``, when given, is the whole test set's :func:`subset_constants` result (rows, not test
    indices) already computed by the pairwise, shadowing and constants stages
    (:func:`full_set_from_constants`): the size-N row is taken from it instead of being recomputed.
    ``candidates`` is the pair list (:class:`CandidatePairs`) when the pairwise pass made one
    (:meth:`CandidatePairs.from_pass`); else it is built here. ``nearest`` are the whole test set's
    nearest-neighbour tables of the shadowing view ((D, N) index and distance, :func:`nearest_from_pass`),
    used by revisiting orbits: a subset image whose nearest neighbour in the whole set lies in the subset
    takes it, since it is its nearest there too (ties included: rows keep their order), and only the others
    are searched. ``workers`` subsets are computed side by
    side, one numba thread each (default :func:`resdyn.distances.concurrent_callers`; 1 where numba's
    threading layer does not allow it): the table is the same for any count.
    """
    n_images = expansive_probs.shape[0]
    test_index = np.arange(n_images) if test_index is None else np.asarray(test_index)
    if reading.orbits == "distinct" and grid and min(grid) < shadowing_probs.shape[1]:
        raise InputError(
            f"sample size: distinct pseudo-orbits visit {shadowing_probs.shape[1]} different images, but the "
            f"grid's smallest subset has n = {min(grid)} (raise sample_size.min_size or list larger sizes)"
        )
    jobs = [(int(n), b) for n in grid for b in range(1 if n == n_images else subsets)]
    lists = candidates
    if lists is None and len(jobs) > (full_set is not None):
        lists = CandidatePairs.build(expansive_probs, labels, reading.over_depths)

    def row(job: tuple[int, int]) -> dict[str, Any]:
        n, b = job
        members = stratified_subset(strata, n, seed, b)
        if n == n_images and full_set is not None:
            found = dict(full_set)
        else:
            known = None
            if nearest is not None:  # the whole set's nearest neighbours that lie in the subset
                row_of = np.full(n_images, -1, np.int64)
                row_of[members] = np.arange(n)
                known = (row_of[nearest[0][:, members]], nearest[1][:, members])
            found = subset_constants(
                expansive_probs[members],
                shadowing_probs[members],
                labels[members],
                n_classes,
                reading,
                quantiles=quantiles,
                chunk=chunk,
                expansive=None if lists is None else lists.expansive(members),
                known_nearest=known,
            )
        chosen = test_index[members]
        as_test = lambda row: -1 if row is None else int(chosen[row])  # noqa: E731
        pair = found["pair"] or [None, None]
        return {
            "n": n,
            "subset": b,
            "g_expansive": found["g_expansive"],
            "pair_i": as_test(pair[0]),
            "pair_j": as_test(pair[1]),
            "sh_paper": found["sh_paper"],
            "orbit_start": as_test(found["orbit_start"]),
            "sh_curve": found["sh_curve"],
            "sh_independent": found["sh_independent"],
        }

    progress = dict(total=len(jobs), desc="sample-size subsets", disable=None, leave=False)
    with _subset_runner(workers) as run:
        rows = list(tqdm(run(row, jobs), **progress))
    table = pd.DataFrame(rows, columns=COLUMNS)
    for column in ESTIMATES:
        table[column] = table[column].astype(np.float64)  # None → NaN
    return table


def nearest_from_pass(
    result: distances.PairwiseResult, shadowing_probs: np.ndarray, reading: Reading, where: str
) -> tuple[np.ndarray, np.ndarray] | None:
    """The pairwise pass's nearest-neighbour tables (pairs.h5 ``where``, /nearest) as the whole test set's
    nearest neighbours of the shadowing view, for :func:`sample_size_table`'s ``nearest``; None when the
    reading's orbits do not revisit or its two views differ (the pass saw other probabilities).

    Every entry is rechecked: an index other than its own row, within 0..N−1, and its distance recomputed
    with the kernels' arithmetic equal bit for bit (O(N·D·C)).

    Raises:
        InputError: the tables do not fit ``shadowing_probs`` (``where`` comes from other inputs).
    """
    if reading.orbits != "revisit" or not reading.same_view:
        return None
    index, distance = np.asarray(result.nn_index, np.int64), np.asarray(result.nn_distance, np.float64)
    n_images, depths = shadowing_probs.shape[:2]
    if index.shape != (depths, n_images):
        raise InputError(
            f"{where}: nearest-neighbour tables of shape {index.shape}, but the trajectories' view is "
            f"({depths}, {n_images}): the two files come from different inputs"
        )
    rows = np.arange(n_images)
    for t in range(depths):
        valid = (index[t] >= 0) & (index[t] < n_images) & (index[t] != rows)
        partner = np.where(valid, index[t], 0)
        recomputed = np.sqrt(distances.squared_distance(shadowing_probs[:, t], shadowing_probs[partner, t]))
        wrong = np.flatnonzero(~valid | (recomputed != distance[t]))
        if wrong.size:
            i = int(wrong[0])
            raise InputError(
                f"{where}: image {i}'s nearest neighbour at depth {t} is listed as {int(index[t, i])} at "
                f"{float(distance[t, i])!r}, but the trajectories give {float(recomputed[i])!r}: the two "
                "files come from different inputs"
            )
    return index, distance


def full_set_from_constants(constants: Mapping[str, Any], test_index: np.ndarray) -> dict[str, Any]:
    """The whole test set's estimates as the run's constants.json states them (its ``g_expansive`` and
    ``g_shadowing`` blocks, already loaded by :class:`resdyn.artifacts.Constants`), in the form of
    :func:`subset_constants`' result: the pair and the orbit start turned from test indices back into rows
    through ``test_index`` (row → test index, the trajectories' ``/index``).

    The constants stage computed them from the same kernels on all N rows (pairs.h5, shadowing.h5), which
    is what the size-N subset would recompute; :func:`recheck_full_set` confirms the two files agree.

    Raises:
        InputError: a test index that is not a row of these trajectories.
    """
    row_of = {int(t): r for r, t in enumerate(np.asarray(test_index).tolist())}

    def as_row(index: Any) -> int:
        if index is None or int(index) not in row_of:
            raise InputError(f"test image {index!r} is not in the trajectories")
        return row_of[int(index)]

    expansive, shadow = constants["g_expansive"], constants["g_shadowing"]
    paper = shadow["paper"]
    number = lambda value: None if value is None else float(value)  # noqa: E731
    return {
        "g_expansive": number(expansive["value"]),
        "pair": None if expansive["value"] is None else [as_row(k) for k in expansive["pair"]],
        "sh_paper": number(paper["value"]),
        "orbit_start": None if paper["value"] is None else as_row(paper["orbit_start"]),
        "sh_curve": number(shadow["curve"]["value"]),
        "sh_independent": number(shadow["independent"]["value"]),
    }


def recheck_full_set(
    expansive_probs: np.ndarray,
    shadowing_probs: np.ndarray,
    labels: np.ndarray,
    reading: Reading,
    found: Mapping[str, Any],
    *,
    chunk: int,
) -> dict[str, float | None]:
    """Recompute from the trajectories, in O(N·D·C), the parts of the whole test set's estimates ``found``
    (:func:`full_set_from_constants`) that one pair or one orbit decides, with the kernels' arithmetic:

    - ``g_expansive``: S_t d_t(i, j) at the stated pair (:func:`resdyn.distances.reduced_distances`, the
      reading's max, mean or min), None when the pair is None and no two labels differ (else NaN, which
      equals nothing);
    - ``sh_paper``: δ/ε of the pseudo-orbit from the stated orbit start, rescanned by
      :func:`resdyn.distances.scan_orbits` (the reading's revisit or distinct rule; the same orbits and hops
      as the nearest-neighbour tables give, bit for bit) and shadowed by
      :func:`resdyn.shadowing.shadowing_errors` over all N images; None when ε = 0 or no start is stated.

    Equal to ``found``'s values bit for bit when constants.json comes from these trajectories; a
    difference means the files come from different inputs. (``sh_curve`` and ``sh_independent`` need
    every orbit's ε: they are not rechecked.)
    """
    result: dict[str, float | None] = {}
    labels = np.asarray(labels)
    pair = found["pair"]
    if pair is None:
        result["g_expansive"] = None if np.unique(labels).size < 2 else math.nan
    else:
        i, j = (int(k) for k in pair)
        if labels[i] == labels[j]:
            result["g_expansive"] = math.nan
        else:
            value = distances.reduced_distances(expansive_probs, [i], [j], reading.over_depths)
            result["g_expansive"] = float(value[0])
    start = found["orbit_start"]
    if start is None:
        result["sh_paper"] = None
    else:
        orbit, hops = distances.scan_orbits(
            shadowing_probs, int(start), int(start) + 1, distinct=reading.orbits == "distinct"
        )
        eps, _ = shadowing.shadowing_errors(shadowing_probs, orbit, 0, 1, chunk=chunk)
        delta = hops.max(axis=1)
        result["sh_paper"] = float(delta[0] / eps[0]) if eps[0] > 0 else None
    return result


SERIAL_BELOW = 2000
"""Run one after the other (one worker), subsets smaller than this use one numba thread. Their kernels take
milliseconds, and each parallel launch cost ~10 ms on the loaded 2-core machine (measured at N = 1,000,
121 subsets: 4.5-4.8 s with 2 threads, 0.9-1.2 s with 1). The results do not depend on the thread count
(exact merges)."""


def _threads_for(n: int) -> contextlib.AbstractContextManager:
    """One numba thread for a subset of n < :data:`SERIAL_BELOW` images, else numba's count (the job's)."""
    if n >= SERIAL_BELOW:
        return contextlib.nullcontext()
    return distances.kernel_threads(1, announce=False)


def _one_after_another(
    compute: Callable[[tuple[int, int]], Any], jobs: Sequence[tuple[int, int]]
) -> Iterator[Any]:
    for job in jobs:
        with _threads_for(job[0]):
            yield compute(job)


@contextlib.contextmanager
def _subset_runner(
    workers: int | None,
) -> Iterator[Callable[[Callable[[tuple[int, int]], Any], Sequence[tuple[int, int]]], Iterator[Any]]]:
    """A ``map`` over the (size, subset) jobs that keeps their order: the subsets run side by side on
    ``workers`` Python threads, one numba thread each (the kernels release the GIL); with one worker, or
    where numba's threading layer does not allow concurrent callers
    (:func:`resdyn.distances.concurrent_callers`), one after the other in this thread, the larger ones
    (:data:`SERIAL_BELOW`) on numba's own threads.

    Subsets rather than their kernels run in parallel: a subset's kernels take milliseconds, and launching
    each on every thread cost more CPU time than it saved wall time (measured in docs/performance.md).
    Every subset's result is exact, so it does not depend on the thread that computed it."""
    import numba

    workers = distances.concurrent_callers(workers)
    if workers == 1:
        yield _one_after_another
        return
    with ThreadPoolExecutor(workers, initializer=numba.set_num_threads, initargs=(1,)) as pool:
        yield pool.map


def band_summary(values: np.ndarray, band: Sequence[float] = BAND) -> dict[str, Any]:
    """Median and band of the defined (finite) ``values``: {median, low, high, n_defined}; the three
    numbers are None when no value is defined."""
    values = np.asarray(values, dtype=np.float64)
    defined = values[np.isfinite(values)]
    if not defined.size:
        return {"median": None, "low": None, "high": None, "n_defined": 0}
    low, high = np.quantile(defined, band)
    return {
        "median": float(np.median(defined)),
        "low": float(low),
        "high": float(high),
        "n_defined": int(defined.size),
    }


def fit_slope(sizes: Sequence[float], medians: Sequence[float | None]) -> dict[str, Any]:
    """Least-squares line through (log n, log median) over the sizes with a positive median:
    log median ≈ intercept + value · log n. ``value`` is the exponent s of median ∝ n^s; None (with
    ``undefined_reason``) when fewer than two distinct sizes qualify."""
    pairs = [(float(n), float(m)) for n, m in zip(sizes, medians) if m is not None and m > 0]
    used = sorted({n for n, _ in pairs})
    if len(used) < 2:
        return {
            "value": None,
            "intercept": None,
            "sizes": [int(n) for n in used],
            "undefined_reason": f"{len(used)} size(s) with a positive median; a slope needs two",
        }
    x = np.log([n for n, _ in pairs])
    y = np.log([m for _, m in pairs])
    dx = x - x.mean()
    value = float((dx * (y - y.mean())).sum() / (dx * dx).sum())
    return {
        "value": value,
        "intercept": float(y.mean() - value * x.mean()),
        "sizes": [int(n) for n in used],
        "undefined_reason": None,
    }


def summarize(
    table: pd.DataFrame, n_images: int, reference: int, band: Sequence[float] = BAND
) -> dict[str, Any]:
    """The summary of sample_size.csv (method §3.6): per size its subsets and each estimate's
    :func:`band_summary`, each estimate's :func:`fit_slope` of the medians, and the ``reference`` block
    (the size ``reference`` entry, or ``available: false`` with a reason when N < reference)."""
    sizes = []
    for n, group in table.groupby("n", sort=True):
        sizes.append(
            {"n": int(n), "subsets": int(len(group))}
            | {est: band_summary(group[est].to_numpy(), band) for est in ESTIMATES}
        )
    slope = {est: fit_slope([s["n"] for s in sizes], [s[est]["median"] for s in sizes]) for est in ESTIMATES}
    entry = next((s for s in sizes if s["n"] == reference), None)
    if reference > n_images:
        ref: dict[str, Any] = {
            "n": int(reference),
            "available": False,
            "undefined_reason": f"N = {n_images} < {reference}: the test set is smaller than the reference "
            "size (not extrapolated)",
        }
    elif entry is None:
        raise InputError(f"sample size: the grid holds no subsets of the reference size {reference}")
    else:
        ref = {"n": int(reference), "available": True, "undefined_reason": None} | entry
    return {
        "N": int(n_images),
        "band": [float(q) for q in band],
        "sizes": sizes,
        "slope": slope,
        "reference": ref,
    }
