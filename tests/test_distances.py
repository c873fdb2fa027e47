"""Exactness of the pairwise stage and of min_max_distance against the plain float64 brute force.

Every fast path must give the brute force's values (relative 1e-12; in fact bitwise, by construction) and
the same argmin pairs under the tie rule (smaller value, then the lexicographically smaller (i, j)), for
any shard count, on random and adversarial inputs (method §3.1, §6; issue 3 "Exactness").
"""

from __future__ import annotations

import math
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest

from resdyn import distances
from resdyn.artifacts import Pairs
from resdyn.distances import (
    PairwiseResult,
    _pairwise_torch,
    merge_pairwise,
    min_max_distance,
    min_max_distance_bruteforce,
    pairwise_bruteforce,
    pairwise_shard,
    shard_rows,
)
from resdyn.io import InputError

VALUE_FIELDS = ("E", "E_mean", "depth_min", "nn_distance")
INDEX_FIELDS = ("E_pair", "E_t_star", "E_mean_pair", "depth_min_pair", "nn_index", "expansive_pair")


def random_trajectories(rng, n, depths=5, classes=4, concentration=1.0):
    probs = rng.dirichlet(np.full(classes, concentration), size=(n, depths))
    labels = rng.integers(0, classes, n)
    labels[:classes] = np.arange(classes)  # every class present
    return probs, labels


def assert_same(fast: PairwiseResult, ref: PairwiseResult, bitwise: bool = False) -> None:
    for name in VALUE_FIELDS:
        a, b = getattr(fast, name), getattr(ref, name)
        assert np.array_equal(np.isnan(a), np.isnan(b)), name
        if bitwise:
            assert np.array_equal(a, b, equal_nan=True), name
        else:
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=0, err_msg=name)
    for name in INDEX_FIELDS:
        np.testing.assert_array_equal(getattr(fast, name), getattr(ref, name), err_msg=name)
    assert fast.expansive_t_star == ref.expansive_t_star
    if bitwise:
        assert fast.expansive == ref.expansive or (np.isnan(fast.expansive) and np.isnan(ref.expansive))
    else:
        assert fast.expansive == pytest.approx(ref.expansive, rel=1e-12, abs=0, nan_ok=True)


CHUNK = 512  # the config default (schemas/config.schema.yaml analysis.chunk)


def sharded(probs, labels, n_classes, n_shards, chunk=16):
    n = len(labels)
    parts = [
        pairwise_shard(
            probs, labels, *shard_rows(n, n_shards, k), n_classes=n_classes, chunk=chunk, device="cpu"
        )
        for k in range(n_shards)
    ]
    return merge_pairwise(parts)


# ------------------------------------------------------------------------------------------ shard_rows


@pytest.mark.parametrize("n", [2, 3, 10, 101, 1000])
@pytest.mark.parametrize("n_shards", [1, 2, 3, 7, 16])
def test_shard_rows_tile_and_balance_pairs(n, n_shards):
    bounds = [shard_rows(n, n_shards, k) for k in range(n_shards)]
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(bounds[k][1] == bounds[k + 1][0] for k in range(n_shards - 1))
    pairs = [sum(n - 1 - i for i in range(a, b)) for a, b in bounds]
    ideal = n * (n - 1) / 2 / n_shards
    # a boundary can be off by at most one row, i.e. at most N−1 pairs
    assert max(abs(p - ideal) for p in pairs) <= n - 1 + 1e-9


def test_shard_rows_rejects_bad_arguments():
    with pytest.raises(ValueError, match="shard 3 of 3"):
        shard_rows(10, 3, 3)
    with pytest.raises(ValueError):
        shard_rows(10, 0, 0)


# -------------------------------------------------------------------------------- pairwise exactness


@pytest.mark.parametrize("seed", [0, 1])
def test_every_shard_count_equals_bruteforce(seed):
    rng = np.random.default_rng(seed)
    probs, labels = random_trajectories(rng, 53, depths=6, classes=4)
    ref = pairwise_bruteforce(probs, labels, 4)
    for n_shards in range(1, 8):
        assert_same(sharded(probs, labels, 4, n_shards, chunk=8 + n_shards), ref)


def test_values_are_bitwise_equal_to_bruteforce():
    rng = np.random.default_rng(7)
    probs, labels = random_trajectories(rng, 80, depths=7, classes=5, concentration=0.3)
    assert_same(sharded(probs, labels, 5, 3, chunk=32), pairwise_bruteforce(probs, labels, 5), bitwise=True)


def test_near_duplicates_1e7_apart_are_exact():
    rng = np.random.default_rng(3)
    probs, labels = random_trajectories(rng, 40, depths=5, classes=3)
    # image 1 = image 0 moved by exactly representable offsets: d_t = 1e-7·‖(1, −1, 0)‖ = √2·1e-7 per depth
    probs[1] = probs[0]
    probs[1, :, 0] += 1e-7
    probs[1, :, 1] -= 1e-7
    labels[0], labels[1] = 0, 1
    probs[2] = probs[0]
    probs[2, 3, 2] += 3e-7  # a same-class near-duplicate of image 0 (d = 3e-7 at depth 3 only)
    labels[2] = 0
    ref = pairwise_bruteforce(probs, labels, 3)
    for n_shards in (1, 4):
        fast = sharded(probs, labels, 3, n_shards)
        assert_same(fast, ref, bitwise=True)
        assert tuple(fast.expansive_pair) == (0, 1)
        expected = np.sqrt(np.sum((probs[1] - probs[0]) ** 2, axis=1)).max()
        assert fast.expansive == pytest.approx(expected, rel=1e-12)
        assert fast.expansive == pytest.approx(np.sqrt(2) * 1e-7, rel=1e-8)
        assert fast.nn_index[3, 0] == 1 and fast.nn_index[0, 0] == 2  # d_0(0, 2) = 0 < d_0(0, 1)


