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
def _sq_dist(X, t, b, Q, m):
    # X: (N, D, C) point-major points (contiguous over c); Q: (M, D, C) queries.
    s = 0.0
    for c in range(X.shape[2]):
        d = X[b, t, c] - Q[m, t, c]
        s += d * d
    return s


@njit(inline="always")
def _sq_query(P, t, q, acc, b0, b1):
    """acc[b] = Σ_c (P[t, c, b] − q[c])² for the points b0 <= b < b1, summed sequentially over c (4 at a
    time)."""
    C = P.shape[1]
    L = b1 - b0
    out = acc[b0:b1]
    for b in range(L):
        out[b] = 0.0
    c = 0
    while c + 4 <= C:
        r0 = P[t, c, b0:b1]
        r1 = P[t, c + 1, b0:b1]
        r2 = P[t, c + 2, b0:b1]
        r3 = P[t, c + 3, b0:b1]
        q0 = q[c]
        q1 = q[c + 1]
        q2 = q[c + 2]
        q3 = q[c + 3]
        for b in range(L):
            d0 = r0[b] - q0
            d1 = r1[b] - q1
            d2 = r2[b] - q2
            d3 = r3[b] - q3
            out[b] = (((out[b] + d0 * d0) + d1 * d1) + d2 * d2) + d3 * d3
        c += 4
    while c < C:
        r0 = P[t, c, b0:b1]
        q0 = q[c]
        for b in range(L):
            d0 = r0[b] - q0
            out[b] += d0 * d0
        c += 1


@njit(inline="always")
def _max_sq_within(X, order, b, Q, m, s_first, thr):
    """max over the depths of the squared distance between point b and query m, given its value
    ``s_first`` at depth order[0] and visiting the others in ``order``; inf as soon as one exceeds ``thr``
    (early abandoning: the max can then not be within it)."""
    smax = s_first
    for u in range(1, order.shape[0]):
        s = _sq_dist(X, order[u], b, Q, m)
        if s > thr:
            return np.inf
        if s > smax:
            smax = s
    return smax


QUERY_TILE = 16
"""Query groups whose lower bounds share each block of points in :func:`min_max_scan`."""
NEAR_SEEDS = 8
"""Points nearest to a query group at t0 whose exact values seed the incumbent in :func:`min_max_scan`."""
POINT_BLOCK = 512
"""Points per block in :func:`min_max_scan` (C × 512 float64: 4 MB at C = 1000, reused from cache by the
queries of a tile instead of streamed from memory once per query)."""


