"""Numba kernels behind :mod:`resdyn.distances`: exact min / min-max reductions over trajectories.

Arithmetic contract shared with the float64 reference ``resdyn.distances.pairwise_bruteforce``: for two
probability vectors u, v in R^C the squared distance is the sequential sum
``s = ((u_0 - v_0)^2 + (u_1 - v_1)^2) + ...`` over c = 0..C-1 in float64, the distance is ``sqrt(s)``
(correctly rounded), the mean over depths is the sequential sum of the distances over t = 0..T divided by
T+1. Every kernel evaluates exactly that expression for every pair it keeps, so its values are bitwise
equal to the reference; pruning only ever skips a pair whose value provably exceeds the incumbent.

The all-pairs kernel reads the points coordinate-major, ``(T+1, C, N)``, and the windowed searches a
coordinate-major copy of one depth in window order (section "class windows"), so every loop over partners
is contiguous and vectorises (the coordinate sum is unrolled four at a time, keeping the sequential
order); the few exact checks of single pairs read the point-major ``(N, T+1, C)`` array.

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

REDUCE_MAX, REDUCE_MIN, REDUCE_MEAN = 0, 1, 2
"""The reductions over depths of :func:`pair_reduce` and the close pairs of :func:`fused_pairs`."""

THREAD_SAFE_LAYERS = ("tbb", "omp")
"""numba threading layers that let several Python threads run parallel kernels at once (numba's
documentation, "The Threading Layers"; its ``workqueue`` layer does not)."""


@njit(parallel=True, cache=True, nogil=True)
def _fill_range(out):
    for k in prange(out.shape[0]):
        out[k] = k


def thread_safe() -> bool:
    """Whether the kernels may be called from several Python threads at once: they release the GIL
    (``nogil``) and numba's threading layer, started here by a trivial parallel kernel if no kernel has
    run yet, is one of :data:`THREAD_SAFE_LAYERS`."""
    import numba

    _fill_range(np.empty(1, dtype=np.int64))
    return numba.threading_layer() in THREAD_SAFE_LAYERS


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
def _max_sq_within(X, order, b, Q, m, s_first, thr, hot):
    """max over the depths of the squared distance between point b and query m, given its value
    ``s_first`` at depth order[0]; inf as soon as one exceeds ``thr`` (early abandoning: the max can then
    not be within it). The depth order[hot] is visited first, then the others in ``order``. Returns the
    max (or inf) and the position in ``order`` of the depth that exceeded ``thr`` (``hot`` if none did).

    The max is the same in any visiting order; the order only decides how soon a candidate is rejected.
    A query's candidates are the points near it at order[0], and they tend to exceed its incumbent at the
    same other depth, so the caller passes the position that rejected the previous candidate."""
    smax = s_first
    if hot > 0:
        s = _sq_dist(X, order[hot], b, Q, m)
        if s > thr:
            return np.inf, hot
        if s > smax:
            smax = s
    for u in range(1, order.shape[0]):
        if u == hot:
            continue
        s = _sq_dist(X, order[u], b, Q, m)
        if s > thr:
            return np.inf, u
        if s > smax:
            smax = s
    return smax, hot


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
def _fold_depths(S, r, k0, L, out, larger):
    """out[k] = max (``larger``) or min over the depths t of S[t, r, k0 + k], for the lanes k < L − k0 of a
    tile row; returns ``out``."""
    s0 = S[0, r, k0:L]
    for k in range(out.shape[0]):
        out[k] = s0[k]
    for t in range(1, S.shape[0]):
        st = S[t, r, k0:L]
        for k in range(out.shape[0]):
            x = st[k]
            y = out[k]
            out[k] = x if (x > y if larger else x < y) else y
    return out


@njit(inline="always")
def _exact_better(s, old):
    # sqrt(s) < sqrt(old), decided on the rounded square roots (the values the reference compares)
    return math.sqrt(s) < math.sqrt(old)


@njit(inline="always")
def _pair_less(i, j, pi, pj):
    # (i, j) precedes (pi, pj) lexicographically; an empty incumbent (−1) is preceded by any pair
    return pi < 0 or i < pi or (i == pi and j < pj)


@njit(parallel=True, cache=True, nogil=True)
def fused_pairs(P, Mbar, labels, n_cls, bounds, jblock, rtile, mean_bound, close_mode, close_sq, close_cap):
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
    - ``cl_i, cl_j, cl_s, cl_n``: the close pairs, every different-class pair whose squared max_t d_t
      (``close_mode`` :data:`REDUCE_MAX`) or min_t d_t (:data:`REDUCE_MIN`) is at most ``close_sq``
      (negative: none), in the block's visiting order, at most ``close_cap`` per block; ``cl_n`` counts
      them all, so cl_n > close_cap means the block's list overflowed.
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
    cl_i = np.empty((n_blocks, close_cap), dtype=np.int64)
    cl_j = np.empty((n_blocks, close_cap), dtype=np.int64)
    cl_s = np.empty((n_blocks, close_cap))
    cl_n = np.zeros(n_blocks, dtype=np.int64)
    for blk in prange(n_blocks):
        bs = nn_s[blk]
        bi = nn_i[blk]
        S = np.empty((D, rtile, jblock))
        SM = np.empty((rtile, jblock))
        smax = np.empty(jblock)
        smin = np.empty(jblock)
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
                    mx = _fold_depths(S, r, k0, L, smax[:LL], True)
                    close = mx
                    if close_mode == REDUCE_MIN and close_sq >= 0.0:
                        close = _fold_depths(S, r, k0, L, smin[:LL], False)
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
                        if close[k] <= close_sq:
                            n_close = cl_n[blk]
                            if n_close < close_cap:
                                cl_i[blk, n_close] = i
                                cl_j[blk, n_close] = j
                                cl_s[blk, n_close] = close[k]
                            cl_n[blk] = n_close + 1
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
    return nn_s, nn_i, dm_s, dm_p, e_max, e_max_p, e_max_t, e_mean, e_mean_p, cl_i, cl_j, cl_s, cl_n


@njit(parallel=True, cache=True, nogil=True)
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


@njit(parallel=True, cache=True, nogil=True)
def pair_reduce(probs, first, second, mode, out):
    """out[k] = max_t, min_t or mean_t (``mode``: :data:`REDUCE_MAX`, ``REDUCE_MIN``, ``REDUCE_MEAN``) of
    d_t = sqrt(Σ_c (probs[i, t, c] − probs[j, t, c])²) for (i, j) = (first[k], second[k]): the module's
    arithmetic, the mean the sequential sum over t divided by D."""
    D = probs.shape[1]
    for k in prange(first.shape[0]):
        i = first[k]
        j = second[k]
        acc = 0.0
        for t in range(D):
            v = math.sqrt(_sq_dist(probs, t, i, probs, j))
            if mode == REDUCE_MEAN:
                acc += v
            elif t == 0 or (v > acc if mode == REDUCE_MAX else v < acc):
                acc = v
        out[k] = acc / D if mode == REDUCE_MEAN else acc


# ------------------------------------------------------------------------------------ class windows
#
# The points of one depth are split by their largest coordinate (predicted class) c into groups, each sorted
# by its own coordinate c and stored coordinate-major in that order (class_windows below; the arrays are
# resdyn.distances.ClassWindows). A point b of group c differs from a query q by g = |x_b,c − q_c| in that
# coordinate and so lies at distance ≥ g: the kernels' sum holds the square of that very difference (the
# same rounded float) plus non-negative terms, so its computed root is at least g·(1 − (C + 3)·2⁻⁵³). A
# search that walks a group outward from q_c and stops once g exceeds its bound widened by
# _window_margin(C) therefore skips only points that are strictly farther: they can neither win nor tie.
# Confident probability vectors are spread thinly along their own class's coordinate, and a query's window
# in another class's group is empty or a few points.


@njit(cache=True, nogil=True)
def class_windows(X, depth, S, keys, points, bounds):
    """The class windows of the (N, D, C) points ``X`` at ``depth``: the points split by their largest
    coordinate c (the first on ties) into C groups, each sorted by its coordinate c (ties in any order).
    Fills ``points`` (N,) the point at each position, ``keys`` (N,) its coordinate c, ``bounds`` (C + 1,)
    the groups' first positions (group c at bounds[c]..bounds[c+1]−1) and ``S[0]`` (C, N) the points
    coordinate-major in that order. O(N·C + N log N)."""
    N = X.shape[0]
    C = X.shape[2]
    top = np.empty(N, dtype=np.int64)
    value = np.empty(N)
    bounds[:] = 0
    for b in range(N):
        c = _top_coordinate(X, b, depth)
        top[b] = c
        value[b] = X[b, depth, c]
        bounds[c + 1] += 1
    for c in range(C):
        bounds[c + 1] += bounds[c]
    fill = bounds[:C].copy()
    for b in range(N):
        points[fill[top[b]]] = b
        fill[top[b]] += 1
    for c in range(C):
        group = points[bounds[c] : bounds[c + 1]].copy()
        by_value = np.argsort(value[group])
        for j in range(group.shape[0]):
            points[bounds[c] + j] = group[by_value[j]]
    for j in range(N):
        b = points[j]
        keys[j] = value[b]
        for c in range(C):
            S[0, c, j] = X[b, depth, c]


@njit(cache=True, nogil=True)
def first_unvisited(index, value, which, rows, orbits, t, hops):
    """Step t of distinct pseudo-orbits for the orbits ``rows``: orbit r = rows[k] takes the first image of
    its occupied image's list ``index[which[k]]`` (nearest first) that is not among orbits[r, 0..t], into
    orbits[r, t+1], and its distance into hops[r, t]. Returns the number of orbits whose list holds no such
    image (their orbits[r, t+1] is set to −1): a list of t + 1 images other than orbits[r, t] always holds
    one, a shorter list may not."""
    missing = 0
    for k in range(rows.shape[0]):
        r = rows[k]
        row = which[k]
        orbits[r, t + 1] = -1
        for u in range(index.shape[1]):
            j = index[row, u]
            if j < 0:
                break
            seen = False
            for v in range(t + 1):
                if orbits[r, v] == j:
                    seen = True
                    break
            if not seen:
                orbits[r, t + 1] = j
                hops[r, t] = value[row, u]
                break
        if orbits[r, t + 1] < 0:
            missing += 1
    return missing


GROUP_BLOCK = 16
"""Consecutive points of a group whose distances one vectorised step computes."""


@njit(inline="always")
def _window_margin(C):
    return 1.0 + REL_SLACK + (C + 3) * 2.0**-52


@njit(inline="always")
def _top_coordinate(Q, m, t):
    # the largest coordinate of Q[m, t] (the first on ties)
    best_c = 0
    best = Q[m, t, 0]
    for c in range(1, Q.shape[2]):
        if Q[m, t, c] > best:
            best = Q[m, t, c]
            best_c = c
    return best_c


@njit(inline="always")
def _keep_nearest(idx, val, sq, kept, b, s):
    """Insert point b at squared distance s into the K-entry list (idx, val = roots, sq) ordered by
    (root, index) when it belongs there; returns the new count of kept entries."""
    K = idx.shape[0]
    if kept == K and s > sq[K - 1] * _HIGH:  # certainly a larger root than the K-th
        return kept
    v = math.sqrt(s)
    if kept == K and (v > val[K - 1] or (v == val[K - 1] and b > idx[K - 1])):
        return kept
    pos = kept if kept < K else K - 1
    while pos > 0 and (val[pos - 1] > v or (val[pos - 1] == v and idx[pos - 1] > b)):
        idx[pos] = idx[pos - 1]
        val[pos] = val[pos - 1]
        sq[pos] = sq[pos - 1]
        pos -= 1
    idx[pos] = b
    val[pos] = v
    sq[pos] = s
    return kept + 1 if kept < K else K


@njit(inline="always")
def _nearest_in_group(S, keys, points, g0, g1, p, q, qv, skip, acc, idx, val, sq, kept, margin):
    """Offer the points at positions [g0, g1) of the sorted copy ``S[0]`` (C, N) to the K-nearest list,
    walking up from position p and then down from p − 1 along ``keys`` until the difference to ``qv``
    exceeds the K-th kept distance (widened by ``margin``); point ``skip`` is left out. Returns kept."""
    K = idx.shape[0]
    h = p
    while h < g1 and keys[h] - qv <= val[K - 1] * margin:
        e = min(h + GROUP_BLOCK, g1)
        _sq_query(S, 0, q, acc, h, e)
        for j in range(h, e):
            if keys[j] - qv > val[K - 1] * margin:
                e = g1  # the side is done
                break
            if points[j] != skip:
                kept = _keep_nearest(idx, val, sq, kept, points[j], acc[j])
        h = e
    low = p - 1
    while low >= g0 and qv - keys[low] <= val[K - 1] * margin:
        b0 = max(g0, low - GROUP_BLOCK + 1)
        _sq_query(S, 0, q, acc, b0, low + 1)
        for j in range(low, b0 - 1, -1):
            if qv - keys[j] > val[K - 1] * margin:
                b0 = g0  # the side is done
                break
            if points[j] != skip:
                kept = _keep_nearest(idx, val, sq, kept, points[j], acc[j])
        low = b0 - 1
    return kept


GROUP_GAP = 0.7071
"""A factor just below 1/√2 (0.70710678…) for :func:`_group_out_of_reach`."""


@njit(inline="always")
def _group_out_of_reach(q, own, c, reach):
    """Whether every point of group c is farther than ``reach`` from q, whose largest coordinate is
    ``own`` ≠ c. A point x of group c has x_c ≥ x_own, and q_own ≥ q_c, so
    (x_c − q_c) − (x_own − q_own) ≥ q_own − q_c ≥ 0 and ‖x − q‖ ≥ (q_own − q_c)/√2 (Cauchy–Schwarz on the
    two coordinates). The rounded gap times :data:`GROUP_GAP` stays below that, and ``reach`` is already
    widened by the window margin, so a skipped group holds no point within it in the kernels' arithmetic
    either. For a confident query every other group is skipped without a search."""
    return (q[own] - q[c]) * GROUP_GAP > reach


@njit(inline="always")
def _nearest_over_groups(S, keys, points, bounds, own, q, skip, acc, idx, val, sq, margin):
    """The K nearest points to q (coordinates ``q``) over every group, its own group ``own`` first."""
    C = bounds.shape[0] - 1
    K = idx.shape[0]
    for k in range(K):
        idx[k] = -1
        val[k] = np.inf
        sq[k] = np.inf
    kept = 0
    for step in range(C):
        c = (own + step) % C
        g0 = bounds[c]
        g1 = bounds[c + 1]
        if g0 == g1 or (step > 0 and _group_out_of_reach(q, own, c, val[K - 1] * margin)):
            continue
        p = g0 + np.searchsorted(keys[g0:g1], q[c])
        kept = _nearest_in_group(S, keys, points, g0, g1, p, q, q[c], skip, acc, idx, val, sq, kept, margin)


NEAREST_TILE = 16
"""Query images handled by one task of :func:`nearest_window` (their scratch is allocated once per tile)."""


@njit(parallel=True, cache=True, nogil=True)
def nearest_window(X, depth, S, keys, points, bounds, queries, out_index, out_value):
    """The K = ``out_index.shape[1]`` nearest images of every query image at one depth: for query
    a = ``queries[m]``, the images j ≠ a in increasing order of (sqrt(Σ_c (X[j, depth, c] −
    X[a, depth, c])²), j) — equal distances to the smaller j — with their distances; −1 / inf past the
    N − 1 others.

    ``X`` (N, D, C) holds the points; ``S``, ``keys``, ``points``, ``bounds`` the depth's class windows
    (:func:`class_windows`; group c at positions bounds[c]..bounds[c+1]−1, sorted by ``keys`` =
    coordinate c). Each query searches its own group outward from its coordinate, then every other
    group's window, and visits only points that can still enter its list: the same list as a scan of all
    N.
    """
    N = X.shape[0]
    C = X.shape[2]
    K = out_index.shape[1]
    margin = _window_margin(C)
    n_tiles = (queries.shape[0] + NEAREST_TILE - 1) // NEAREST_TILE
    for tile in prange(n_tiles):
        acc = np.empty(N)
        sq = np.empty(K)
        for m in range(tile * NEAREST_TILE, min(queries.shape[0], (tile + 1) * NEAREST_TILE)):
            a = queries[m]
            own = _top_coordinate(X, a, depth)
            _nearest_over_groups(
                S, keys, points, bounds, own, X[a, depth], a, acc, out_index[m], out_value[m], sq, margin
            )


NEAR_SEEDS = 8
"""Points nearest to a query group at t0 whose exact values seed the incumbent in :func:`min_max_window`."""


@njit(parallel=True, cache=True, nogil=True)
def min_max_window(X, Q, order, S, keys, points, bounds, seeds, groups, out_value, out_index):
    """For every query m: min over points b of max_t sqrt(Σ_c (X[b, t, c] − Q[m, t, c])²), argmin b (ties:
    the smaller b).

    ``X`` (N, D, C) holds the points, ``order`` the depths with the pruning depth t0 first, ``S``,
    ``keys``, ``points``, ``bounds`` the class windows of depth t0 (:func:`class_windows`). Queries
    ``groups[g]..groups[g+1]-1`` share their coordinates at t0. Per group: its :data:`NEAR_SEEDS` nearest
    points at t0; each query's incumbent = the best exact value among those and its ``seeds[m]``; the
    candidates = the points of every class window within the group's widest incumbent whose d_t0 (a lower
    bound of the max) is within it; each query checks them depth by depth with early abandoning. Every
    other point is strictly worse than the incumbent; the tie rule is applied explicitly, so the order of
    the checks does not matter.
    """
    N = X.shape[0]
    C = X.shape[2]
    G = groups.shape[0] - 1
    t0 = order[0]
    margin = _window_margin(C)
    for g in prange(G):
        m0 = groups[g]
        q = Q[m0, t0]
        acc = np.empty(N)
        near = np.empty(min(NEAR_SEEDS, N), dtype=np.int64)
        near_v = np.empty(near.shape[0])
        near_s = np.empty(near.shape[0])
        own = _top_coordinate(Q, m0, t0)
        _nearest_over_groups(S, keys, points, bounds, own, q, -1, acc, near, near_v, near_s, margin)
        # each query's incumbent from its seeds and the group's near points
        widest = 0.0
        for m in range(groups[g], groups[g + 1]):
            best = np.inf
            best_b = N
            for k in range(seeds.shape[1] + near.shape[0]):
                b = seeds[m, k] if k < seeds.shape[1] else near[k - seeds.shape[1]]
                v = math.sqrt(_max_sq_within(X, order, b, Q, m, _sq_dist(X, t0, b, Q, m), np.inf, 0)[0])
                if v < best or (v == best and b < best_b):
                    best = v
                    best_b = b
            out_value[m] = best
            out_index[m] = best_b
            widest = max(widest, _threshold(best, 0.0))
        # the candidates: every window's points whose d_t0 is within the widest incumbent
        limit = math.sqrt(widest) * margin
        cand = np.empty(N, dtype=np.int64)
        cand_s = np.empty(N)
        n_cand = 0
        for c in range(C):
            g0 = bounds[c]
            g1 = bounds[c + 1]
            if g0 == g1 or (c != own and _group_out_of_reach(q, own, c, limit)):
                continue
            p = g0 + np.searchsorted(keys[g0:g1], q[c])
            lo = p
            while lo > g0 and q[c] - keys[lo - 1] <= limit:
                lo -= 1
            hi = p
            while hi < g1 and keys[hi] - q[c] <= limit:
                hi += 1
            if hi > lo:
                _sq_query(S, 0, q, acc, lo, hi)
                for j in range(lo, hi):
                    if acc[j] <= widest:
                        cand[n_cand] = points[j]
                        cand_s[n_cand] = acc[j]
                        n_cand += 1
        for m in range(groups[g], groups[g + 1]):
            best = out_value[m]
            best_b = out_index[m]
            thr = _threshold(best, 0.0)
            hot = 0  # the position in order of the depth that rejected the query's last candidate
            for k in range(n_cand):
                b = cand[k]
                if cand_s[k] > thr:
                    continue
                smax, hot = _max_sq_within(X, order, b, Q, m, cand_s[k], thr, hot)
                if smax == np.inf:
                    continue
                v = math.sqrt(smax)
                if v < best or (v == best and b < best_b):
                    best = v
                    best_b = b
                    thr = _threshold(best, 0.0)
            out_value[m] = best
            out_index[m] = best_b