def test_expansion_formula_would_have_failed_here():
    """Guard on the premise of method §6: ‖u‖² + ‖v‖² − 2u·v is far from the 1e-12 tolerance at ~1e-7
    in float64 (and loses such a distance entirely in float32); the stage computes from differences."""
    u = np.array([0.3, 0.5, 0.2])
    v = u + np.array([1e-7, -1e-7, 0.0])
    expanded = np.sqrt(max(u @ u + v @ v - 2 * u @ v, 0.0))
    direct = np.sqrt(np.sum((u - v) ** 2))
    assert abs(expanded - direct) / direct > 1e-6
    u32, v32 = u.astype(np.float32), v.astype(np.float32)
    assert abs(np.sqrt(max(u32 @ u32 + v32 @ v32 - 2 * u32 @ v32, 0.0)) - direct) / direct > 0.5
    probs = np.stack([np.tile(u, (2, 1)), np.tile(v, (2, 1))])
    result = pairwise_shard(probs, np.array([0, 1]), 0, 2, n_classes=2, chunk=CHUNK, device="cpu")
    assert result.expansive == direct


def test_exact_ties_from_duplicated_rows():
    rng = np.random.default_rng(11)
    probs, labels = random_trajectories(rng, 30, depths=4, classes=3)
    probs[[5, 9, 17, 23]] = probs[2]  # duplicates of image 2, in several classes
    labels[[2, 5, 9, 17, 23]] = [0, 1, 1, 2, 0]
    probs[[12, 27]] = probs[4]
    ref = pairwise_bruteforce(probs, labels, 3)
    assert ref.expansive == 0.0 and tuple(ref.expansive_pair) == (2, 5)
    for n_shards in range(1, 8):
        assert_same(sharded(probs, labels, 3, n_shards, chunk=4), ref, bitwise=True)


def test_all_distances_tied():
    # two distinct points per depth: every different-class pair has the same value, so only the tie rule
    # decides; the lexicographically smallest pair must win everywhere
    n = 12
    probs = np.zeros((n, 3, 2))
    probs[:, :, 0] = np.where(np.arange(n) % 2 == 0, 0.25, 0.75)[:, None]
    probs[:, :, 1] = 1 - probs[:, :, 0]
    labels = np.arange(n) % 3
    ref = pairwise_bruteforce(probs, labels, 3)
    for n_shards in (1, 2, 5, 7):
        assert_same(sharded(probs, labels, 3, n_shards, chunk=3), ref, bitwise=True)


BLOCKINGS = [(1, 16, True), (1, 5, False), (4, 8, True), (16, 128, False), (3, 7, False), (5, 3, True)]


@pytest.mark.parametrize("rtile, jblock, mean_bound", BLOCKINGS)
def test_every_kernel_blocking_is_bitwise_equal_to_bruteforce(monkeypatch, rtile, jblock, mean_bound):
    """Row tiles (the wide-head path of issue 20), column blocks and the Ē bound change only the order in
    which pairs are visited: on tie-heavy inputs (duplicated rows across classes, all distances tied) and
    on random ones every blocking gives the brute force's bits and its tie-broken pairs, for any shard
    count."""
    monkeypatch.setattr(distances, "kernel_blocking", lambda c, chunk, n: (rtile, jblock, mean_bound))
    rng = np.random.default_rng(11)
    probs, labels = random_trajectories(rng, 30, depths=4, classes=3)
    probs[[5, 9, 17, 23]] = probs[2]
    labels[[2, 5, 9, 17, 23]] = [0, 1, 1, 2, 0]
    probs[[12, 27]] = probs[4]
    n = 12
    tied = np.zeros((n, 3, 2))
    tied[:, :, 0] = np.where(np.arange(n) % 2 == 0, 0.25, 0.75)[:, None]
    tied[:, :, 1] = 1 - tied[:, :, 0]
    wide_p, wide_y = random_trajectories(rng, 45, depths=3, classes=7, concentration=0.2)
    wide_p[[30, 31, 32]] = wide_p[3]  # ties across three classes
    cases = [(probs, labels, 3), (tied, np.arange(n) % 3, 3), (wide_p, wide_y, 7)]
    if rtile >= 3:
        # a tie that a tile visits out of lexicographic order: rows 0 and 2 share a tile, and in column
        # lane 0 the kernel sees (2, 1 + jblock) before (0, 1 + 2·jblock); both are 0 and of classes {0, 1}
        m = max(2 * jblock + 10, 150)  # so that rows 0..2 share the first row block of the kernel
        lane_p, lane_y = random_trajectories(rng, m, depths=3, classes=3)
        late, early = 1 + 2 * jblock, 1 + jblock
        lane_p[late], lane_p[early] = lane_p[0], lane_p[2]
        lane_y[[0, 2, late, early]] = [0, 0, 1, 1]
        ref = pairwise_bruteforce(lane_p, lane_y, 3)
        assert ref.expansive == 0.0 and tuple(ref.E_pair[0, 1]) == (0, late)
        cases.append((lane_p, lane_y, 3))
    for p, y, n_cls in cases:
        ref = pairwise_bruteforce(p, y, n_cls)
        for n_shards in (1, 2, 5):
            assert_same(sharded(p, y, n_cls, n_shards), ref, bitwise=True)


def test_wide_head_drops_the_mean_bound_and_stays_exact():
    """C = 40: the kernel runs without the Ē bound, on near-one-hot probabilities with near-duplicates
    1e-9 apart across classes; bitwise the brute force."""
    assert distances.kernel_blocking(40, 512, 90) == (distances.ROW_TILE, 90, False)
    assert distances.kernel_blocking(10, 512, 900) == (distances.ROW_TILE, distances.TILE_COLUMNS, True)
    rng = np.random.default_rng(4)
    probs, labels = random_trajectories(rng, 90, depths=5, classes=40, concentration=0.05)
    probs[60:70] = probs[0:10]
    probs[60:70, :, 0] += 1e-9
    probs[60:70, :, 1] -= 1e-9
    labels[60:70] = (labels[0:10] + 1) % 40
    ref = pairwise_bruteforce(probs, labels, 40)
    for n_shards in (1, 3):
        assert_same(sharded(probs, labels, 40, n_shards, chunk=256), ref, bitwise=True)


def test_two_images():
    probs = np.array([[[0.9, 0.1], [0.6, 0.4]], [[0.2, 0.8], [0.5, 0.5]]])
    labels = np.array([1, 0])
    result = sharded(probs, labels, 2, 2)
    assert_same(result, pairwise_bruteforce(probs, labels, 2), bitwise=True)
    d = np.sqrt(np.sum((probs[0] - probs[1]) ** 2, axis=1))
    assert result.expansive == d.max() and result.expansive_t_star == 0
    assert result.E[0, 1] == result.E[1, 0] == d.max()
    assert np.isnan(result.E[0, 0]) and tuple(result.E_pair[0, 0]) == (-1, -1)
    np.testing.assert_array_equal(result.nn_index, [[1, 0], [1, 0]])