@njit(parallel=True, cache=True)
def min_max_scan(P, X, Q, order, seeds, groups, out_value, out_index):
    """For every query m: min over points b of max_t sqrt(sum_c (P[t,c,b] - Q[m,t,c])^2), argmin b.

    ``P`` (D, C, N) and ``X`` (N, D, C) hold the same points, coordinate-major for the vectorised bound and
    point-major for the few exact checks (a strided gather of C values per depth misses the cache at large
    C). ``order`` lists the depths, most selective first: the first one, t0, gives the vectorised lower
    bound d_t0 ≤ max_t d_t. Queries ``groups[g]..groups[g+1]-1`` share their coordinates at t0, so each
    group's bound is computed once (for :data:`QUERY_TILE` groups at a time over blocks of
    :data:`POINT_BLOCK` points). Each query's incumbent starts at the best exact value among its
    ``seeds[m]`` (any valid indices) and the group's :data:`NEAR_SEEDS` nearest points at t0; the points
    whose bound is within the group's widest incumbent are collected once, and each query checks only
    those, depth by depth with early abandoning. The order of the checks does not matter: ties go to the
    smaller b explicitly, and a pruned point's value exceeds the incumbent's strictly.
    """
    N = P.shape[2]
    G = groups.shape[0] - 1
    t0 = order[0]
    n_tiles = (G + QUERY_TILE - 1) // QUERY_TILE
    for tile in prange(n_tiles):
        g0 = tile * QUERY_TILE
        GT = min(QUERY_TILE, G - g0)
        S0 = np.empty((QUERY_TILE, N))
        for b0 in range(0, N, POINT_BLOCK):
            b1 = min(N, b0 + POINT_BLOCK)
            for q in range(GT):
                _sq_query(P, t0, Q[groups[g0 + q], t0], S0[q], b0, b1)
        near = np.empty(NEAR_SEEDS, dtype=np.int64)
        near_s = np.empty(NEAR_SEEDS)
        cand = np.empty(N, dtype=np.int64)
        for q in range(GT):
            s0 = S0[q]
            # the group's NEAR_SEEDS nearest points at t0: where a good incumbent usually is
            for k in range(NEAR_SEEDS):
                near[k] = 0
                near_s[k] = np.inf
            for b in range(N):
                if s0[b] < near_s[NEAR_SEEDS - 1]:
                    pos = NEAR_SEEDS - 1
                    while pos > 0 and near_s[pos - 1] > s0[b]:
                        near[pos] = near[pos - 1]
                        near_s[pos] = near_s[pos - 1]
                        pos -= 1
                    near[pos] = b
                    near_s[pos] = s0[b]
            # each query's incumbent from its seeds
            widest = 0.0
            for m in range(groups[g0 + q], groups[g0 + q + 1]):
                best = np.inf
                best_b = N
                for k in range(seeds.shape[1] + NEAR_SEEDS):
                    b_seed = seeds[m, k] if k < seeds.shape[1] else near[k - seeds.shape[1]]
                    v = math.sqrt(_max_sq_within(X, order, b_seed, Q, m, s0[b_seed], np.inf))
                    if v < best or (v == best and b_seed < best_b):
                        best = v
                        best_b = b_seed
                out_value[m] = best
                out_index[m] = best_b
                widest = max(widest, _threshold(best, 0.0))
            # the points any of the group's queries can still take (d_t0 within the widest incumbent)
            n_cand = 0
            for b in range(N):
                if s0[b] <= widest:
                    cand[n_cand] = b
                    n_cand += 1
            for m in range(groups[g0 + q], groups[g0 + q + 1]):
                best = out_value[m]
                best_b = out_index[m]
                thr = _threshold(best, 0.0)
                for k in range(n_cand):
                    b = cand[k]
                    if s0[b] > thr:
                        continue
                    smax = _max_sq_within(X, order, b, Q, m, s0[b], thr)
                    if smax == np.inf:
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
def _sq_tile(A, i0, R, j0, L, acc):
    """acc[r, k] = Σ_c (A[c, j0+k] − A[c, i0+r])² for r < R, k < L, summed sequentially over c (4 at a
    time). A is (C, N), one depth of the coordinate-major points (or the mean trajectories): each column
    segment A[c, j0:j0+L] is loaded once and used for the R rows of the tile, so at large C the columns
    stream from memory once per tile instead of once per row."""
    C = A.shape[0]
    for r in range(R):
        a = acc[r]
        for k in range(L):
            a[k] = 0.0
    c = 0
    while c + 4 <= C:
        r0 = A[c, j0 : j0 + L]
        r1 = A[c + 1, j0 : j0 + L]
        r2 = A[c + 2, j0 : j0 + L]
        r3 = A[c + 3, j0 : j0 + L]
        for r in range(R):
            i = i0 + r
            p0 = A[c, i]
            p1 = A[c + 1, i]
            p2 = A[c + 2, i]
            p3 = A[c + 3, i]
            a = acc[r]
            for k in range(L):
                d0 = r0[k] - p0
                d1 = r1[k] - p1
                d2 = r2[k] - p2
                d3 = r3[k] - p3
                a[k] = (((a[k] + d0 * d0) + d1 * d1) + d2 * d2) + d3 * d3
        c += 4
    while c < C:
        r0 = A[c, j0 : j0 + L]
        for r in range(R):
            p0 = A[c, i0 + r]
            a = acc[r]
            for k in range(L):
                d0 = r0[k] - p0
                a[k] += d0 * d0
        c += 1


@njit(inline="always")
def _exact_better(s, old):
    # sqrt(s) < sqrt(old), decided on the rounded square roots (the values the reference compares)
    return math.sqrt(s) < math.sqrt(old)


@njit(inline="always")
def _pair_less(i, j, pi, pj):
    # (i, j) precedes (pi, pj) lexicographically; an empty incumbent (−1) is preceded by any pair
    return pi < 0 or i < pi or (i == pi and j < pj)


