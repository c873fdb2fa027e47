"""Tests of resdyn.shadowing against plain float64 loops and a hand-worked example (method §3.2)."""

from __future__ import annotations

import math

import h5py
import numpy as np
import pandas as pd
import pytest

from resdyn.artifacts import CURVE_COLUMNS, Shadowing, save_shadowing_curve
from resdyn.figures import plot_shadowing_curve
from resdyn.io import InputError
from resdyn.shadowing import (
    ShadowingPart,
    best_tracing,
    greedy_pseudo_orbits,
    merge_shadowing,
    shadowing_curve,
    shadowing_errors,
)

# ---------------------------------------------------------------------------------------------------
# Plain float64 references, written straight from the definitions with Python loops.


def dist(u, v) -> float:
    return math.sqrt(sum((float(a) - float(b)) ** 2 for a, b in zip(u, v)))


def nn_tables_bruteforce(probs):
    """nn_index[t, i] = argmin_{j != i} d_t(i, j) (ties: smaller j), as the pairwise stage provides."""
    n, depths, _ = probs.shape
    index = np.full((depths, n), -1, dtype=np.int64)
    distance = np.full((depths, n), np.inf)
    for t in range(depths):
        for i in range(n):
            for j in range(n):
                if j != i:
                    d = dist(probs[i, t], probs[j, t])
                    if d < distance[t, i]:
                        index[t, i], distance[t, i] = j, d
    return index, distance


def orbits_bruteforce(probs):
    """Greedy pseudo-orbits straight from the probabilities: a_{t+1} = nearest j != a_t at depth t+1."""
    n, depths, _ = probs.shape
    orbits, hops = [], []
    for i in range(n):
        orbit, orbit_hops = [i], []
        for t in range(depths - 1):
            a = orbit[-1]
            best_j, best_d = None, math.inf
            for j in range(n):
                if j != a:
                    d = dist(probs[a, t + 1], probs[j, t + 1])
                    if d < best_d:
                        best_j, best_d = j, d
            orbit.append(best_j)
            orbit_hops.append(best_d)
        orbits.append(orbit)
        hops.append(orbit_hops)
    return np.array(orbits, dtype=np.int64), np.array(hops)


def shadowing_bruteforce(probs, orbits):
    eps, b_star = [], []
    n, depths, _ = probs.shape
    for orbit in orbits:
        best_b, best_e = None, math.inf
        for b in range(n):
            e = max(dist(probs[b, t], probs[orbit[t], t]) for t in range(depths))
            if e < best_e:
                best_b, best_e = b, e
        eps.append(best_e)
        b_star.append(best_b)
    return np.array(eps), np.array(b_star, dtype=np.int64)


def best_tracing_bruteforce(eps, delta):
    best = None
    for k in range(len(eps)):
        if eps[k] > 0:
            key = (eps[k], -delta[k], k)
            if best is None or key < best:
                best = key
    return None if best is None else best[2]


def curve_bruteforce(eps, delta, q_low, q_high):
    rows = []
    for level in sorted({e for e in eps if e > 0}):
        above = [delta[k] for k in range(len(eps)) if eps[k] > level]
        if above:
            rows.append((level, min(above), min(above) / level))
    ordered = sorted(eps)
    low = ordered[math.floor(q_low * (len(eps) - 1))]
    high = ordered[math.ceil(q_high * (len(eps) - 1))]
    window = [row for row in rows if low <= row[0] <= high]
    best = min(window, key=lambda row: (row[2], row[0])) if window else None
    return rows, (low, high), best


def random_probs(rng, n, depths, classes, scale=3.0):
    logits = rng.normal(scale=scale, size=(n, depths, classes))
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def full_pipeline(probs, shards=1, chunk=7):
    index, distance = nn_tables_bruteforce(probs)
    orbits, hops = greedy_pseudo_orbits(index, distance)
    n = probs.shape[0]
    bounds = np.linspace(0, n, shards + 1).astype(int)
    parts = [
        ShadowingPart(int(a), int(b), *shadowing_errors(probs, orbits, int(a), int(b), chunk=chunk))
        for a, b in zip(bounds[:-1], bounds[1:])
    ]
    eps, b_star = merge_shadowing(parts[::-1], n_orbits=n)
    return orbits, hops, eps, b_star