def test_class_with_one_image_and_an_absent_class():
    rng = np.random.default_rng(5)
    probs, labels = random_trajectories(rng, 25, depths=4, classes=3)
    labels[labels == 2] = 0
    labels[13] = 2  # the only image of class 2; class 3 of n_classes = 4 never occurs
    ref = pairwise_bruteforce(probs, labels, 4)
    for n_shards in (1, 3, 6):
        fast = sharded(probs, labels, 4, n_shards)
        assert_same(fast, ref)
    assert np.isnan(ref.E[3]).all() and np.isnan(ref.E[:, 3]).all()
    assert 13 in ref.E_pair[0, 2] and 13 in ref.E_pair[2, 1]


def test_single_class_leaves_the_class_statistics_undefined():
    """One label: no different-class pair, so e, E, Ē and m_t are NaN (pair −1), exactly as the brute force
    says, for any shard count; the nearest neighbours (which need no labels) are still complete."""
    probs = np.random.default_rng(0).dirichlet(np.ones(3), size=(6, 2))
    labels = np.full(6, 2)
    ref = pairwise_bruteforce(probs, labels, 3)
    assert np.isnan(ref.expansive) and list(ref.expansive_pair) == [-1, -1] and ref.expansive_t_star == -1
    assert np.isnan(ref.E).all() and np.isnan(ref.depth_min).all() and (ref.depth_min_pair == -1).all()
    assert (ref.nn_index >= 0).all()
    for n_shards in (1, 4):
        assert_same(sharded(probs, labels, 3, n_shards), ref)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda p, y: (p, np.array([0, 1, 5, 0])), "outside 0..2"),
        (lambda p, y: (np.where(np.arange(4)[:, None, None] == 1, np.nan, p), y), r"probs\[1, 0, 0\]"),
        (lambda p, y: (p[:, 0], y), r"\(N, T\+1, C\)"),
        (lambda p, y: (p, y[:3]), "labels must be"),
        (lambda p, y: (p[:1], y[:1]), "N >= 2"),
    ],
)
def test_bad_input_names_the_problem(mutate, message):
    probs = np.random.default_rng(0).dirichlet(np.ones(3), size=(4, 2))
    labels = np.array([0, 1, 2, 0])
    probs, labels = mutate(probs, labels)
    with pytest.raises(InputError, match=message):
        pairwise_shard(probs, labels, 0, len(labels), n_classes=3, chunk=CHUNK, device="cpu")


def test_shard_rows_out_of_range():
    probs = np.random.default_rng(0).dirichlet(np.ones(3), size=(4, 2))
    with pytest.raises(InputError, match="outside 0..4"):
        pairwise_shard(probs, np.array([0, 1, 2, 0]), 2, 5, n_classes=3, chunk=CHUNK, device="cpu")


def test_merge_is_associative_and_order_free():
    rng = np.random.default_rng(9)
    probs, labels = random_trajectories(rng, 41, depths=4, classes=3)
    parts = [
        pairwise_shard(probs, labels, *shard_rows(41, 4, k), n_classes=3, chunk=CHUNK, device="cpu")
        for k in range(4)
    ]
    left = merge_pairwise([merge_pairwise(parts[:2]), merge_pairwise(parts[2:])])
    right = merge_pairwise([parts[3], merge_pairwise([parts[1], parts[2]]), parts[0]])
    ref = pairwise_bruteforce(probs, labels, 3)
    assert_same(left, ref, bitwise=True)
    assert_same(right, ref, bitwise=True)
    assert left.n_shards == right.n_shards == 4


def test_empty_shard_is_neutral():
    rng = np.random.default_rng(2)
    probs, labels = random_trajectories(rng, 5, depths=3, classes=2)
    parts = [
        pairwise_shard(probs, labels, *shard_rows(5, 9, k), n_classes=2, chunk=CHUNK, device="cpu")
        for k in range(9)
    ]
    assert any(p.nn_index.max() < 0 for p in parts)  # S > N leaves shards without rows
    assert_same(merge_pairwise(parts), pairwise_bruteforce(probs, labels, 2), bitwise=True)


def test_torch_path_matches_bruteforce_on_cpu_tensors():
    rng = np.random.default_rng(4)
    probs, labels = random_trajectories(rng, 37, depths=5, classes=3)
    probs[8] = probs[3]
    ref = pairwise_bruteforce(probs, labels, 3)
    parts = [
        _pairwise_torch(probs, labels, *shard_rows(37, 3, k), n_classes=3, chunk=5, device="cpu")
        for k in range(3)
    ]
    assert_same(merge_pairwise(parts), ref, bitwise=True)


def test_torch_path_wide_head_with_ties_on_cpu_tensors():
    """The CUDA path's class-pair reduction (scatter_reduce over all class pairs of a chunk) on a wider
    head with exact ties across classes and chunks: bitwise the brute force, pairs tie-broken alike."""
    rng = np.random.default_rng(9)
    probs, labels = random_trajectories(rng, 61, depths=4, classes=12, concentration=0.1)
    probs[[20, 33, 47]] = probs[5]
    labels[[5, 20, 33, 47]] = [0, 1, 1, 2]
    probs[58] = probs[7]
    ref = pairwise_bruteforce(probs, labels, 12)
    for n_shards, chunk in ((1, 61), (2, 7), (3, 4)):
        parts = [
            _pairwise_torch(
                probs, labels, *shard_rows(61, n_shards, k), n_classes=12, chunk=chunk, device="cpu"
            )
            for k in range(n_shards)
        ]
        assert_same(merge_pairwise(parts), ref, bitwise=True)


