"""Greedy pseudo-orbits and the g-shadowing constant (paper §2.3, §3, Appendix A; method §3.2).

Notation: ``probs[i, t]`` = p_t(i) = g(x_t(i)) for N test images and depths t = 0..T, and
d_t(i, j) = ‖p_t(i) − p_t(j)‖₂. All image indices here are rows of the trajectory file (map them through
its ``/index`` to get test-set indices).

Pseudo-orbits. A sequence (x_t) is a δ-pseudo-orbit of φ for g when d(g φ_{t+1}(x_t), g(x_{t+1})) ≤ δ for
every t. Taking x_t = x_t(a_t), the state of test image a_t at depth t, the step φ_{t+1}(x_t) is the state
of a_t at depth t+1, so the hop is d_{t+1}(a_t, a_{t+1}). From every test image a_0 = i we build one greedy
pseudo-orbit (§3: "for all images, we selected the most similar image after passing through the block
once"): a_{t+1} = argmin_{j ≠ a_t} d_{t+1}(a_t, j) (ties: smaller j), hop δ_t = d_{t+1}(a_t, a_{t+1}),
orbit q_t = p_t(a_t) and δ(ξ) = max_t δ_t. An image may recur along an orbit.

Shadowing error. ε(ξ) = min over all test images b of max_t ‖p_t(b) − q_t‖₂ (ties: smaller b), the
smallest ε for which ξ is ε-shadowed by a true trajectory of the sample; b* is the shadowing image.

Two estimates of Sh_g(φ) = liminf_{ε→0} sup S(g, φ, ε) / ε:

- paper ("best tracing", Tables 2, 4, 5): the orbit with the smallest ε > 0 (ties: larger δ, then smaller
  start); Sh = δ / ε.
- curve: at each observed level ε (a distinct positive ε_k), δ*(ε) = min{δ_k : ε_k > ε}, the sampled
  stand-in for sup S(g, φ, ε): every sampled pseudo-orbit with δ_k < δ*(ε) is ε-shadowed. r(ε) = δ*(ε) / ε
  and Sh_curve = min r(ε) over the levels in the quantile window [Q_low, Q_high] of the observed ε_k.

Degenerate inputs (never an inf or NaN in the results; JSON cannot hold them):

- ε_k = 0 (an orbit traced exactly, e.g. by duplicate images): Definition 2 quantifies over ε > 0 and
  δ/0 is undefined, so such orbits are counted (``n_exactly_shadowed``) but never chosen by the paper
  estimate and never a curve level (they also never enter δ*(ε) for ε > 0, since ε_k > ε fails).
- The largest observed level has no orbit with ε_k > ε: every sampled orbit is shadowed there, δ*(ε) is
  unbounded by the sample, so that level is left out of the curve.
- The window uses observed order statistics, Q_low = ε_(⌊q_low·(N−1)⌋) and Q_high = ε_(⌈q_high·(N−1)⌉)
  (numpy ``method="lower"`` / ``"higher"``), so it always holds at least one observed ε_k (with linear
  interpolation N = 2 would give a window between the two values and no level inside).
- When no estimate can be formed (every ε_k = 0; or no defined level in the window, which is always the
  case for N = 2, whose two orbits mirror each other and share one ε), ``value`` is ``None`` (JSON null)
  and ``undefined_reason`` says why.

Readings (method §3.4) add two choices the authors' code (KY-HDC/DS-ResNets) makes:

- distinct orbits (:func:`resdyn.distances.scan_orbits` with ``distinct=True``): a_{t+1} is the nearest
  image not yet visited by the orbit (a_0 included), so an orbit needs N ≥ T+1 images;
- the independent pairing (:func:`independent_pairing`): ε = min over orbits of ε_k (ε_k > 0) and
  δ = min over orbits of δ_k, usually from different orbits; Sh = δ/ε.

Its chains also match a depth-1 output against depth-0 states (an off-by-one); no reading reproduces that,
since the hop of a pseudo-orbit compares both images at the same depth t+1.

Caveat of the best-tracing estimate (method §3.2): when the best-traced orbit's shadow is its own start
(b* = a_0), ε = max_t d_t(a_0, a_t) ≥ d_1(a_0, a_1) = δ_0 and δ ≥ δ_0: both are at least the first hop, so
Sh = δ/ε says more about the orbit's hop sizes than about shadowing. It is not a bound: Sh = 1 exactly when
both maxima are attained at the first hop (the common case), Sh > 1 when a later hop is the largest, and
Sh < 1 when the orbit's distance from its start at a later depth exceeds every hop. :func:`best_tracing`
flags it as ``shadow_is_start``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from resdyn.config import schema_defaults
from resdyn.distances import min_max_distance
from resdyn.io import InputError

DEFAULT_QUANTILES = tuple(schema_defaults("analysis")["curve_quantiles"])


class ShadowingPart(NamedTuple):
    """Shadowing errors of orbits ``start..stop-1``, as one shard computes them."""

    start: int
    stop: int
    epsilon: np.ndarray
    shadow_image: np.ndarray


def greedy_pseudo_orbits(nn_index: np.ndarray, nn_distance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One greedy pseudo-orbit from every image, read off the per-depth nearest-neighbour tables.

    a_0 = i, a_{t+1} = nn_index[t+1, a_t] = argmin_{j ≠ a_t} d_{t+1}(a_t, j), δ_t = nn_distance[t+1, a_t]
    for t = 0..T−1 (method §3.2, paper §3). Row 0 of the tables is not used.

    Args:
        nn_index: (T+1, N) int, nearest j ≠ i at each depth (the merged pairwise table).
        nn_distance: (T+1, N) float, the matching distances d_t(i, nn_index[t, i]).

    Returns:
        orbits (N, T+1) int64 with orbits[i, 0] = i, and hops (N, T) float64.

    Raises:
        InputError: shapes disagree, T < 1, N < 2, or a used entry is out of range, points to itself, or
        is unfilled (−1 / inf, as in an unmerged shard).
    """
    nn_index = np.asarray(nn_index)
    nn_distance = np.asarray(nn_distance, dtype=np.float64)
    if nn_index.ndim != 2 or nn_index.shape != nn_distance.shape:
        raise InputError(
            f"nn_index {nn_index.shape} and nn_distance {nn_distance.shape} must both be (T+1, N)"
        )
    depths, n_images = nn_index.shape
    if depths < 2:
        raise InputError(f"nn_index has {depths} depth(s); a pseudo-orbit needs T >= 1 blocks")
    if n_images < 2:
        raise InputError(f"nn_index has N = {n_images} image(s); nearest neighbours need N >= 2")
    if not np.issubdtype(nn_index.dtype, np.integer):
        raise InputError(f"nn_index must hold integers, got dtype {nn_index.dtype}")
    used_index = nn_index[1:]
    used_distance = nn_distance[1:]
    bad = (used_index < 0) | (used_index >= n_images) | (used_index == np.arange(n_images))
    bad |= ~np.isfinite(used_distance) | (used_distance < 0)
    if bad.any():
        t, i = np.argwhere(bad)[0]
        raise InputError(
            f"nearest-neighbour table entry at depth {t + 1}, image {i} is invalid "
            f"(index {nn_index[t + 1, i]}, distance {nn_distance[t + 1, i]}); "
            "were all pairwise shards merged?"
        )
    orbits = np.empty((n_images, depths), dtype=np.int64)
    hops = np.empty((n_images, depths - 1), dtype=np.float64)
    orbits[:, 0] = np.arange(n_images)
    for t in range(depths - 1):
        current = orbits[:, t]
        orbits[:, t + 1] = nn_index[t + 1, current]
        hops[:, t] = nn_distance[t + 1, current]
    return orbits, hops