def check_against_bruteforce(probs, q_low=0.05, q_high=0.95):
    orbits, hops, eps, b_star = full_pipeline(probs, shards=3)
    ref_orbits, ref_hops = orbits_bruteforce(probs)
    np.testing.assert_array_equal(orbits, ref_orbits)
    np.testing.assert_allclose(hops, ref_hops, rtol=1e-12, atol=1e-15)
    ref_eps, ref_b = shadowing_bruteforce(probs, ref_orbits)
    np.testing.assert_allclose(eps, ref_eps, rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(b_star, ref_b)

    delta = hops.max(axis=1)
    paper = best_tracing(eps, delta, orbits, b_star)
    k = best_tracing_bruteforce(list(eps), list(delta))
    assert paper["orbit_start"] == k
    assert paper["value"] == pytest.approx(delta[k] / eps[k], rel=1e-12)
    assert paper["orbit"] == list(orbits[k]) and paper["shadow_image"] == b_star[k]

    curve, summary = shadowing_curve(eps, delta, q_low, q_high)
    rows, (low, high), best = curve_bruteforce(list(eps), list(delta), q_low, q_high)
    assert list(curve.columns) == CURVE_COLUMNS
    np.testing.assert_array_equal(curve.to_numpy(), np.array(rows).reshape(-1, 3))
    assert summary["quantiles"]["epsilon_low"] == low and summary["quantiles"]["epsilon_high"] == high
    if best is None:
        assert summary["value"] is None and summary["undefined_reason"]
    else:
        assert (summary["epsilon"], summary["delta_star"], summary["value"]) == best
    return orbits, hops, eps, b_star, paper, summary


# ---------------------------------------------------------------------------------------------------
# Random and adversarial data against the brute force.


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_matches_bruteforce(seed):
    rng = np.random.default_rng(seed)
    probs = random_probs(rng, n=int(rng.integers(20, 35)), depths=int(rng.integers(2, 6)), classes=4)
    _, _, eps, _, paper, summary = check_against_bruteforce(probs)
    assert (eps > 0).all() and paper["value"] is not None and summary["value"] is not None


def test_near_duplicates_at_1e7_match_bruteforce():
    rng = np.random.default_rng(5)
    base = random_probs(rng, n=12, depths=4, classes=5)
    near = base[:6] + rng.normal(scale=1e-7, size=base[:6].shape)  # distances ~1e-7, not renormalised
    probs = np.concatenate([base, near, base[6:8] + 3e-7])
    _, hops, eps, _, _, _ = check_against_bruteforce(probs)
    assert hops.min() < 1e-6 and eps.min() < 1e-6  # the tiny scale really is exercised


def test_exact_duplicates_give_exactly_shadowed_orbits():
    rng = np.random.default_rng(7)
    base = random_probs(rng, n=10, depths=4, classes=3)
    probs = np.concatenate([base, base[:3]])  # images 10, 11, 12 repeat images 0, 1, 2
    orbits, hops, eps, b_star, paper, summary = check_against_bruteforce(probs)
    for i in (0, 1, 2, 10, 11, 12):
        # A duplicated image's nearest neighbour is its twin at every depth, so the orbit hops between
        # the two twins with δ = 0 and the twin with the smaller index shadows it exactly.
        assert eps[i] == 0.0 and hops[i].max() == 0.0 and b_star[i] == i % 10
    assert paper["n_exactly_shadowed"] == 6
    assert paper["epsilon"] > 0 and paper["orbit_start"] not in (0, 1, 2, 10, 11, 12)
    assert summary["n_levels"] == len(set(eps[eps > 0])) - 1


def test_all_images_identical_paper_and_curve_are_undefined_not_nan():
    probs = np.tile(random_probs(np.random.default_rng(3), 1, 3, 4), (4, 1, 1))
    orbits, hops, eps, b_star = full_pipeline(probs)
    # Every distance is 0: nearest j != i is j = 0 (or 1 for i = 0), all hops and errors vanish.
    np.testing.assert_array_equal(orbits[:, 1], [1, 0, 0, 0])
    assert (eps == 0).all() and (hops == 0).all()
    paper = best_tracing(eps, hops.max(axis=1), orbits, b_star)
    assert paper["value"] is None and "exactly shadowed" in paper["undefined_reason"]
    assert paper["orbit_start"] == 0 and paper["n_exactly_shadowed"] == 4
    curve, summary = shadowing_curve(eps, hops.max(axis=1))
    assert len(curve) == 0 and summary["value"] is None and summary["undefined_reason"]


def test_two_images():
    # N = 2: both orbits alternate 0,1,0,... and 1,0,1,...; each is shadowed equally well by image 0 or 1,
    # so ε_0 = ε_1 = min(max over odd t, max over even t of d_t(0, 1)) and δ_0 = δ_1 = max_{t>=1} d_t(0, 1).
    p = np.array([[0.5, 0.5], [0.25, 0.75], [0.75, 0.25], [0.5, 0.5]])  # image 0 over t = 0..3
    q = np.array([[0.5, 0.5], [0.5, 0.5], [0.5, 0.5], [0.125, 0.875]])  # image 1
    probs = np.stack([p, q])
    orbits, hops, eps, b_star, paper, summary = check_against_bruteforce(probs)
    s2 = math.sqrt(2)
    # d_t(0, 1) = sqrt(2)·(0, 1/4, 1/4, 3/8); odd t: max 3/8, even t: max 1/4.
    np.testing.assert_array_equal(orbits, [[0, 1, 0, 1], [1, 0, 1, 0]])
    np.testing.assert_allclose(hops, s2 * np.array([[0.25, 0.25, 0.375]] * 2), rtol=1e-15)
    np.testing.assert_allclose(eps, [s2 / 4, s2 / 4], rtol=1e-15)
    # orbit 0 = (p0, q1, p2, q3) is within sqrt(2)/4 of image 1 (odd depths match it exactly) — and
    # of image 0 (even depths match it) at sqrt(2)·3/8; so b* = 1. Orbit 1 mirrors it with b* = 0.
    np.testing.assert_array_equal(b_star, [1, 0])
    assert paper["orbit_start"] == 0 and paper["value"] == pytest.approx(1.5, rel=1e-15)
    # One shared ε level, the largest: δ* is undefined there, so the curve estimate is undefined.
    assert summary["value"] is None and summary["n_levels"] == 0 and "N = 2" in summary["undefined_reason"]


def test_single_depth_step_and_shard_counts_agree():
    rng = np.random.default_rng(11)
    probs = random_probs(rng, n=17, depths=2, classes=3)  # T = 1
    reference = full_pipeline(probs, shards=1, chunk=64)
    for shards, chunk in ((2, 1), (5, 3), (17, 4)):
        for got, want in zip(full_pipeline(probs, shards=shards, chunk=chunk), reference):
            np.testing.assert_array_equal(got, want)  # bit-identical for any split and chunk size
    check_against_bruteforce(probs)


# ---------------------------------------------------------------------------------------------------
# A hand-worked example: four images, T = 2, two classes. Probability vectors are (x, 1 − x) with
# x = k/16, so every distance is exactly sqrt(2)·|Δk|/16; below, distances are in units u = sqrt(2)/16.
#
#   image   k at t=0  t=1  t=2
#   A = 0       2      4    6
#   B = 1       3      6   10
#   C = 2      10      8    9
#   D = 3      14     13   11
#
# Nearest neighbours. Depth 1 (4, 6, 8, 13): A→B (2); B→A (2, tie with C → smaller index A); C→B (2);
# D→C (5). Depth 2 (6, 10, 9, 11): A→C (3); B→C (1, tie with D → C); C→B (1); D→B (1).
# Greedy orbits a_0 a_1 a_2 with hops (δ_0 = d_1(a_0, a_1), δ_1 = d_2(a_1, a_2)):
#   from A: A B C, hops (2, 1), δ = 2, q = (2, 6, 9)
#   from B: B A C, hops (2, 3), δ = 3, q = (3, 4, 9)
#   from C: C B C, hops (2, 1), δ = 2, q = (10, 6, 9)
#   from D: D C B, hops (5, 1), δ = 5, q = (14, 8, 10)
# Shadowing error max_t |k_t(b) − q_t| for b = A, B, C, D:
#   from A: 3, 1, 8, 12 → ε = 1, b* = B
#   from B: 3, 2, 7, 11 → ε = 2, b* = B
#   from C: 8, 7, 2, 7  → ε = 2, b* = C
#   from D: 12, 11, 4, 5 → ε = 4, b* = C
# Paper estimate: smallest ε = 1 (orbit from A), δ = 2: Sh = 2 (ε = u, δ = 2u).
# Curve: levels 1, 2, 4. δ*(1) = min δ over ε_k > 1 = min(3, 2, 5) = 2, r = 2; δ*(2) = 5 (orbit D),
# r = 2.5; level 4 is the largest, δ* undefined, dropped. Sorted ε = (1, 2, 2, 4):
#   q = (0.05, 0.95): window [ε_(0), ε_(3)] = [1, 4] → Sh_curve = min(2, 2.5) = 2 at ε = u;
#   q = (0.5, 0.95): window [ε_(⌊1.5⌋ = 1), ε_(3)] = [2, 4] → Sh_curve = 2.5 at ε = 2u, δ* = 5u.

HAND_K = np.array([[2, 4, 6], [3, 6, 10], [10, 8, 9], [14, 13, 11]], dtype=np.float64) / 16
HAND_PROBS = np.stack([HAND_K, 1 - HAND_K], axis=-1)
U = math.sqrt(2) / 16


def test_hand_built_example():
    orbits, hops, eps, b_star = full_pipeline(HAND_PROBS, shards=2, chunk=1)
    np.testing.assert_array_equal(orbits, [[0, 1, 2], [1, 0, 2], [2, 1, 2], [3, 2, 1]])
    np.testing.assert_allclose(hops / U, [[2, 1], [2, 3], [2, 1], [5, 1]], rtol=1e-14)
    np.testing.assert_allclose(eps / U, [1, 2, 2, 4], rtol=1e-14)
    np.testing.assert_array_equal(b_star, [1, 1, 2, 2])
    delta = hops.max(axis=1)

    paper = best_tracing(eps, delta, orbits, b_star)
    assert paper["orbit_start"] == 0 and paper["orbit"] == [0, 1, 2] and paper["shadow_image"] == 1
    assert paper["value"] == pytest.approx(2.0, rel=1e-14)
    assert paper["epsilon"] == pytest.approx(U, rel=1e-14) and paper["delta"] == pytest.approx(
        2 * U, rel=1e-14
    )
    assert paper["undefined_reason"] is None and paper["n_exactly_shadowed"] == 0

    curve, summary = shadowing_curve(eps, delta)
    np.testing.assert_allclose(curve["epsilon"] / U, [1, 2], rtol=1e-14)
    np.testing.assert_allclose(curve["delta_star"] / U, [2, 5], rtol=1e-14)
    np.testing.assert_allclose(curve["ratio"], [2, 2.5], rtol=1e-14)
    assert summary["value"] == pytest.approx(2.0, rel=1e-14) and summary["epsilon"] == pytest.approx(U)
    assert summary["quantiles"]["epsilon_low"] == pytest.approx(U)
    assert summary["quantiles"]["epsilon_high"] == pytest.approx(4 * U)

    _, narrow = shadowing_curve(eps, delta, q_low=0.5, q_high=0.95)
    assert narrow["value"] == pytest.approx(2.5, rel=1e-14)
    assert narrow["epsilon"] == pytest.approx(2 * U) and narrow["delta_star"] == pytest.approx(5 * U)
    check_against_bruteforce(HAND_PROBS)
    check_against_bruteforce(HAND_PROBS, q_low=0.5, q_high=0.95)


# ---------------------------------------------------------------------------------------------------
# Tie rules of the two estimates.


def test_best_tracing_ties_prefer_larger_delta_then_smaller_start():
    eps = np.array([0.3, 0.1, 0.1, 0.1, 0.0])
    delta = np.array([0.9, 0.2, 0.4, 0.4, 0.7])
    orbits = np.arange(10).reshape(5, 2)
    paper = best_tracing(eps, delta, orbits, np.array([4, 3, 2, 1, 0]))
    assert paper["orbit_start"] == 2 and paper["orbit"] == [4, 5] and paper["shadow_image"] == 2
    assert paper["value"] == pytest.approx(4.0) and paper["n_exactly_shadowed"] == 1


def test_curve_ties_and_window_edges():
    eps = np.array([0.1, 0.2, 0.2, 0.4, 0.8, 0.0])
    delta = np.array([0.5, 0.3, 0.6, 0.8, 0.1, 0.05])
    curve, summary = shadowing_curve(eps, delta, 0.0, 1.0)
    # δ*(0.1) = min(0.3, 0.6, 0.8, 0.1) = 0.1; δ*(0.2) = min(0.8, 0.1) = 0.1; δ*(0.4) = 0.1; 0.8 dropped.
    np.testing.assert_allclose(curve["epsilon"], [0.1, 0.2, 0.4])
    np.testing.assert_allclose(curve["delta_star"], [0.1, 0.1, 0.1])
    assert summary["value"] == pytest.approx(0.25) and summary["epsilon"] == 0.4
    # Equal ratios: the smaller ε wins.
    eps_tie = np.array([1.0, 2.0, 3.0])
    delta_tie = np.array([9.0, 2.0, 4.0])  # δ*(1) = 2 → r 2; δ*(2) = 4 → r 2
    _, tie = shadowing_curve(eps_tie, delta_tie, 0.0, 1.0)
    assert tie["value"] == 2.0 and tie["epsilon"] == 1.0
    # A window holding only the largest level has no defined ratio.
    _, empty = shadowing_curve(eps_tie, delta_tie, 1.0, 1.0)
    assert empty["value"] is None and "window" in empty["undefined_reason"]
    with pytest.raises(ValueError, match="q_low"):
        shadowing_curve(eps_tie, delta_tie, 0.9, 0.1)


# ---------------------------------------------------------------------------------------------------
# Bad input, files.


def test_bad_tables_and_inputs_raise_with_the_culprit_named():
    index, distance = nn_tables_bruteforce(HAND_PROBS)
    unmerged = index.copy()
    unmerged[2, 3] = -1
    with pytest.raises(InputError, match="depth 2, image 3"):
        greedy_pseudo_orbits(unmerged, distance)
    self_loop = index.copy()
    self_loop[1, 0] = 0
    with pytest.raises(InputError, match="depth 1, image 0"):
        greedy_pseudo_orbits(self_loop, distance)
    with pytest.raises(InputError, match="T >= 1"):
        greedy_pseudo_orbits(index[:1], distance[:1])
    with pytest.raises(InputError, match="N >= 2"):
        greedy_pseudo_orbits(index[:, :1], distance[:, :1])
    orbits, _ = greedy_pseudo_orbits(index, distance)
    with pytest.raises(InputError, match="orbit range"):
        shadowing_errors(HAND_PROBS, orbits, 3, 5, chunk=512)
    with pytest.raises(InputError, match="epsilon\\[1\\]"):
        best_tracing(np.array([0.1, np.nan]), np.array([0.1, 0.2]), orbits[:2], np.array([0, 1]))
    with pytest.raises(InputError, match="expected 2"):
        merge_shadowing([(0, 2, np.zeros(2), np.zeros(2)), (3, 4, np.zeros(1), np.zeros(1))])
    with pytest.raises(InputError, match="expected 0..5"):
        merge_shadowing([(0, 4, np.zeros(4), np.zeros(4))], n_orbits=5)


def test_save_load_roundtrip_and_corruption(tmp_path):
    orbits, hops, eps, b_star = full_pipeline(HAND_PROBS)
    path = tmp_path / "shadowing.h5"
    Shadowing(orbits, hops, eps, b_star, attrs={"dataset": "hand", "model": "toy"}).save(path)
    loaded = Shadowing.load(path)
    np.testing.assert_array_equal(loaded.orbits, orbits)
    np.testing.assert_array_equal(loaded.hops, hops)
    np.testing.assert_array_equal(loaded.delta, hops.max(axis=1))
    np.testing.assert_array_equal(loaded.epsilon, eps)
    np.testing.assert_array_equal(loaded.shadow_image, b_star)
    assert loaded.attrs["dataset"] == "hand" and loaded.attrs["N"] == 4 and loaded.attrs["T"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["shadowing.h5"]  # no temporary left behind

    with h5py.File(path, "a") as handle:
        handle["delta"][0] = 99.0
    with pytest.raises(InputError, match="/delta"):
        Shadowing.load(path)
    with h5py.File(path, "a") as handle:
        del handle["epsilon"]
    with pytest.raises(InputError, match="epsilon"):
        Shadowing.load(path)


def test_curve_csv_and_plot(tmp_path):
    rng = np.random.default_rng(2)
    _, hops, eps, _ = full_pipeline(random_probs(rng, 30, 4, 4))
    curve, summary = shadowing_curve(eps, hops.max(axis=1))
    save_shadowing_curve(tmp_path / "curve.csv", curve)
    back = pd.read_csv(tmp_path / "curve.csv", float_precision="round_trip")
    assert list(back.columns) == CURVE_COLUMNS
    np.testing.assert_array_equal(back.to_numpy(), curve.to_numpy())  # %.17g round-trips exactly
    plot_shadowing_curve(curve, summary, tmp_path / "curve.png")
    assert (tmp_path / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    empty_curve, empty_summary = shadowing_curve(np.array([0.5, 0.5]), np.array([0.1, 0.1]))
    plot_shadowing_curve(empty_curve, empty_summary, tmp_path / "empty.png")
    assert (tmp_path / "empty.png").stat().st_size > 0


def test_best_tracing_with_the_start_as_shadow_can_be_below_one():
    """Method §3.2: with shadow = start, ε and δ are both ≥ the first hop δ_0, but Sh is no bound. Here the
    best-traced orbit A → B → C hops 0.02 then 0.03 (δ = 0.03·√2), but C sits 0.05 from A at t = 2, so its
    own start shadows it with ε = 0.05·√2 (attained at t = 2, not at the first hop) and Sh = 0.6 < 1 (a
    hold-out run gave ε = 1.034e-5 at t = 2, δ = 6.741e-6, Sh = 0.6518). Two classes: p = (u, 1 − u), so
    d_t = √2·|Δu|; the depth-0 values are 0.3 apart, so no other image shadows an orbit closely."""
    from resdyn.distances import scan_orbits

    u = np.array(
        [  # depth 0, 1, 2 for images A, B, C, D
            [0.1, 0.20, 0.38],
            [0.4, 0.22, 0.30],
            [0.7, 0.80, 0.33],
            [1.0, 0.23, 0.39],
        ]
    )
    probs = np.stack([u, 1 - u], axis=2)
    orbits, hops = scan_orbits(probs, 0, 4, distinct=False)
    nn_index, nn_distance = nn_tables_bruteforce(probs)
    np.testing.assert_array_equal(orbits, greedy_pseudo_orbits(nn_index, nn_distance)[0])
    eps, b_star = shadowing_errors(probs, orbits, 0, 4, chunk=4)
    best = best_tracing(eps, hops.max(axis=1), orbits, b_star)
    assert best["orbit"] == [0, 1, 2] and best["shadow_is_start"]
    assert best["epsilon"] == pytest.approx(0.05 * math.sqrt(2), rel=1e-9)
    assert best["delta"] == pytest.approx(0.03 * math.sqrt(2), rel=1e-9)
    # ε is attained at t = 2, above the first hop δ_0 = d_1(A, B) = 0.02·√2
    assert dist(probs[0, 2], probs[2, 2]) == pytest.approx(best["epsilon"], rel=1e-12)
    assert best["epsilon"] > hops[0, 0]
    assert best["value"] == pytest.approx(0.6, rel=1e-9) and best["value"] < 1