@pytest.mark.slow  # a subprocess running Triton's interpreter
def test_triton_kernel_in_interpreter_is_bitwise_exact(tmp_path):
    """The fused CUDA kernel (resdyn._gpu_kernels) run by Triton's CPU interpreter inside the torch path:
    the same bits and pairs as the brute force, chunks that do not fill the 64×64 tiles included."""
    pytest.importorskip("triton")
    script = tmp_path / "run.py"
    script.write_text(
        "import numpy as np\n"
        "from resdyn.distances import _pairwise_torch, merge_pairwise, pairwise_bruteforce\n"
        "rng = np.random.default_rng(2)\n"
        "probs = rng.dirichlet(np.full(9, 0.3), size=(70, 3))\n"
        "labels = rng.integers(0, 9, 70)\n"
        "probs[50] = probs[4]\n"
        "kw = dict(n_classes=9, chunk=30, device='cpu', fused=True)\n"
        "fast = merge_pairwise([_pairwise_torch(probs, labels, 0, 3, **kw), "
        "_pairwise_torch(probs, labels, 3, 70, **kw)])\n"
        "ref = pairwise_bruteforce(probs, labels, 9)\n"
        "for key in ('E', 'E_mean', 'depth_min', 'nn_distance', 'E_pair', 'E_mean_pair', 'E_t_star',\n"
        "            'depth_min_pair', 'nn_index', 'expansive_pair'):\n"
        "    assert np.array_equal(getattr(fast, key), getattr(ref, key), equal_nan=key[0] in 'Edn'), key\n"
        "assert fast.expansive == ref.expansive\n"
        "print('identical')\n"
    )
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, timeout=600, capture_output=True, text=True
    )
    assert done.returncode == 0 and "identical" in done.stdout, done.stderr[-2000:]


# ------------------------------------------------------------------------------------------- pairs.h5


def test_save_load_roundtrip(tmp_path):
    rng = np.random.default_rng(1)
    probs, labels = random_trajectories(rng, 20, depths=3, classes=3)
    result = sharded(probs, labels, 3, 2)
    path = tmp_path / "pairs.h5"
    Pairs(result, "true").save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["pairs.h5"]
    artifact = Pairs.load(path)
    loaded = artifact.result
    assert_same(loaded, result, bitwise=True)
    assert loaded.n_shards == 2 and artifact.labels == "true"
    with h5py.File(path) as handle:
        assert handle.attrs["N"] == 20 and handle.attrs["T"] == 2 and handle.attrs["C"] == 3
        assert handle["expansive"].attrs["i"] == result.expansive_pair[0]


def test_load_names_a_missing_key(tmp_path):
    path = tmp_path / "pairs.h5"
    with h5py.File(path, "w") as handle:
        handle.create_group("expansive")
    with pytest.raises(InputError, match="pairs.h5.*E/value"):
        Pairs.load(path)


# -------------------------------------------------------------------------------------------- close pairs


def close_cases():
    """Inputs for the close-pair list: generic, near-duplicates of different classes 1e-7 apart, exact
    ties (duplicated rows and rounded values), a larger set whose radius comes from a sample (N > 512),
    and N = 2."""
    rng = np.random.default_rng(21)
    generic, generic_labels = random_trajectories(rng, 70, depths=5, classes=4)
    near = generic.copy()
    near[1] = near[0]
    near[1, :, 0] += 1e-7
    near[1, :, 1] -= 1e-7
    near_labels = generic_labels.copy()
    near_labels[[0, 1]] = [0, 1]
    ties, ties_labels = random_trajectories(rng, 40, depths=4, classes=3)
    ties = np.round(ties, 1)
    ties[[5, 9, 17]] = ties[2]
    ties_labels[[2, 5, 9, 17]] = [0, 1, 2, 1]
    large, large_labels = random_trajectories(rng, 700, depths=3, classes=5, concentration=0.5)
    two = np.array([[[0.9, 0.1], [0.2, 0.8]], [[0.8, 0.2], [0.3, 0.7]]])
    return {
        "generic": (generic, generic_labels),
        "near_duplicates": (near, near_labels),
        "ties": (ties, ties_labels),
        "sampled_radius": (large, large_labels),
        "two_images": (two, np.array([0, 1])),
    }


def close_pairs_by_loops(probs, labels, over_depths, radius):
    """Every different-class pair i < j whose max or min over depths of d_t (sums over classes in order,
    then rooted, in plain Python) is below ``radius``, sorted by (value, i, j)."""
    n, depths, classes = probs.shape
    found = []
    for i in range(n):
        for j in range(i + 1, n):
            if labels[i] == labels[j]:
                continue
            per_depth = []
            for t in range(depths):
                total = 0.0
                for c in range(classes):
                    d = float(probs[i, t, c]) - float(probs[j, t, c])
                    total += d * d  # a product, rounded once (x ** 2 goes through pow)
                per_depth.append(math.sqrt(total))
            value = max(per_depth) if over_depths == "max" else min(per_depth)
            if value < radius:
                found.append((value, i, j))
    found.sort()
    return np.array([v for v, _, _ in found]), np.array([[i, j] for _, i, j in found], np.int64).reshape(
        -1, 2
    )


@pytest.mark.parametrize("case", list(close_cases()))
@pytest.mark.parametrize("over_depths", ["max", "min"])
def test_close_pairs_equal_the_plain_loops(case, over_depths):
    """The pass's close pairs (numba kernel, 1 and 3 shards merged; the torch path on CPU tensors; the
    brute-force reference) are every different-class pair below the radius, in (value, i, j) order, bit
    for bit; the radius is the sampled estimate, the same in every shard."""
    probs, labels = close_cases()[case]
    n, classes = len(labels), int(labels.max()) + 1
    radius, _ = distances.close_radius(probs, labels, over_depths)
    assert radius > 0
    if case != "sampled_radius":
        value, pair = close_pairs_by_loops(probs, labels, over_depths, radius)
    else:  # 245,000 pairs: the vectorised reference, itself checked against the loops on the cases above
        ref = pairwise_bruteforce(probs, labels, classes, close=over_depths)
        value, pair = ref.close_value, ref.close_pair
        assert 0 < len(value) < n * (n - 1) // 4  # a radius from the sample, not every pair
    found = {"bruteforce": pairwise_bruteforce(probs, labels, classes, close=over_depths)}
    for shards in (1, 3):
        found[f"numba/{shards}"] = merge_pairwise(
            [
                pairwise_shard(
                    probs,
                    labels,
                    *shard_rows(n, shards, k),
                    n_classes=classes,
                    chunk=8,
                    device="cpu",
                    close=over_depths,
                )
                for k in range(shards)
            ]
        )
        found[f"torch/{shards}"] = merge_pairwise(
            [
                _pairwise_torch(
                    probs,
                    labels,
                    *shard_rows(n, shards, k),
                    n_classes=classes,
                    chunk=6,
                    device="cpu",
                    close=(over_depths, radius),
                )
                for k in range(shards)
            ]
        )
    assert len(value) >= 1
    for route, result in found.items():
        assert result.close_bound == radius, route
        np.testing.assert_array_equal(result.close_value, value, err_msg=route)
        np.testing.assert_array_equal(result.close_pair, pair, err_msg=route)
    plain = pairwise_shard(probs, labels, 0, n, n_classes=classes, chunk=8, device="cpu")
    assert math.isnan(plain.close_bound) and len(plain.close_value) == 0  # no list unless asked
    assert_same(found["numba/3"], plain, bitwise=True)  # the list changes nothing else