def shadowing_errors(
    probs: np.ndarray, orbits: np.ndarray, start: int, stop: int, *, chunk: int
) -> tuple[np.ndarray, np.ndarray]:
    """Shadowing error ε and shadowing image b* of orbits ``start..stop-1``.

    ε(ξ) = min_b max_t ‖p_t(b) − q_t‖₂ with q_t = p_t(a_t), ties → smaller b (method §3.2). Each orbit's
    value is exact and its own (:func:`resdyn.distances.min_max_distance`, float64, from differences;
    orbits that coincide at the pruning depth share its candidate search, and each orbit's start image
    seeds it), so the result is identical for any split of 0..N into shards; ``chunk`` bounds its memory.

    Args:
        probs: (N, T+1, C) float64 probability trajectories.
        orbits: (N_orbits, T+1) int image indices a_0..a_T (from :func:`greedy_pseudo_orbits`).
        start, stop: the orbit rows of this shard, 0 <= start <= stop <= N_orbits.
        chunk: rows per block passed through to ``min_max_distance``.

    Returns:
        eps (stop−start,) float64 and b_star (stop−start,) int64.
    """
    probs = np.asarray(probs, dtype=np.float64)
    orbits = np.asarray(orbits)
    if probs.ndim != 3:
        raise InputError(f"probs must be (N, T+1, C), got shape {probs.shape}")
    n_images, depths, _ = probs.shape
    if orbits.ndim != 2 or orbits.shape[1] != depths:
        raise InputError(f"orbits must be (N, T+1) with T+1 = {depths}, got shape {orbits.shape}")
    if not np.issubdtype(orbits.dtype, np.integer):
        raise InputError(f"orbits must hold integers, got dtype {orbits.dtype}")
    if not 0 <= start <= stop <= orbits.shape[0]:
        raise InputError(f"orbit range {start}..{stop} is outside 0..{orbits.shape[0]}")
    if orbits.size and (orbits.min() < 0 or orbits.max() >= n_images):
        raise InputError(f"orbits hold image indices outside 0..{n_images - 1}")
    if not np.isfinite(probs).all():
        raise InputError("probs contain NaN or inf")
    block = orbits[start:stop]
    queries = probs[block, np.arange(depths)[None, :]]  # q_t = p_t(a_t): (M, T+1, C)
    eps, b_star = min_max_distance(queries, probs, chunk=chunk, seeds=block[:, :1])
    return np.asarray(eps, dtype=np.float64), np.asarray(b_star, dtype=np.int64)