@njit(parallel=True, cache=True)
def fused_pairs(P, Mbar, labels, n_cls, bounds, jblock, rtile, mean_bound):
    """Every pair i < j with i in the row blocks, all depths at once, exact, vectorised over j.

    Block k covers rows ``bounds[k]..bounds[k+1]-1``, taken ``rtile`` consecutive rows at a time (a tile)
    against column blocks of ``jblock`` partners: the squared distances of the tile's rows to a column
    block are computed together (:func:`_sq_tile`), then each row's bookkeeping runs in row order.
    Comparisons run on squared distances where they are certain (margins _LOW/_HIGH); the rare comparisons
    inside the margin are settled exactly on the square roots, and equal values go to the
    lexicographically smaller pair wherever the visiting order is not lexicographic (the different-class
    lanes and the class-pair minima see (i+1, j) before (i, j') when a tile holds both rows). Per block it
    returns:

    - ``nn_s, nn_i`` (D, N): for every row the best squared distance and partner seen from either side of
      a visited pair (row i: partners j > i; row j: partners i of the block); −1 where none.
    - ``dm_s, dm_p`` (D,), (D, 2): per depth the minimum squared distance over different-class pairs.
    - ``e_max, e_max_p, e_max_t, e_mean, e_mean_p``: per unordered class pair (lo < hi) the minima of
      max_t d_t (with t* = the first depth attaining it) and of mean_t d_t. With ``mean_bound`` the mean is
      pruned by ‖mean_t p_t(i) − mean_t p_t(j)‖ ≤ mean_t d_t (worth it at small C, where the D square roots
      of a pair cost as much as its distances); without, every different-class pair's mean is computed.
    Nearest-partner and different-class minima are first kept per lane (position k of a column block)
    so the inner loops vectorise, then reduced exactly per row / per block.
    """
    D, C, N = P.shape
    n_blocks = bounds.shape[0] - 1
    nn_s = np.full((n_blocks, D, N), np.inf)
    nn_i = np.full((n_blocks, D, N), -1, dtype=np.int64)
    dm_s = np.full((n_blocks, D), np.inf)
    dm_p = np.full((n_blocks, D, 2), -1, dtype=np.int64)
    e_max = np.full((n_blocks, n_cls, n_cls), np.inf)
    e_max_p = np.full((n_blocks, n_cls, n_cls, 2), -1, dtype=np.int64)
    e_max_t = np.full((n_blocks, n_cls, n_cls), -1, dtype=np.int64)
    e_mean = np.full((n_blocks, n_cls, n_cls), np.inf)
    e_mean_p = np.full((n_blocks, n_cls, n_cls, 2), -1, dtype=np.int64)
    for blk in prange(n_blocks):
        bs = nn_s[blk]
        bi = nn_i[blk]
        S = np.empty((D, rtile, jblock))
        SM = np.empty((rtile, jblock))
        smax = np.empty(jblock)
        tot = np.empty(jblock)
        other = np.empty((rtile, jblock))
        row_s = np.empty((rtile, D, jblock))  # lane minima of each tile row over its partners j > i
        row_j = np.empty((rtile, D, jblock), dtype=np.int64)
        dif_s = np.full((D, jblock), np.inf)  # lane minima over different-class pairs of the block
        dif_i = np.full((D, jblock), -1, dtype=np.int64)
        dif_j = np.full((D, jblock), -1, dtype=np.int64)
        for i0 in range(bounds[blk], bounds[blk + 1], rtile):
            R = min(rtile, bounds[blk + 1] - i0)
            row_s[:, :, :] = np.inf
            row_j[:, :, :] = -1
            for j0 in range(i0 + 1, N, jblock):
                L = min(jblock, N - j0)
                # Row i's partners are the lanes k >= k0 = max(0, i + 1 - j0) (j > i). Every loop over the
                # lanes runs on views that start at k0 and counts from 0: a loop from k0 defeats
                # vectorisation (numba cannot drop its negative-index check) and was 1.7x slower.
                for r in range(R):
                    k0 = max(0, i0 + r + 1 - j0)
                    a = labels[i0 + r]
                    lab = labels[j0 + k0 : j0 + L]
                    oth = other[r, k0:L]
                    for k in range(L - k0):
                        # +inf on same-class partners masks them out of the different-class minimum
                        oth[k] = 0.0 if lab[k] != a else np.inf
                if mean_bound:
                    _sq_tile(Mbar, i0, R, j0, L, SM)
                for t in range(D):
                    # the tile's squared distances at depth t, then each row's bookkeeping at depth t
                    # while they are still in L1
                    _sq_tile(P[t], i0, R, j0, L, S[t])
                    for r in range(R):
                        i = i0 + r
                        k0 = max(0, i + 1 - j0)
                        jj = j0 + k0  # the partner of lane 0 of the views
                        LL = L - k0
                        acc = S[t, r, k0:L]
                        oth = other[r, k0:L]
                        bs_t = bs[t, jj : j0 + L]
                        bi_t = bi[t, jj : j0 + L]
                        rs = row_s[r, t, k0:L]
                        rj = row_j[r, t, k0:L]
                        ds = dif_s[t, k0:L]
                        di = dif_i[t, k0:L]
                        dj = dif_j[t, k0:L]
                        unsure = 0
                        for k in range(LL):
                            s = acc[k]
                            old = bs_t[k]
                            b1 = s < old * _LOW
                            bs_t[k] = s if b1 else old
                            bi_t[k] = i if b1 else bi_t[k]
                            old2 = rs[k]
                            b2 = s < old2 * _LOW
                            rs[k] = s if b2 else old2
                            rj[k] = jj + k if b2 else rj[k]
                            sd = s + oth[k]
                            old3 = ds[k]
                            b3 = sd < old3 * _LOW
                            ds[k] = sd if b3 else old3
                            di[k] = i if b3 else di[k]
                            dj[k] = jj + k if b3 else dj[k]
                            u = (s <= old * _HIGH and not b1) or (s <= old2 * _HIGH and not b2)
                            u = u or (sd <= old3 * _HIGH and not b3 and sd != np.inf)
                            unsure |= np.int64(u)
                        if unsure:
                            # the comparisons inside the margin, settled on the square roots; a lane's
                            # nearest-neighbour candidates arrive in index order (keep the first), its
                            # different-class candidates not always (keep the smaller pair on a tie)
                            for k in range(LL):
                                s = acc[k]
                                if s <= bs_t[k] * _HIGH and _exact_better(s, bs_t[k]):
                                    bs_t[k] = s
                                    bi_t[k] = i
                                if s <= rs[k] * _HIGH and _exact_better(s, rs[k]):
                                    rs[k] = s
                                    rj[k] = jj + k
                                if oth[k] == 0.0 and s <= ds[k] * _HIGH:
                                    tie = math.sqrt(s) == math.sqrt(ds[k])
                                    tie = tie and _pair_less(i, jj + k, di[k], dj[k])
                                    if tie or _exact_better(s, ds[k]):
                                        ds[k] = s
                                        di[k] = i
                                        dj[k] = jj + k
                for r in range(R):
                    i = i0 + r
                    k0 = max(0, i + 1 - j0)
                    jj = j0 + k0
                    LL = L - k0
                    a = labels[i]
                    lab = labels[jj : j0 + L]
                    mx = smax[:LL]
                    s0 = S[0, r, k0:L]
                    for k in range(LL):
                        mx[k] = s0[k]
                    for t in range(1, D):
                        st = S[t, r, k0:L]
                        for k in range(LL):
                            x = st[k]
                            y = mx[k]
                            mx[k] = x if x > y else y
                    if not mean_bound:
                        tt = tot[:LL]
                        for k in range(LL):
                            tt[k] = 0.0
                        for t in range(D):
                            st = S[t, r, k0:L]
                            for k in range(LL):
                                tt[k] += math.sqrt(st[k])
                    for k in range(LL):
                        b = lab[k]
                        if b == a:
                            continue
                        j = jj + k
                        lo = min(a, b)
                        hi = max(a, b)
                        cur = e_max[blk, lo, hi]
                        if mx[k] <= (cur**2) * _HIGH + 1e-300:
                            v = math.sqrt(mx[k])
                            p = e_max_p[blk, lo, hi]
                            if v < cur or (v == cur and _pair_less(i, j, p[0], p[1])):
                                e_max[blk, lo, hi] = v
                                e_max_p[blk, lo, hi, 0] = i
                                e_max_p[blk, lo, hi, 1] = j
                                for t in range(D):  # t*: the first depth whose distance is the max
                                    if math.sqrt(S[t, r, k0 + k]) == v:
                                        e_max_t[blk, lo, hi] = t
                                        break
                        cur = e_mean[blk, lo, hi]
                        if mean_bound:
                            if SM[r, k0 + k] > _threshold(cur, ABS_SLACK_MEAN):
                                continue
                            total = 0.0
                            for t in range(D):
                                total += math.sqrt(S[t, r, k0 + k])
                        else:
                            total = tot[k]
                        v = total / D
                        p = e_mean_p[blk, lo, hi]
                        if v < cur or (v == cur and _pair_less(i, j, p[0], p[1])):
                            e_mean[blk, lo, hi] = v
                            e_mean_p[blk, lo, hi, 0] = i
                            e_mean_p[blk, lo, hi, 1] = j
            # each tile row: its lanes (partners j > i) against what earlier rows of the block offered
            for r in range(R):
                i = i0 + r
                for t in range(D):
                    best_d = math.sqrt(bs[t, i])
                    best_s = bs[t, i]
                    best_j = bi[t, i]
                    for k in range(jblock):
                        if row_j[r, t, k] < 0:
                            continue
                        d = math.sqrt(row_s[r, t, k])
                        if d < best_d or (d == best_d and row_j[r, t, k] < best_j):
                            best_d = d
                            best_s = row_s[r, t, k]
                            best_j = row_j[r, t, k]
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
    return nn_s, nn_i, dm_s, dm_p, e_max, e_max_p, e_max_t, e_mean, e_mean_p