def test_close_pairs_past_the_cap_leave_no_list(monkeypatch):
    """A shard that records more than CLOSE_CAP pairs (the radius far off) gives no list, on either path,
    and a merge with such a shard has none."""
    probs, labels = close_cases()["generic"]
    radius, _ = distances.close_radius(probs, labels, "max")
    full = pairwise_bruteforce(probs, labels, 4, close="max")
    monkeypatch.setattr(distances, "CLOSE_CAP", len(full.close_value) - 1)
    over = pairwise_shard(probs, labels, 0, 70, n_classes=4, chunk=8, device="cpu", close="max")
    over_torch = _pairwise_torch(
        probs, labels, 0, 70, n_classes=4, chunk=8, device="cpu", close=("max", radius)
    )
    for result in (over, over_torch):
        assert math.isnan(result.close_bound) and len(result.close_value) == 0
    halves = [
        pairwise_shard(probs, labels, *shard_rows(70, 2, k), n_classes=4, chunk=8, device="cpu", close="max")
        for k in range(2)
    ]
    assert all(math.isfinite(h.close_bound) for h in halves)  # each half is within the cap
    merged = merge_pairwise([halves[0], over])
    assert math.isnan(merged.close_bound) and len(merged.close_value) == 0
    with pytest.raises(InputError, match="max or min"):
        distances.close_radius(probs, labels, "mean")


def test_pairs_h5_round_trips_the_close_pairs(tmp_path):
    probs, labels = close_cases()["ties"]
    result = sharded(probs, labels, 3, 2)
    with_list = merge_pairwise(
        [
            pairwise_shard(
                probs, labels, *shard_rows(40, 2, k), n_classes=3, chunk=8, device="cpu", close="min"
            )
            for k in range(2)
        ]
    )
    for found, name in ((with_list, "with.h5"), (result, "without.h5")):
        Pairs(found, "true").save(tmp_path / name)
        loaded = Pairs.load(tmp_path / name).result
        assert_same(loaded, found, bitwise=True)
        np.testing.assert_array_equal(loaded.close_value, found.close_value)
        np.testing.assert_array_equal(loaded.close_pair, found.close_pair)
        assert loaded.close_bound == found.close_bound or math.isnan(loaded.close_bound) == math.isnan(
            found.close_bound
        )
    with h5py.File(tmp_path / "without.h5") as handle:
        assert "close" not in handle  # older files look like this: read as no list
    with h5py.File(tmp_path / "with.h5", "r+") as handle:
        handle["close/value"][0] = handle["close"].attrs["bound"]
    with pytest.raises(InputError, match="with.h5: 'close' lists values at or above its bound"):
        Pairs.load(tmp_path / "with.h5")
    Pairs(with_list, "true").save(tmp_path / "swapped.h5")
    with h5py.File(tmp_path / "swapped.h5", "r+") as handle:
        handle["close/pair"][0] = handle["close/pair"][0][::-1]
    with pytest.raises(InputError, match="swapped.h5: 'close/pair' holds pairs outside 0 <= i < j < N = 40"):
        Pairs.load(tmp_path / "swapped.h5")


# ----------------------------------------------------------------------------------- min_max_distance


def test_min_max_distance_random_and_orbit_like():
    rng = np.random.default_rng(0)
    points = rng.dirichlet(np.ones(4), size=(150, 6))
    mixed = points[rng.integers(0, 150, size=(40, 6)), np.arange(6)]  # q_t = p_t(a_t), as an orbit
    noisy = points[:30] + 1e-3 * rng.standard_normal((30, 6, 4))
    for queries in (mixed, noisy):
        for chunk in (1, 7, 1000):
            value, index = min_max_distance(queries, points, chunk=chunk)
            ref_value, ref_index = min_max_distance_bruteforce(queries, points)
            np.testing.assert_array_equal(value, ref_value)
            np.testing.assert_array_equal(index, ref_index)


@pytest.mark.parametrize("ties", [False, True], ids=["generic", "ties"])
def test_min_max_distance_of_merged_orbits_with_seeds(ties):
    """Queries that share their coordinates at the pruning depth share its sweep: greedy orbits on
    clustered points merge (many equal q_t0), and with rounded probabilities and duplicates many values
    tie. Every value and index equals the brute force for any chunk and any seeds."""
    rng = np.random.default_rng(12)
    centres = rng.dirichlet(np.ones(5), size=(4, 6))
    points = centres[rng.integers(0, 4, 160)] + 0.02 * rng.random((160, 6, 5))
    points /= points.sum(axis=2, keepdims=True)
    if ties:
        points = np.round(points, 2)
        points[100:120] = points[10:30]
    orbits, _ = distances.scan_orbits(points, 0, 160)
    queries = points[orbits, np.arange(6)]
    t0 = distances._depth_order(points)[0]
    assert len(np.unique(orbits[:, t0])) < 80  # merged orbits: shared sweeps are exercised
    ref_value, ref_index = min_max_distance_bruteforce(queries, points)
    for chunk in (1, 13, 1000):
        for seeds in (None, orbits[:, :1], rng.integers(0, 160, size=(160, 3))):
            value, index = min_max_distance(queries, points, chunk=chunk, seeds=seeds)
            np.testing.assert_array_equal(value, ref_value)
            np.testing.assert_array_equal(index, ref_index)


def test_min_max_distance_names_bad_seeds():
    points = np.zeros((3, 2, 2))
    with pytest.raises(InputError, match="seeds must be"):
        min_max_distance(np.zeros((2, 2, 2)), points, seeds=np.zeros((3, 1), np.int64))
    with pytest.raises(InputError, match="seeds hold point indices outside 0..2"):
        min_max_distance(np.zeros((2, 2, 2)), points, seeds=np.full((2, 1), 3))


