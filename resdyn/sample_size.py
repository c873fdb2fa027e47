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
- **Estimates on a subset** (:func:`subset_constants`): the reading's (method §3.4) expansive view of the
  subset through :func:`resdyn.distances.pairwise_shard` over all its rows, e =
  :func:`resdyn.distances.expansive_constant` (the reading's reduction over depths) with its pair; the
  pseudo-orbits of the subset's own images (read off its nearest-neighbour tables when the reading's
  orbits may revisit and both stages see one temperature, else :func:`resdyn.distances.scan_orbits`, the
  orbits scanned by a numba kernel),
  their ε by :func:`resdyn.shadowing.shadowing_errors`, then Sh best tracing (``sh_paper``), the curve
  estimate (``sh_curve``, with the analysis quantiles) and the independent pairing (``sh_independent``).
  The subset of size N therefore reproduces ``constants.json`` bit for bit (the stage checks it).
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
from collections.abc import Mapping, Sequence
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


def subset_constants(
    expansive_probs: np.ndarray,
    shadowing_probs: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    reading: Reading,
    *,
    quantiles: Sequence[float],
    chunk: int,
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

    Returns:
        {g_expansive, pair (2 sample rows or None), sh_paper, orbit_start (a sample row), sh_curve,
        sh_independent}; an undefined estimate is None.
    """
    n = expansive_probs.shape[0]
    # the sample-size stage runs on the CPU
    result = distances.pairwise_shard(
        expansive_probs, labels, 0, n, n_classes=n_classes, chunk=chunk, device="cpu"
    )
    value, pair, _ = distances.expansive_constant(result, reading.over_depths)
    if reading.orbits == "revisit" and reading.same_view:
        orbits, hops = shadowing.greedy_pseudo_orbits(result.nn_index, result.nn_distance)
    else:
        orbits, hops = distances.scan_orbits(shadowing_probs, 0, n, distinct=reading.orbits == "distinct")
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
) -> pd.DataFrame:
    """One row per subset (columns :data:`COLUMNS`): for each size n of ``grid``, ``subsets`` stratified
    subsets (:func:`stratified_subset` of ``strata``; one for n = N) and their :func:`subset_constants`.

    ``test_index`` maps rows to test indices (default: the rows themselves); pairs and orbit starts are
    reported as test indices. Undefined estimates are NaN (empty in the CSV), their indices −1.
    """
    n_images = expansive_probs.shape[0]
    test_index = np.arange(n_images) if test_index is None else np.asarray(test_index)
    if reading.orbits == "distinct" and grid and min(grid) < shadowing_probs.shape[1]:
        raise InputError(
            f"sample size: distinct pseudo-orbits visit {shadowing_probs.shape[1]} different images, but the "
            f"grid's smallest subset has n = {min(grid)} (raise sample_size.min_size or list larger sizes)"
        )
    jobs = [(int(n), b) for n in grid for b in range(1 if n == n_images else subsets)]
    rows = []
    for n, b in tqdm(jobs, desc="sample-size subsets", disable=None, leave=False):
        members = stratified_subset(strata, n, seed, b)
        with _threads_for(n):
            found = subset_constants(
                expansive_probs[members],
                shadowing_probs[members],
                labels[members],
                n_classes,
                reading,
                quantiles=quantiles,
                chunk=chunk,
            )
        chosen = test_index[members]
        as_test = lambda row: -1 if row is None else int(chosen[row])  # noqa: E731, B023 (used at once)
        pair = found["pair"] or [None, None]
        rows.append(
            {
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
        )
    table = pd.DataFrame(rows, columns=COLUMNS)
    for column in ESTIMATES:
        table[column] = table[column].astype(np.float64)  # None → NaN
    return table


SERIAL_BELOW = 2000
"""Subsets smaller than this run the numba kernels on one thread. Their kernels take milliseconds, and each
parallel launch cost ~10 ms on the loaded 2-core machine (measured at N = 1,000, 121 subsets: 4.5-4.8 s
with 2 threads, 0.9-1.2 s with 1). The results do not depend on the thread count (exact merges)."""


@contextlib.contextmanager
def _threads_for(n: int):
    import numba

    before = numba.get_num_threads()
    if n >= SERIAL_BELOW or before == 1:
        yield
        return
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(before)


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


def full_set_row(table: pd.DataFrame, n_images: int) -> dict[str, float | None]:
    """The estimates of the subset of size N (the whole test set), NaN as None."""
    rows = table[table["n"] == n_images]
    if len(rows) != 1:
        raise InputError(f"sample size: expected one subset of size N = {n_images}, found {len(rows)}")
    row = rows.iloc[0]
    return {est: (None if math.isnan(row[est]) else float(row[est])) for est in ESTIMATES}