@njit(parallel=True, cache=True)
def pair_t_star(probs, pairs, out):
    """out[k] = argmax_t sqrt(Σ_c (probs[i, t, c] − probs[j, t, c])²) for (i, j) = pairs[k] (sequential sum
    over c, ties → smaller t, as ``np.argmax`` of the reference's distances); −1 where i < 0."""
    D = probs.shape[1]
    for k in prange(pairs.shape[0]):
        i = pairs[k, 0]
        j = pairs[k, 1]
        if i < 0:
            out[k] = -1
            continue
        best = -1.0
        best_t = -1
        for t in range(D):
            v = math.sqrt(_sq_dist(probs, t, i, probs, j))
            if v > best:
                best = v
                best_t = t
        out[k] = best_t


@njit(parallel=True, cache=True)
def pair_reduce(probs, first, second, use_max, out):
    """out[k] = max_t (or min_t, ``use_max`` false) sqrt(Σ_c (probs[i, t, c] − probs[j, t, c])²) for
    (i, j) = (first[k], second[k]), the sum sequential over c (the module's arithmetic)."""
    D = probs.shape[1]
    for k in prange(first.shape[0]):
        i = first[k]
        j = second[k]
        acc = 0.0
        for t in range(D):
            v = math.sqrt(_sq_dist(probs, t, i, probs, j))
            if t == 0 or (v > acc if use_max else v < acc):
                acc = v
        out[k] = acc