def test_min_max_distance_ties_go_to_the_smaller_index():
    rng = np.random.default_rng(1)
    points = rng.dirichlet(np.ones(3), size=(60, 4))
    points[[7, 31, 44]] = points[50]
    queries = np.stack([points[50], points[7], points[3] + 1e-7])
    value, index = min_max_distance(queries, points)
    np.testing.assert_array_equal(index[:2], [7, 7])
    assert value[0] == value[1] == 0.0
    ref_value, ref_index = min_max_distance_bruteforce(queries, points)
    np.testing.assert_array_equal(value, ref_value)
    np.testing.assert_array_equal(index, ref_index)
    assert index[2] == 3 and 0 < value[2] < 2e-7


def test_min_max_distance_equidistant_points():
    # every point at the same max-distance from the query: the tie rule alone picks b = 0
    points = np.array([[[1.0, 0.0]], [[0.0, 1.0]], [[1.0, 0.0]]])
    queries = np.array([[[0.5, 0.5]]])
    value, index = min_max_distance(queries, points)
    assert index[0] == 0 and value[0] == np.sqrt(0.5)


def test_min_max_distance_rejects_bad_shapes():
    points = np.zeros((3, 2, 2))
    with pytest.raises(InputError, match="queries must be"):
        min_max_distance(np.zeros((1, 3, 2)), points)
    with pytest.raises(InputError, match="NaN"):
        min_max_distance(np.full((1, 2, 2), np.nan), points)
    value, index = min_max_distance(np.zeros((0, 2, 2)), points)
    assert value.shape == index.shape == (0,)


def test_auto_device_gives_the_same_bits():
    rng = np.random.default_rng(6)
    probs, labels = random_trajectories(rng, 23, depths=3, classes=3)
    result = pairwise_shard(probs, labels, 0, 23, n_classes=3, chunk=CHUNK, device="auto")
    assert_same(result, pairwise_bruteforce(probs, labels, 3), bitwise=True)


def test_kernel_threads_hold_the_kernels_to_a_count_and_change_no_bit(caplog):
    """A job's kernels run on its threads (capped at numba's pool) and the count before comes back after
    the block; one thread and the whole pool give the same pass (its close pairs included), the same
    distinct orbits and the same ε and shadows, bit for bit. Only an announced count reaches the log."""
    import logging

    import numba

    from resdyn import shadowing

    rng = np.random.default_rng(12)
    probs, labels = random_trajectories(rng, 240, depths=6, classes=5)
    probs[7] = probs[3] + 1e-7  # a near-duplicate: the tie rule must not depend on the threads either
    pool, before = numba.config.NUMBA_NUM_THREADS, numba.get_num_threads()
    found = []
    for threads in (1, pool):
        with distances.kernel_threads(threads) as used:
            assert used == threads == numba.get_num_threads()
            result = pairwise_shard(
                probs, labels, 0, 240, n_classes=5, chunk=CHUNK, device="cpu", close="max"
            )
            orbits, hops = distances.scan_orbits(probs, 0, 240, distinct=True)
            eps, shadow = shadowing.shadowing_errors(probs, orbits, 0, 240, chunk=CHUNK)
        assert numba.get_num_threads() == before
        found.append((result, orbits, hops, eps, shadow))
    (one, *arrays_one), (many, *arrays_many) = found
    assert_same(many, one, bitwise=True)
    assert many.close_bound == one.close_bound and len(one.close_value) > 0
    np.testing.assert_array_equal(many.close_value, one.close_value)
    np.testing.assert_array_equal(many.close_pair, one.close_pair)
    for a, b in zip(arrays_many, arrays_one):
        np.testing.assert_array_equal(a, b)
    with distances.kernel_threads(pool + 5) as used:  # more than numba can start: its whole pool
        assert used == pool == numba.get_num_threads()
    with pytest.raises(ValueError, match="kernel threads: 0"):
        with distances.kernel_threads(0):
            pass
    assert numba.get_num_threads() == before
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="resdyn.distances"):
        with distances.kernel_threads(1, announce=False):
            pass
        with distances.kernel_threads(1):
            pass
    assert [r.getMessage() for r in caplog.records] == [
        f"CPU kernels on 1 numba thread(s) (1 requested, pool {pool})"
    ]


@pytest.mark.skipif(
    not __import__("torch").cuda.is_available(), reason="needs a CUDA device (the GPU path of issue 3)"
)
def test_cuda_path_matches_bruteforce():
    rng = np.random.default_rng(8)
    probs, labels = random_trajectories(rng, 64, depths=5, classes=4)
    probs[[9, 30]] = probs[2]
    probs[40] = probs[2] + 1e-7
    ref = pairwise_bruteforce(probs, labels, 4)
    parts = [
        pairwise_shard(probs, labels, *shard_rows(64, 3, k), n_classes=4, chunk=16, device="cuda")
        for k in range(3)
    ]
    assert_same(merge_pairwise(parts), ref, bitwise=True)


# ------------------------------------------------------------------------ balance at paper scale, orbits


def test_shards_at_paper_scale_hold_equal_pair_counts():
    """N = 10,000, 4 shards (issue 28): every shard holds the median shard's pairs within 0.1 %. The kernel's
    work per pair does not depend on the data (docs/performance.md: measured 0.19-0.20 s per shard under
    the authors' reading, 0.22-0.25 s under the definition), so equal pairs are equal times."""
    n = 10_000
    pairs = []
    for k in range(4):
        start, stop = shard_rows(n, 4, k)
        pairs.append(sum(n - 1 - i for i in range(start, stop)))
    assert sum(pairs) == n * (n - 1) // 2
    assert max(pairs) <= 1.001 * float(np.median(pairs))