def merge_shadowing(
    parts: Iterable[ShadowingPart | tuple[int, int, np.ndarray, np.ndarray]], n_orbits: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Join shard results into (eps (N,), b_star (N,)).

    Orbits are independent, so merging is placing each shard's rows at ``start..stop-1``; the parts may
    come in any order but must tile 0..N exactly (no gap, no overlap), N = ``n_orbits`` when given.
    """
    ordered = sorted((ShadowingPart(*part) for part in parts), key=lambda part: (part.start, part.stop))
    if not ordered:
        raise InputError("merge_shadowing got no parts")
    expected = 0
    for part in ordered:
        if part.start != expected:
            raise InputError(
                f"shadowing parts do not tile the orbits: a part starts at {part.start}, expected {expected}"
            )
        size = part.stop - part.start
        if np.shape(part.epsilon) != (size,) or np.shape(part.shadow_image) != (size,):
            raise InputError(f"shadowing part {part.start}..{part.stop} holds arrays of the wrong length")
        expected = part.stop
    if n_orbits is not None and expected != n_orbits:
        raise InputError(f"shadowing parts cover orbits 0..{expected}, expected 0..{n_orbits}")
    eps = np.concatenate([np.asarray(part.epsilon, dtype=np.float64) for part in ordered])
    b_star = np.concatenate([np.asarray(part.shadow_image, dtype=np.int64) for part in ordered])
    return eps, b_star


def _check_eps_delta(eps: np.ndarray, delta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    eps = np.asarray(eps, dtype=np.float64)
    delta = np.asarray(delta, dtype=np.float64)
    if eps.ndim != 1 or eps.shape != delta.shape or eps.size == 0:
        raise InputError(f"epsilon {eps.shape} and delta {delta.shape} must be equal-length non-empty 1-D")
    for name, values in (("epsilon", eps), ("delta", delta)):
        if not np.isfinite(values).all() or (values < 0).any():
            k = int(np.flatnonzero(~np.isfinite(values) | (values < 0))[0])
            raise InputError(f"{name}[{k}] = {values[k]!r}; expected a finite value >= 0")
    return eps, delta


def best_tracing(
    eps: np.ndarray, delta: np.ndarray, orbits: np.ndarray, b_star: np.ndarray
) -> dict[str, Any]:
    """The paper's estimate (§3, Tables 2, 4, 5): the best-traced orbit and Sh = δ/ε.

    The orbit k with the smallest ε_k > 0, ties broken by the larger δ_k, then the smaller start;
    Sh = δ_k / ε_k. Orbits with ε_k = 0 are exactly shadowed and have no ratio (see the module docstring).

    Returns:
        dict with ``value`` (Sh, or None), ``epsilon``, ``delta``, ``orbit_start``, ``orbit`` (a_0..a_T),
        ``shadow_image`` (b*), ``shadow_is_start`` (b* = a_0: the caveat of the module docstring),
        ``n_orbits``, ``n_exactly_shadowed`` and ``undefined_reason`` (None unless
        ``value`` is None). When every ε_k = 0, the reported orbit is the one with the largest δ (ties:
        smaller start) and ``value`` is None.
    """
    eps, delta = _check_eps_delta(eps, delta)
    orbits = np.asarray(orbits)
    b_star = np.asarray(b_star)
    if orbits.ndim != 2 or orbits.shape[0] != eps.size or b_star.shape != eps.shape:
        raise InputError(
            f"orbits {orbits.shape} and shadow images {b_star.shape} must have one row per orbit ({eps.size})"
        )
    starts = np.arange(eps.size)
    exact = eps == 0
    candidates = starts[~exact] if (~exact).any() else starts
    # lexsort: last key is primary. Smallest ε, then largest δ, then smallest start.
    order = np.lexsort((candidates, -delta[candidates], eps[candidates]))
    k = int(candidates[order[0]])
    defined = bool(eps[k] > 0)
    return {
        "value": float(delta[k] / eps[k]) if defined else None,
        "epsilon": float(eps[k]),
        "delta": float(delta[k]),
        "orbit_start": k,
        "orbit": [int(a) for a in orbits[k]],
        "shadow_image": int(b_star[k]),
        "shadow_is_start": bool(b_star[k] == orbits[k, 0]),
        "n_orbits": int(eps.size),
        "n_exactly_shadowed": int(exact.sum()),
        "undefined_reason": None if defined else _all_exact(eps.size),
    }


def _all_exact(n_orbits: int) -> str:
    return f"all {n_orbits} pseudo-orbits are exactly shadowed (epsilon = 0), so delta/epsilon is undefined"


def independent_pairing(eps: np.ndarray, delta: np.ndarray) -> dict[str, Any]:
    """The authors' estimate (method §3.4): ε and δ minimised separately over the orbits, Sh = δ/ε.

    ε = min over orbits with ε_k > 0 of ε_k (its orbit: ``epsilon_orbit``, ties → smaller start) and
    δ = min over all orbits of δ_k (``delta_orbit``, ties → smaller start). The two usually come from
    different orbits, so no single pseudo-orbit need have both; orbits with ε_k = 0 are left out of the ε
    minimum for the reason :func:`best_tracing` gives.

    Returns:
        dict with ``value`` (or None), ``epsilon``, ``delta``, ``epsilon_orbit``, ``delta_orbit`` (start
        images) and ``undefined_reason``.
    """
    eps, delta = _check_eps_delta(eps, delta)
    delta_orbit = int(np.argmin(delta))  # first occurrence: the smaller start
    positive = np.flatnonzero(eps > 0)
    if not positive.size:
        return {
            "value": None,
            "epsilon": 0.0,
            "delta": float(delta[delta_orbit]),
            "epsilon_orbit": None,
            "delta_orbit": delta_orbit,
            "undefined_reason": _all_exact(eps.size),
        }
    epsilon_orbit = int(positive[np.argmin(eps[positive])])
    return {
        "value": float(delta[delta_orbit] / eps[epsilon_orbit]),
        "epsilon": float(eps[epsilon_orbit]),
        "delta": float(delta[delta_orbit]),
        "epsilon_orbit": epsilon_orbit,
        "delta_orbit": delta_orbit,
        "undefined_reason": None,
    }


def shadowing_curve(
    eps: np.ndarray,
    delta: np.ndarray,
    q_low: float = DEFAULT_QUANTILES[0],
    q_high: float = DEFAULT_QUANTILES[1],
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The curve estimate: δ*(ε), r(ε) at every observed level and Sh_curve (method §3.2).

    For each distinct observed ε > 0 except the largest, δ*(ε) = min{δ_k : ε_k > ε} and r(ε) = δ*(ε)/ε.
    Sh_curve = min r(ε) over levels with Q_low ≤ ε ≤ Q_high, Q_low / Q_high the ``q_low`` / ``q_high``
    quantiles of all ε_k taken as observed order statistics (numpy ``lower`` / ``higher``); ties in r go
    to the smaller ε. This is the finite-sample stand-in for liminf_{ε→0} sup S(g, φ, ε)/ε (Definition 2):
    the window drops the smallest levels, where δ* rests on nearly all orbits' minimum and r blows up as
    1/ε, and the largest, where it rests on a handful of orbits.

    Returns:
        (curve, summary): curve has columns ``epsilon, delta_star, ratio`` ascending in ε (possibly no
        rows); summary has ``value`` (or None), ``epsilon``, ``delta_star``, ``quantiles`` {q_low, q_high,
        epsilon_low, epsilon_high}, ``n_orbits``, ``n_levels``, ``n_levels_in_window``,
        ``at_lower_quantile`` (r, ε and δ* at the smallest level in the window, i.e. r(Q_low) when Q_low is
        itself a level: the 2026 refactor's choice, beside the window minimum; None when the window holds
        no level) and ``undefined_reason``.
    """
    eps, delta = _check_eps_delta(eps, delta)
    if not 0.0 <= q_low <= q_high <= 1.0:
        raise ValueError(
            f"quantiles must satisfy 0 <= q_low <= q_high <= 1, got q_low={q_low}, q_high={q_high}"
        )
    order = np.argsort(eps, kind="stable")
    eps_sorted = eps[order]
    # suffix_min[k] = min δ over the orbits ranked k.. by ε; δ*(ε) reads it at the first ε_k > ε.
    suffix_min = np.minimum.accumulate(delta[order][::-1])[::-1]
    levels = np.unique(eps_sorted[eps_sorted > 0])
    first_above = np.searchsorted(eps_sorted, levels, side="right")
    has_delta_star = first_above < eps.size
    levels = levels[has_delta_star]
    delta_star = suffix_min[first_above[has_delta_star]]
    curve = pd.DataFrame({"epsilon": levels, "delta_star": delta_star, "ratio": delta_star / levels})

    epsilon_low = float(np.quantile(eps, q_low, method="lower"))
    epsilon_high = float(np.quantile(eps, q_high, method="higher"))
    in_window = (levels >= epsilon_low) & (levels <= epsilon_high)
    summary: dict[str, Any] = {
        "value": None,
        "epsilon": None,
        "delta_star": None,
        "quantiles": {
            "q_low": float(q_low),
            "q_high": float(q_high),
            "epsilon_low": epsilon_low,
            "epsilon_high": epsilon_high,
        },
        "n_orbits": int(eps.size),
        "n_levels": int(levels.size),
        "n_levels_in_window": int(in_window.sum()),
        "at_lower_quantile": None,
        "undefined_reason": None,
    }
    if in_window.any():
        window_rows = np.flatnonzero(in_window)
        best = int(window_rows[np.argmin(curve["ratio"].to_numpy()[window_rows])])
        summary.update(
            value=float(curve["ratio"].iloc[best]),
            epsilon=float(curve["epsilon"].iloc[best]),
            delta_star=float(curve["delta_star"].iloc[best]),
        )
        low = int(window_rows[0])  # the smallest level in the window: r at Q_low (when Q_low is a level)
        summary["at_lower_quantile"] = {
            "value": float(curve["ratio"].iloc[low]),
            "epsilon": float(curve["epsilon"].iloc[low]),
            "delta_star": float(curve["delta_star"].iloc[low]),
        }
    elif levels.size == 0:
        n_positive = int(np.unique(eps[eps > 0]).size)
        summary["undefined_reason"] = (
            f"{n_positive} distinct positive epsilon level(s) among {eps.size} orbits; delta*(epsilon) needs "
            "an orbit with a larger epsilon, so no level has a finite delta* (N = 2 always ends here)"
        )
    else:
        summary["undefined_reason"] = (
            f"none of the {levels.size} curve levels lies in the quantile window "
            f"[{epsilon_low!r}, {epsilon_high!r}]"
        )
    return curve, summary
