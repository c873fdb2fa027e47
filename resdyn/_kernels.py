"""Numba kernels behind :mod:`resdyn.distances`: exact min / min-max reductions over trajectories.

Arithmetic contract shared with the float64 reference ``resdyn.distances.pairwise_bruteforce``: for two
probability vectors u, v in R^C the squared distance is the sequential sum
``s = ((u_0 - v_0)^2 + (u_1 - v_1)^2) + ...`` over c = 0..C-1 in float64, the distance is ``sqrt(s)``
(correctly rounded), the mean over depths is the sequential sum of the distances over t = 0..T divided by
T+1. Every kernel evaluates exactly that expression for every pair it keeps, so its values are bitwise
equal to the reference; pruning only ever skips a pair whose value provably exceeds the incumbent.

Points are stored coordinate-major, ``(T+1, C, N)``, so every loop over partners is contiguous and
vectorises (the coordinate sum is unrolled four at a time, keeping the sequential order).

Pruning thresholds: a candidate is skipped when its squared lower bound exceeds ``thr`` with
``thr = (best * (1 + 1e-12) + slack)^2``. For a depth's own distance (an exact sub-expression of the max)
slack is 0 and the relative factor absorbs the rounding of ``sqrt``; for the mean-trajectory bound the
absolute slack covers the rounding of the per-image means. A skipped candidate therefore has a value
strictly larger than ``best`` and can never win, not even a tie.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

# Relative and absolute widening of every pruning threshold (see the module docstring).
REL_SLACK = 1e-12
ABS_SLACK_MEAN = 1e-12


@njit(inline="always")
def _threshold(best: float, slack: float) -> float:
    if best == np.inf:
        return np.inf
    r = best * (1.0 + REL_SLACK) + slack
    return r * r + 1e-300


@njit(inline="always")
def _sq_dist(P, t, b, Q, m):
    # P: (D, C, N) coordinate-major points; Q: (M, D, C) queries.
    s = 0.0
    for c in range(P.shape[1]):
        d = P[t, c, b] - Q[m, t, c]
        s += d * d
    return s


@njit(inline="always")
def _sq_query(P, t, q, acc):
    """acc[b] = Σ_c (P[t, c, b] − q[c])² for every point b, summed sequentially over c (4 at a time)."""
    C = P.shape[1]
    N = P.shape[2]
    for b in range(N):
        acc[b] = 0.0
    c = 0
    while c + 4 <= C:
        r0 = P[t, c]
        r1 = P[t, c + 1]
        r2 = P[t, c + 2]
        r3 = P[t, c + 3]
        q0 = q[c]
        q1 = q[c + 1]
        q2 = q[c + 2]
        q3 = q[c + 3]
        for b in range(N):
            d0 = r0[b] - q0
            d1 = r1[b] - q1
            d2 = r2[b] - q2
            d3 = r3[b] - q3
            acc[b] = (((acc[b] + d0 * d0) + d1 * d1) + d2 * d2) + d3 * d3
        c += 4
    while c < C:
        r0 = P[t, c]
        q0 = q[c]
        for b in range(N):
            d0 = r0[b] - q0
            acc[b] += d0 * d0
        c += 1


@njit(parallel=True, cache=True)
def min_max_scan(P, Q, order, seed, out_value, out_index):
    """For every query m: min over points b of max_t sqrt(sum_c (P[t,c,b] - Q[m,t,c])^2), argmin b.

    ``order`` lists the depths, most selective first (the first one is the vectorised lower bound);
    ``seed[m]`` is a point whose exact value initialises the incumbent (any valid index).
    Ties go to the smaller b.
    """
    D, C, N = P.shape
    M = Q.shape[0]
    t0 = order[0]
    for m in prange(M):
        s0 = np.empty(N)
        _sq_query(P, t0, Q[m, t0], s0)
        # incumbent from the seed
        b_seed = seed[m]
        smax = 0.0
        for t in range(D):
            s = _sq_dist(P, t, b_seed, Q, m)
            if s > smax:
                smax = s
        best = math.sqrt(smax)
        best_b = b_seed
        thr = _threshold(best, 0.0)
        for b in range(N):
            if s0[b] > thr:
                continue
            smax = s0[b]
            alive = True
            for k in range(1, D):
                s = _sq_dist(P, order[k], b, Q, m)
                if s > thr:
                    alive = False
                    break
                if s > smax:
                    smax = s
            if not alive:
                continue
            v = math.sqrt(smax)
            if v < best or (v == best and b < best_b):
                best = v
                best_b = b
                thr = _threshold(best, 0.0)
        out_value[m] = best
        out_index[m] = best_b


# Relative margins on squared distances: s < best·_LOW certainly gives sqrt(s) < sqrt(best) after rounding,
# s > best·_HIGH certainly gives sqrt(s) > sqrt(best); in between the comparison is settled on the sqrt.
_LOW = 1.0 - 1e-15
_HIGH = 1.0 + 1e-15


@njit(inline="always")
def _sq_block(P, t, i, j0, L, acc):
    """acc[k] = Σ_c (P[t, c, j0+k] − P[t, c, i])² for k < L, summed sequentially over c (4 at a time)."""
    C = P.shape[1]
    for k in range(L):
        acc[k] = 0.0
    c = 0
    while c + 4 <= C:
        r0 = P[t, c, j0 : j0 + L]
        r1 = P[t, c + 1, j0 : j0 + L]
        r2 = P[t, c + 2, j0 : j0 + L]
        r3 = P[t, c + 3, j0 : j0 + L]
        p0 = P[t, c, i]
        p1 = P[t, c + 1, i]
        p2 = P[t, c + 2, i]
        p3 = P[t, c + 3, i]
        for k in range(L):
            d0 = r0[k] - p0
            d1 = r1[k] - p1
            d2 = r2[k] - p2
            d3 = r3[k] - p3
            acc[k] = (((acc[k] + d0 * d0) + d1 * d1) + d2 * d2) + d3 * d3
        c += 4
    while c < C:
        r0 = P[t, c, j0 : j0 + L]
        p0 = P[t, c, i]
        for k in range(L):
            d0 = r0[k] - p0
            acc[k] += d0 * d0
        c += 1


@njit(inline="always")
def _exact_better(s, old):
    # sqrt(s) < sqrt(old), decided on the rounded square roots (the values the reference compares)
    return math.sqrt(s) < math.sqrt(old)


@njit(parallel=True, cache=True)
def fused_pairs(P, Mbar, labels, n_cls, bounds, jblock):
    """Every pair i < j with i in the row blocks, all depths at once, exact, vectorised over j.

    Block k covers rows ``bounds[k]..bounds[k+1]-1`` and visits its pairs in lexicographic (i, j) order,
    so keeping the incumbent on equal distances keeps the lexicographically smallest pair. Comparisons run
    on squared distances where they are certain (margins _LOW/_HIGH); the rare comparisons inside the margin
    are settled exactly on the square roots. Per block it returns:

    - ``nn_s, nn_i`` (D, N): for every row the best squared distance and partner seen from either side of
      a visited pair (row i: partners j > i; row j: partners i of the block); −1 where none.
    - ``dm_s, dm_p`` (D,), (D, 2): per depth the minimum squared distance over different-class pairs.
    - ``e_max, e_max_p, e_mean, e_mean_p``: per unordered class pair (lo < hi) the minima of max_t d_t and
      mean_t d_t. The mean is pruned by ‖mean_t p_t(i) − mean_t p_t(j)‖ ≤ mean_t d_t.
    Nearest-partner and different-class minima are first kept per lane (position k of a column block)
    so the inner loops vectorise, then reduced exactly per row / per block.
    """
    D, C, N = P.shape
    K = Mbar.shape[0]
    n_blocks = bounds.shape[0] - 1
    nn_s = np.full((n_blocks, D, N), np.inf)
    nn_i = np.full((n_blocks, D, N), -1, dtype=np.int64)
    dm_s = np.full((n_blocks, D), np.inf)
    dm_p = np.full((n_blocks, D, 2), -1, dtype=np.int64)
    e_max = np.full((n_blocks, n_cls, n_cls), np.inf)
    e_max_p = np.full((n_blocks, n_cls, n_cls, 2), -1, dtype=np.int64)
    e_mean = np.full((n_blocks, n_cls, n_cls), np.inf)
    e_mean_p = np.full((n_blocks, n_cls, n_cls, 2), -1, dtype=np.int64)
    for blk in prange(n_blocks):
        bs = nn_s[blk]
        bi = nn_i[blk]
        S = np.empty((D, jblock))
        smax = np.empty(jblock)
        sm = np.empty(jblock)
        other = np.empty(jblock)
        row_s = np.empty((D, jblock))  # lane minima of row i over its partners j > i
        row_j = np.empty((D, jblock), dtype=np.int64)
        dif_s = np.full((D, jblock), np.inf)  # lane minima over different-class pairs of the block
        dif_i = np.full((D, jblock), -1, dtype=np.int64)
        dif_j = np.full((D, jblock), -1, dtype=np.int64)
        for i in range(bounds[blk], bounds[blk + 1]):
            a = labels[i]
            row_s[:, :] = np.inf
            row_j[:, :] = -1
            for j0 in range(i + 1, N, jblock):
                L = min(jblock, N - j0)
                lab = labels[j0 : j0 + L]
                for k in range(L):
                    # +inf on same-class partners masks them out of the different-class minimum
                    other[k] = 0.0 if lab[k] != a else np.inf
                for t in range(D):
                    acc = S[t]
                    _sq_block(P, t, i, j0, L, acc)
                    bs_t = bs[t, j0 : j0 + L]
                    bi_t = bi[t, j0 : j0 + L]
                    rs = row_s[t]
                    rj = row_j[t]
                    ds = dif_s[t]
                    di = dif_i[t]
                    dj = dif_j[t]
                    unsure = 0
                    for k in range(L):
                        s = acc[k]
                        old = bs_t[k]
                        b1 = s < old * _LOW
                        bs_t[k] = s if b1 else old
                        bi_t[k] = i if b1 else bi_t[k]
                        old2 = rs[k]
                        b2 = s < old2 * _LOW
                        rs[k] = s if b2 else old2
                        rj[k] = j0 + k if b2 else rj[k]
                        sd = s + other[k]
                        old3 = ds[k]
                        b3 = sd < old3 * _LOW
                        ds[k] = sd if b3 else old3
                        di[k] = i if b3 else di[k]
                        dj[k] = j0 + k if b3 else dj[k]
                        u = (s <= old * _HIGH and not b1) or (s <= old2 * _HIGH and not b2)
                        u = u or (sd <= old3 * _HIGH and not b3 and sd != np.inf)
                        unsure |= np.int64(u)
                    if unsure:
                        # the comparisons inside the margin, settled on the square roots
                        for k in range(L):
                            s = acc[k]
                            if s <= bs_t[k] * _HIGH and _exact_better(s, bs_t[k]):
                                bs_t[k] = s
                                bi_t[k] = i
                            if s <= rs[k] * _HIGH and _exact_better(s, rs[k]):
                                rs[k] = s
                                rj[k] = j0 + k
                            if other[k] == 0.0 and s <= ds[k] * _HIGH and _exact_better(s, ds[k]):
                                ds[k] = s
                                di[k] = i
                                dj[k] = j0 + k
                for k in range(L):
                    smax[k] = S[0, k]
                for t in range(1, D):
                    for k in range(L):
                        x = S[t, k]
                        y = smax[k]
                        smax[k] = x if x > y else y
                for k in range(L):
                    sm[k] = 0.0
                for c in range(K):
                    row = Mbar[c, j0 : j0 + L]
                    mi = Mbar[c, i]
                    for k in range(L):
                        d = row[k] - mi
                        sm[k] += d * d
                for k in range(L):
                    b = lab[k]
                    if b == a:
                        continue
                    lo = min(a, b)
                    hi = max(a, b)
                    if smax[k] <= (e_max[blk, lo, hi] ** 2) * _HIGH + 1e-300:
                        v = math.sqrt(smax[k])
                        if v < e_max[blk, lo, hi]:
                            e_max[blk, lo, hi] = v
                            e_max_p[blk, lo, hi, 0] = i
                            e_max_p[blk, lo, hi, 1] = j0 + k
                    if sm[k] <= _threshold(e_mean[blk, lo, hi], ABS_SLACK_MEAN):
                        total = 0.0
                        for t in range(D):
                            total += math.sqrt(S[t, k])
                        v = total / D
                        if v < e_mean[blk, lo, hi]:
                            e_mean[blk, lo, hi] = v
                            e_mean_p[blk, lo, hi, 0] = i
                            e_mean_p[blk, lo, hi, 1] = j0 + k
            # row i: its lanes (partners j > i) against what earlier rows of the block offered
            for t in range(D):
                best_d = math.sqrt(bs[t, i])
                best_s = bs[t, i]
                best_j = bi[t, i]
                for k in range(jblock):
                    if row_j[t, k] < 0:
                        continue
                    d = math.sqrt(row_s[t, k])
                    if d < best_d or (d == best_d and row_j[t, k] < best_j):
                        best_d = d
                        best_s = row_s[t, k]
                        best_j = row_j[t, k]
                bs[t, i] = best_s
                bi[t, i] = best_j
        for t in range(D):
            best_d = np.inf
            for k in range(jblock):
                if dif_i[t, k] < 0:
                    continue
                d = math.sqrt(dif_s[t, k])
                pi = dif_i[t, k]
                pj = dif_j[t, k]
                if d < best_d or (
                    d == best_d and (pi < dm_p[blk, t, 0] or (pi == dm_p[blk, t, 0] and pj < dm_p[blk, t, 1]))
                ):
                    best_d = d
                    dm_s[blk, t] = dif_s[t, k]
                    dm_p[blk, t, 0] = pi
                    dm_p[blk, t, 1] = pj
    return nn_s, nn_i, dm_s, dm_p, e_max, e_max_p, e_mean, e_mean_p