def scan_orbits_bruteforce(probs, start, stop, distinct):
    """Greedy pseudo-orbits with plain Python loops: a_{t+1} = the nearest allowed j at depth t+1 (allowed:
    j != a_t, or j not yet on the orbit), ties → smaller j; d summed over classes in order, then rooted."""
    n, depths, classes = probs.shape
    orbits, hops = [], []
    for i in range(start, stop):
        orbit, orbit_hops = [i], []
        for t in range(1, depths):
            a = orbit[-1]
            excluded = set(orbit) if distinct else {a}
            best_j, best_d = None, math.inf
            for j in range(n):
                if j in excluded:
                    continue
                total = 0.0
                for c in range(classes):
                    total += (float(probs[j, t, c]) - float(probs[a, t, c])) ** 2
                d = math.sqrt(total)
                if d < best_d:
                    best_j, best_d = j, d
            orbit.append(best_j)
            orbit_hops.append(best_d)
        orbits.append(orbit)
        hops.append(orbit_hops)
    return np.array(orbits, dtype=np.int64).reshape(-1, depths), np.array(hops).reshape(-1, depths - 1)


@pytest.mark.parametrize("distinct", [False, True], ids=["revisit", "distinct"])
@pytest.mark.parametrize("ties", [False, True], ids=["generic", "ties"])
def test_scan_orbits_equal_the_bruteforce(distinct, ties):
    """distances.scan_orbits (numba) gives the plain loops' orbits and hops bit for bit, also with exact
    duplicates and rounded probabilities (many equal distances: ties → smaller j)."""
    rng = np.random.default_rng(7)
    probs, _ = random_trajectories(rng, 120, depths=6, classes=5)
    if ties:
        probs = np.round(probs, 2)
        probs[60:70] = probs[10:20]
    expected = scan_orbits_bruteforce(probs, 3, 117, distinct)
    found = distances.scan_orbits(probs, 3, 117, distinct=distinct)
    np.testing.assert_array_equal(found[0], expected[0])
    np.testing.assert_array_equal(found[1], expected[1])
    if distinct:  # no image twice on an orbit
        assert all(len(set(orbit)) == len(orbit) for orbit in found[0])
    empty = distances.scan_orbits(probs, 5, 5, distinct=distinct)
    assert empty[0].shape == (0, 6) and empty[1].shape == (0, 5)


def window_cases():
    """Point sets that stress the class windows: generic, rounded with duplicates, confident (near the
    simplex's vertices, neighbours 1e-7 apart), uniform vectors (every coordinate ties for the largest),
    points that differ only in their largest coordinate (the bound is attained: gap = distance), absent
    classes (empty groups), points straddling two groups (the bound between groups is attained) and a
    single class (every distance 0: the tie rule alone decides)."""
    rng = np.random.default_rng(13)
    generic, _ = random_trajectories(rng, 30, depths=3, classes=4)
    ties = np.round(generic, 1)
    ties[20:25] = ties[0:5]
    vertex = np.eye(4)[rng.integers(0, 4, size=(30, 3))]
    confident = 0.999 * vertex + 0.001 * rng.dirichlet(np.ones(4), size=(30, 3))
    confident[10:20] = confident[0:10] + 1e-7 * rng.standard_normal((10, 3, 4))
    uniform = np.full((30, 3, 4), 0.25)
    uniform[::3] += 1e-3 * rng.standard_normal((10, 3, 4))
    on_axis = np.zeros((30, 3, 4))
    on_axis[:, :, 0] = rng.choice([0.5, 0.6, 0.7, 0.9], size=(30, 3))  # gaps equal to distances
    on_axis[:, :, 1] = 0.1
    absent = generic.copy()
    absent[:, :, 2:] = 0.0  # classes 2 and 3 never the largest: empty groups
    # on the boundary of two groups: (0.5 + d, 0.5 − d); ties go to the first coordinate's group, and a
    # point of the other group is exactly (q_own − q_other)/√2 away (the bound that skips whole groups)
    straddling = np.zeros((30, 3, 4))
    offset = rng.choice([-0.02, -0.01, -0.005, 0.0, 0.005, 0.01, 0.02], size=(30, 3))
    straddling[:, :, 0] = 0.5 + offset
    straddling[:, :, 1] = 0.5 - offset
    return {
        "generic": generic,
        "ties": ties,
        "confident": confident,
        "uniform": uniform,
        "on_axis": on_axis,
        "absent": absent,
        "straddling": straddling,
        "one_class": np.ones((30, 3, 1)),
    }


@pytest.mark.parametrize("case", list(window_cases()))
@pytest.mark.parametrize("width", [1, 4, 40])
def test_nearest_window_lists_the_k_nearest_in_order(case, width):
    """The kernel behind scan_orbits: for each query image its ``width`` nearest other images at one depth,
    ordered by (distance, index) exactly as a stable sort of the float64 brute force, −1 / inf past the
    N − 1 others, on every stress case of the class windows."""
    from resdyn import _kernels

    probs = window_cases()[case]
    queries = np.array([0, 3, 3, 29, 20, 12], dtype=np.int64)
    for depth in range(3):
        index = np.empty((len(queries), width), np.int64)
        value = np.empty((len(queries), width))
        windows = distances.ClassWindows.build(probs, depth)
        _kernels.nearest_window(probs, depth, *windows.arrays(), queries, index, value)
        for row, a in enumerate(queries):
            dist = np.sqrt(distances.squared_distance(probs[a, depth], probs[:, depth]))
            others = [j for j in np.argsort(dist, kind="stable") if j != a][:width]
            kept = len(others)
            assert index[row, :kept].tolist() == others
            np.testing.assert_array_equal(value[row, :kept], dist[others])
            assert (index[row, kept:] == -1).all() and np.isinf(value[row, kept:]).all()


@pytest.mark.parametrize("case", list(window_cases()))
def test_class_windows_hold_every_point_once_sorted_within_its_group(case):
    probs = window_cases()[case]
    for depth in range(probs.shape[1]):
        windows = distances.ClassWindows.build(probs, depth)
        at_depth = probs[:, depth]
        points, bounds = windows.points, windows.bounds
        assert sorted(points.tolist()) == list(range(len(probs)))
        assert bounds[0] == 0 and bounds[-1] == len(probs) and (np.diff(bounds) >= 0).all()
        for c in range(probs.shape[2]):
            group = points[bounds[c] : bounds[c + 1]]
            # each image in the group of its largest coordinate (the first on ties)
            np.testing.assert_array_equal(at_depth[group].argmax(axis=1), c)
            np.testing.assert_array_equal(windows.keys[bounds[c] : bounds[c + 1]], at_depth[group, c])
            assert (np.diff(at_depth[group, c]) >= 0).all()
        np.testing.assert_array_equal(windows.sorted_points[0], at_depth[points].T)