NEAREST_TILE = 16
"""Query images handled by one task of :func:`nearest_scan` (their scratch is allocated once per tile)."""


@njit(parallel=True, cache=True)
def nearest_scan(P, depth, queries, out_index, out_value):
    """The K = ``out_index.shape[1]`` nearest images of every query image at one depth, by scanning all N:
    for query a = ``queries[m]``, the images j ≠ a in increasing order of (sqrt(Σ_c (P[depth, c, j] −
    P[depth, c, a])²), j) — equal distances to the smaller j — with their distances; −1 / inf past the
    N − 1 others.

    ``P`` (D, C, N) holds the points coordinate-major. The squared distances of one query to all points are
    the module's sequential sums (:func:`_sq_query`, vectorised over j) and the order is decided on their
    square roots, so entry 0 is the argmin of the plain float64 scan bit for bit. A candidate whose squared
    distance exceeds the K-th kept one's cannot enter (sqrt is monotonic; on an equal root the later j
    ranks after the kept one) and is skipped unrooted.
    """
    D, C, N = P.shape
    M = queries.shape[0]
    K = out_index.shape[1]
    n_tiles = (M + NEAREST_TILE - 1) // NEAREST_TILE
    for tile in prange(n_tiles):
        acc = np.empty(N)
        q = np.empty(C)
        sq = np.empty(K)  # the kept entries' squared distances
        for m in range(tile * NEAREST_TILE, min(M, (tile + 1) * NEAREST_TILE)):
            a = queries[m]
            for c in range(C):
                q[c] = P[depth, c, a]
            _sq_query(P, depth, q, acc, 0, N)
            idx = out_index[m]
            val = out_value[m]
            for k in range(K):
                idx[k] = -1
                val[k] = np.inf
                sq[k] = np.inf
            kept = 0
            for j in range(N):
                s = acc[j]
                if s > sq[K - 1] or j == a:
                    continue
                v = math.sqrt(s)
                if kept == K and not v < val[K - 1]:
                    continue
                # insert after every kept entry with a root <= v (those have smaller j); when full, the
                # K-th entry drops out
                pos = kept if kept < K else K - 1
                while pos > 0 and val[pos - 1] > v:
                    idx[pos] = idx[pos - 1]
                    val[pos] = val[pos - 1]
                    sq[pos] = sq[pos - 1]
                    pos -= 1
                idx[pos] = j
                val[pos] = v
                sq[pos] = s
                if kept < K:
                    kept += 1