@pytest.mark.parametrize("case", list(window_cases()))
@pytest.mark.parametrize("distinct", [False, True], ids=["revisit", "distinct"])
def test_scan_orbits_and_min_max_on_window_stress_cases(case, distinct):
    """Orbits, hops, shadowing errors and shadows equal the plain float64 loops on every stress case."""
    probs = window_cases()[case]
    expected = scan_orbits_bruteforce(probs, 0, len(probs), distinct)
    orbits, hops = distances.scan_orbits(probs, 0, len(probs), distinct=distinct)
    np.testing.assert_array_equal(orbits, expected[0])
    np.testing.assert_array_equal(hops, expected[1])
    queries = probs[orbits, np.arange(probs.shape[1])]
    for seeds in (None, orbits[:, :1]):
        value, index = min_max_distance(queries, probs, seeds=seeds)
        ref_value, ref_index = min_max_distance_bruteforce(queries, probs)
        np.testing.assert_array_equal(value, ref_value)
        np.testing.assert_array_equal(index, ref_index)


@pytest.mark.parametrize("first", [1, 2], ids=["first-1", "first-2"])
def test_distinct_orbits_search_again_when_the_first_nearest_are_visited(first, monkeypatch):
    """A distinct orbit's hop looks at its image's DISTINCT_FIRST nearest first; an orbit that visited all
    of them searches again for the t + 1 nearest. Both searches run here (at DISTINCT_FIRST = 1 the
    nearest of a_1 is often a_0) and the orbits equal the plain loops'."""
    from resdyn import _kernels

    widths = []
    real = _kernels.nearest_window

    def spy(*args):
        widths.append(args[-1].shape[1])  # out_value: (queries, width)
        return real(*args)

    monkeypatch.setattr(distances, "DISTINCT_FIRST", first)
    monkeypatch.setattr(distances._kernels, "nearest_window", spy)
    rng = np.random.default_rng(11)
    probs, _ = random_trajectories(rng, 60, depths=6, classes=4)
    probs[30:40] = np.round(probs[0:10], 1)  # ties among the neighbours too
    expected = scan_orbits_bruteforce(probs, 0, 60, True)
    found = distances.scan_orbits(probs, 0, 60, distinct=True)
    np.testing.assert_array_equal(found[0], expected[0])
    np.testing.assert_array_equal(found[1], expected[1])
    assert any(w > first for w in widths)  # some orbits searched again for their t + 1 nearest
    assert widths.count(1) >= 1 and max(widths) <= 5


def test_revisiting_orbits_take_known_nearest_images():
    """Where a caller knows an image's nearest other image (the whole set's, when it lies in a subset),
    scan_orbits takes it and searches only the others; the orbits equal the plain loops' on the subset."""
    rng = np.random.default_rng(17)
    probs, _ = random_trajectories(rng, 90, depths=5, classes=4)
    probs[40:50] = np.round(probs[0:10], 2)  # ties among the neighbours
    whole = pairwise_bruteforce(probs, np.arange(90) % 4, 4)
    members = np.sort(rng.choice(90, size=50, replace=False))
    row_of = np.full(90, -1)
    row_of[members] = np.arange(50)
    known = (row_of[whole.nn_index[:, members]], whole.nn_distance[:, members])
    assert (known[0] >= 0).any() and (known[0] < 0).any()  # both routes
    sub = probs[members]
    expected = scan_orbits_bruteforce(sub, 0, 50, False)
    found = distances.scan_orbits(sub, 0, 50, known=known)
    np.testing.assert_array_equal(found[0], expected[0])
    np.testing.assert_array_equal(found[1], expected[1])
    with pytest.raises(InputError, match="revisiting orbits and \\(5, 50\\) tables"):
        distances.scan_orbits(sub, 0, 50, distinct=True, known=known)
    with pytest.raises(InputError, match="revisiting orbits and \\(5, 50\\) tables"):
        distances.scan_orbits(sub, 0, 50, known=(known[0][:, :10], known[1][:, :10]))


def test_scan_orbits_and_min_max_of_two_images():
    probs = np.array([[[0.9, 0.1], [0.2, 0.8]], [[0.9, 0.1], [0.3, 0.7]]])
    orbits, hops = distances.scan_orbits(probs, 0, 2)
    np.testing.assert_array_equal(orbits, [[0, 1], [1, 0]])
    hop = np.sqrt(distances.squared_distance(probs[0, 1], probs[1, 1]))
    np.testing.assert_array_equal(hops, [[hop], [hop]])
    value, index = min_max_distance(probs[orbits, np.arange(2)], probs)
    ref_value, ref_index = min_max_distance_bruteforce(probs[orbits, np.arange(2)], probs)
    np.testing.assert_array_equal(value, ref_value)
    np.testing.assert_array_equal(index, ref_index)


def test_scan_orbits_rejects_bad_input_by_name():
    probs = np.full((4, 6, 3), 1 / 3)
    with pytest.raises(InputError, match="run out of images"):
        distances.scan_orbits(probs, 0, 4, distinct=True)
    with pytest.raises(InputError, match="outside 0..4"):
        distances.scan_orbits(probs, 0, 5)


@pytest.mark.parametrize("case", list(window_cases()))
def test_reduced_distances_equal_the_plain_loops(case):
    """max, min and mean over depths of every listed pair's distances, bit for bit as plain float64 loops
    (the mean a sequential sum over depths divided by D); an unknown reduction is named."""
    probs = window_cases()[case]
    first, second = np.triu_indices(len(probs), 1)
    for over_depths in ("max", "min", "mean"):
        found = distances.reduced_distances(probs, first, second, over_depths)
        for k, (i, j) in enumerate(zip(first, second)):
            per_depth = []
            for t in range(probs.shape[1]):
                total = 0.0
                for c in range(probs.shape[2]):
                    total += (float(probs[i, t, c]) - float(probs[j, t, c])) ** 2
                per_depth.append(math.sqrt(total))
            if over_depths == "mean":
                expected = 0.0
                for value in per_depth:
                    expected += value
                expected /= len(per_depth)
            else:
                expected = max(per_depth) if over_depths == "max" else min(per_depth)
            assert found[k] == expected, (over_depths, i, j)
    assert distances.reduced_distances(probs, [], [], "max").shape == (0,)
    with pytest.raises(InputError, match="over_depths must be one of"):
        distances.reduced_distances(probs, first, second, "median")
