"""Lipschitz constants of the head g: LipSDP (Neuron and Layer), the closed form of a linear head, the
softmax factor 1/2, and a Jacobian lower bound (paper §3 "Lipschitz constant", Theorem 1; method §3.3).

The network is f(x) = W_L σ(W_{L-1} … σ(W_0 x + b_0) … + b_{L-1}) + b_L with σ = ReLU (slope-restricted
in [α, β] = [0, 1]); weights are stored (out, in) as in torch and in LipSDP's ``.mat`` files. Biases do
not change a Lipschitz constant, so the SDP takes the weights only.

LipSDP (Fazlyab et al. 2019, Theorem 2; the LMI as built by LipSDP's ``lipschitz_multi_layer.m``): with
hidden widths h_1..h_L, N = Σ h_k, and the stacked vector z = (x, v_1, …, v_L) of input and hidden
activations, f is √ρ-Lipschitz if some T = blkdiag(T_1, …, T_L) ⪰ 0 (diagonal) satisfies

    [A; B]ᵀ [[−2αβ T, (α+β) T], [(α+β) T, −2 T]] [A; B] − blkdiag(ρ I_n, 0, …, 0, −W_Lᵀ W_L) ⪯ 0,

A = [blkdiag(W_0, …, W_{L-1}), 0] (the pre-activations), B = [0, I_N] (the activations). With α = 0,
β = 1 this is the block-tridiagonal matrix

    S(ρ, T) = [[ −ρ I_n,    W_0ᵀ T_1,                                 ],
               [ T_1 W_0,   −2 T_1,     W_1ᵀ T_2,                     ],
               [            T_2 W_1,    −2 T_2,    …                  ],
               [                        …          −2 T_L + W_Lᵀ W_L ]]  ⪯ 0.

LipSDP-Neuron: T_k = diag(λ_k), λ_k ∈ R^{h_k}_{≥0} (one multiplier per hidden neuron).
LipSDP-Layer:  T_k = λ_k I_{h_k}, λ_k ≥ 0 (one multiplier per hidden layer); a subset of Neuron's T, so
Layer ≥ Neuron. Both minimise ρ; the bound is L = √ρ.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cvxpy as cp
import numpy as np
import scipy.io
import scipy.linalg
from tqdm import tqdm

from resdyn.config import schema_defaults
from resdyn.io import InputError

log = logging.getLogger(__name__)

SOFTMAX_LIPSCHITZ = 0.5
"""Lipschitz constant of softmax: R^C → R^C in the 2-norm (see :func:`softmax_jacobian_norm`)."""

FORMS = ("neuron", "layer")
SOLVERS = ("SCS", "CLARABEL")
DEFAULT_SOLVER = schema_defaults("lipschitz")["solver"]
DEFAULT_EPS = schema_defaults("lipschitz")["eps"]


class LipSDPSolverError(RuntimeError):
    """The SDP solver did not return status 'optimal': its value is no certificate."""


@dataclass(frozen=True)
class LipSDPResult:
    """One LipSDP solve.

    ``value`` = √ρ from the solver; ``status`` is cvxpy's status string; ``tolerance`` the solver's
    eps (SCS eps_abs = eps_rel; Clarabel gap and feasibility tolerances); ``form`` "neuron"/"layer".
    ``certified`` = √ρ* with ρ* the smallest ρ for which S(ρ, T) ⪯ 0 holds exactly (float64
    eigen-computation) for the solver's multipliers T: a true upper bound even when the solver's own ρ
    sits slightly below the optimum because of its tolerance (NaN if the returned T cannot be
    certified). ``reduced`` tells whether the first block was reduced to rank(W_0); ``lmi_size`` is
    the order of the LMI that was solved. ``multipliers`` are the solver's per-neuron λ_k (for the
    normalised weights W_k / ‖W_k‖₂ when the solve was normalised); :func:`certify_multipliers` checks
    them in the LMI of another, equivalent formulation (e.g. the unreduced one).
    """

    value: float
    status: str
    solver: str
    tolerance: float
    seconds: float
    form: str
    certified: float = math.nan
    reduced: bool = True
    lmi_size: int = 0
    multipliers: tuple = field(default=(), repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (NaN → None; the multiplier arrays are left out)."""
        return {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in asdict(self).items()
            if k != "multipliers"
        }


# ----------------------------------------------------------------------------------------------------
# Closed forms


def linear_head_lipschitz(weight: np.ndarray) -> float:
    """Lip_FC of the linear head x ↦ W x + b: ‖W‖₂, the largest singular value (method §3.3).

    This is exactly what the paper's LipSDP-Neuron run on the two-layer ReLU net [I, W] returns (paper §3:
    an identity layer in front of the trained FC layer):
      - upper: T = ρ I makes S(ρ, T) = [[−ρI, ρI], [ρI, −2ρI + WᵀW]] ⪯ 0 iff (Schur complement of
        −ρI) −ρI + WᵀW ⪯ 0, i.e. at ρ = ‖W‖₂², so LipSDP-Neuron ≤ ‖W‖₂;
      - lower: x ↦ W ReLU(x) equals x ↦ W x on the positive orthant, which contains a ball around
        c·1 (c > 0) in which every direction is available, so its Lipschitz constant is ‖W‖₂; LipSDP
        is an upper bound of it, so LipSDP-Neuron ≥ ‖W‖₂.
    Hence the SDP on [I, W] (size 2n = 8192 for the paper's heads) is replaced by one SVD.
    """
    weight = _as_matrix(weight, "head weight")
    return float(np.linalg.norm(weight, 2))


def softmax_jacobian_norm(p: np.ndarray) -> float:
    """Spectral norm of the softmax Jacobian diag(p) − p pᵀ at the probability vector p.

    It is ≤ 1/2 for every p (so Lip(softmax) ≤ 1/2 and Lip(g) ≤ Lip_FC / 2, method §3.3): J is symmetric
    PSD (uᵀJu = Σ p_i u_i² − (Σ p_i u_i)² is a variance), and by Gershgorin every eigenvalue is at most
    J_ii + Σ_{j≠i} |J_ij| = p_i(1 − p_i) + p_i Σ_{j≠i} p_j = 2 p_i (1 − p_i) ≤ 1/2. The bound is attained
    at p = (1/2, 1/2, 0, …): eigenvector (1, −1, 0, …)/√2. The mean-value theorem on the (convex) logit
    space turns the Jacobian bound into the Lipschitz bound.
    """
    p = np.asarray(p, dtype=np.float64)
    if p.ndim != 1 or p.size == 0:
        raise ValueError(f"probability vector must be 1-D and non-empty, got shape {p.shape}")
    jac = np.diag(p) - np.outer(p, p)
    return float(np.linalg.eigvalsh(jac)[-1])


def spectral_product(weights: Sequence[np.ndarray]) -> float:
    """The naive upper bound Π_k ‖W_k‖₂ (ReLU is 1-Lipschitz, composition multiplies constants)."""
    return float(np.prod([np.linalg.norm(_as_matrix(w, f"weight {k}"), 2) for k, w in enumerate(weights)]))


# ----------------------------------------------------------------------------------------------------
# LipSDP


def reduce_first_layer(weights: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Exact reduction of LipSDP's input block (method §3.3): replace W_0 (h_1 × n) by U_r Σ_r (h_1 × r).

    With W_0 = U Σ Vᵀ and r = rank(W_0) (numpy's matrix_rank tolerance), congruence of S(ρ, T) by
    P = blkdiag([V_r, V_⊥], I_N) (orthogonal) gives
        Pᵀ S P = [[−ρ I_r, Σ_r U_rᵀ T_1, …], [0 (the V_⊥ rows), −ρ I_{n−r}, 0], [T_1 U_r Σ_r, …]],
    because W_0 V_⊥ = 0: the input enters S only through W_0 and ρ I_n. The (n − r) block −ρ I_{n−r}
    decouples and only asks ρ ≥ 0; congruence preserves ⪯ 0; so S(ρ, T) ⪯ 0 iff the reduced matrix
    (W_0 replaced by U_r Σ_r = W_0 V_r) is ⪯ 0 and ρ ≥ 0, for every T: same feasible set, same optimum.
    (Equivalently, x ↦ V_rᵀ x is a co-isometry onto R^r, so f and its reduced net have one Lipschitz
    constant.) Singular values below the rank tolerance are dropped, which perturbs the value by at most
    that relative amount (≈ 1e-13).
    """
    weights = [np.asarray(w, dtype=np.float64) for w in weights]
    u, s, _ = np.linalg.svd(weights[0], full_matrices=False)
    tol = s.max(initial=0.0) * max(weights[0].shape) * np.finfo(np.float64).eps
    rank = int(np.sum(s > tol))
    return [u[:, :rank] * s[:rank]] + weights[1:]


def lipsdp(
    weights: Sequence[np.ndarray],
    form: str = "neuron",
    solver: str = DEFAULT_SOLVER,
    eps: float = DEFAULT_EPS,
    *,
    reduce: bool = True,
    normalize: bool = True,
    max_iters: int = 200_000,
    time_limit: float | None = None,
    require_optimal: bool = True,
    verbose: bool = False,
) -> LipSDPResult:
    """LipSDP-Neuron or LipSDP-Layer upper bound of the Lipschitz constant of a ReLU net (module docstring).

    Minimise ρ over ρ ≥ 0, T ⪰ 0 (diagonal per neuron, or λ_k I per layer) subject to S(ρ, T) ⪯ 0, and
    return L = √ρ (Fazlyab et al. 2019, Theorem 2 with α = 0, β = 1; paper §3; method §3.3).

    ``weights`` = [W_0, …, W_L], (out, in) each, L ≥ 1 (at least one ReLU layer; a single linear map is
    :func:`linear_head_lipschitz`). ``solver`` "SCS" (eps_abs = eps_rel = ``eps``) or "CLARABEL"
    (gap and feasibility tolerances = ``eps``). ``reduce`` applies :func:`reduce_first_layer` (exact);
    ``normalize`` solves for W_k / ‖W_k‖₂ and multiplies √ρ back by Π ‖W_k‖₂, exact because ReLU is
    positively homogeneous: the diagonal congruence z ↦ (x, c_1 v_1, c_1 c_2 v_2, …) maps feasible
    (ρ, T) of one problem to feasible points of the other with ρ scaled by Π c_k², and it keeps the
    solver's tolerance relative to a well-scaled problem. A status other than "optimal" raises
    :class:`LipSDPSolverError` unless ``require_optimal`` is False (then the status is in the result).
    ``time_limit`` (seconds, optional) stops the solver early; its status is then not "optimal".
    """
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS}, got {form!r}")
    solver = solver.upper()
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
    if not (eps > 0 and math.isfinite(eps)):
        raise ValueError(f"solver tolerance eps must be positive and finite, got {eps!r}")
    weights = check_weights(weights)
    if len(weights) < 2:
        raise ValueError(
            "LipSDP needs at least one hidden ReLU layer (two weights); "
            "a linear map's constant is linear_head_lipschitz(W) = ‖W‖₂"
        )

    start = time.perf_counter()
    norms = [float(np.linalg.norm(w, 2)) for w in weights]
    if min(norms) == 0.0:
        # A zero weight makes f constant: Lip = 0 exactly, nothing to solve.
        return LipSDPResult(
            0.0, cp.OPTIMAL, solver, float(eps), time.perf_counter() - start, form, 0.0, reduce, 0
        )
    scale = 1.0
    if normalize:
        weights = [w / c for w, c in zip(weights, norms)]
        scale = float(np.prod(norms))
    if reduce:
        weights = reduce_first_layer(weights)

    rho = cp.Variable(nonneg=True)
    hidden = [w.shape[0] for w in weights[:-1]]
    if form == "neuron":
        multipliers = [cp.Variable(h, nonneg=True) for h in hidden]
    else:
        multipliers = [cp.Variable(nonneg=True) for _ in hidden]
    lmi = _lipsdp_matrix(weights, rho, multipliers, form)
    problem = cp.Problem(cp.Minimize(rho), [-lmi >> 0])
    options: dict[str, Any]
    if solver == "SCS":
        options = {"eps_abs": eps, "eps_rel": eps, "max_iters": max_iters}
    else:
        options = {"tol_gap_abs": eps, "tol_gap_rel": eps, "tol_feas": eps, "max_iter": 1000}
    if time_limit is not None:
        options["time_limit_secs" if solver == "SCS" else "time_limit"] = float(time_limit)
    try:
        problem.solve(solver=solver, verbose=verbose, **options)
    except cp.error.SolverError as err:
        raise LipSDPSolverError(f"LipSDP-{form} with {solver} (eps={eps:g}) failed: {err}") from err
    seconds = time.perf_counter() - start
    status = str(problem.status)
    if status != cp.OPTIMAL and require_optimal:
        raise LipSDPSolverError(
            f"LipSDP-{form} with {solver} (eps={eps:g}) ended with status '{status}' "
            f"(value {problem.value}); a non-optimal solve is no certificate"
        )
    value = math.sqrt(max(float(rho.value), 0.0)) * scale if rho.value is not None else math.nan
    lam = [
        np.atleast_1d(np.asarray(m.value, dtype=np.float64)) if m.value is not None else None
        for m in multipliers
    ]
    certified, blocks = math.nan, ()
    if all(x is not None for x in lam):
        blocks = tuple(np.broadcast_to(x, (h,)) for x, h in zip(lam, hidden))
        certified = math.sqrt(certify_rho(weights, blocks)) * scale
    return LipSDPResult(
        value,
        status,
        solver,
        float(eps),
        seconds,
        form,
        certified,
        reduce,
        int(weights[0].shape[1] + sum(hidden)),
        blocks,
    )


def certify_multipliers(
    weights: Sequence[np.ndarray], multipliers: Sequence[np.ndarray], *, normalize: bool = True
) -> float:
    """√ρ* for fixed per-neuron multipliers in the *unreduced* LipSDP LMI of ``weights`` (float64).

    The reduction of the first block changes only W_0 (to U_r Σ_r), not the multipliers, so the λ_k of a
    reduced solve can be checked directly in the full LMI: by the exactness of the reduction the two
    certified values agree up to rounding. ``normalize`` must match the solve that produced the
    multipliers (the default of :func:`lipsdp`).
    """
    weights = check_weights(weights)
    scale = 1.0
    if normalize:
        norms = [float(np.linalg.norm(w, 2)) for w in weights]
        weights = [w / c for w, c in zip(weights, norms)]
        scale = float(np.prod(norms))
    return math.sqrt(certify_rho(weights, multipliers)) * scale


def _lipsdp_matrix(
    weights: list[np.ndarray], rho: cp.Variable, multipliers: list[cp.Variable], form: str
) -> cp.Expression:
    """S(ρ, T) of the module docstring as a symmetric cvxpy block matrix."""
    n_in = weights[0].shape[1]
    dims = [n_in] + [w.shape[0] for w in weights[:-1]]
    n_blocks = len(dims)

    def t_times(k: int, matrix: np.ndarray) -> cp.Expression:
        # T_k @ matrix, with T_k = diag(λ_k) or λ_k I (k counts hidden layers from 1).
        lam = multipliers[k - 1]
        return cp.diag(lam) @ matrix if form == "neuron" else lam * matrix

    def t_block(k: int) -> cp.Expression:
        lam = multipliers[k - 1]
        return cp.diag(lam) if form == "neuron" else lam * np.eye(dims[k])

    grid: list[list[Any]] = [[np.zeros((dims[a], dims[b])) for b in range(n_blocks)] for a in range(n_blocks)]
    grid[0][0] = -rho * np.eye(n_in)
    last = weights[-1]
    for k in range(1, n_blocks):
        coupling = t_times(k, weights[k - 1])  # T_k W_{k-1}: (h_k × dims[k-1])
        grid[k][k - 1] = coupling
        grid[k - 1][k] = coupling.T
        diagonal = -2 * t_block(k)
        if k == n_blocks - 1:
            diagonal = diagonal + last.T @ last
        grid[k][k] = diagonal
    return cp.bmat(grid)


def certify_rho(weights: Sequence[np.ndarray], multipliers: Sequence[np.ndarray]) -> float:
    """Smallest ρ with S(ρ, T) ⪯ 0 for fixed per-neuron multipliers (λ_1, …, λ_L), in float64.

    Write S = [[−ρ I_n, B], [Bᵀ, C]] with B = [W_0ᵀ T_1, 0, …] and C the hidden block. If C ≺ 0, the
    Schur complement gives S ⪯ 0 iff ρ ≥ λ_max(B (−C)⁻¹ Bᵀ) = ‖L⁻¹ Bᵀ‖₂² with −C = L Lᵀ (Cholesky).
    A solver's T can sit on the boundary C ⊀ 0 because of its tolerance, so T is first floored at
    1e-9 · max λ and, if C is still not negative definite, scaled by 1 + s (s = 1e-8 … 1e-1): S is affine
    in T, C(sT) = s C_T + W_Lᵀ W_L, so a slightly larger T restores C ≺ 0 at a slightly larger ρ. The
    smallest ρ over those tries is returned; inf when none certifies.
    """
    weights = [np.asarray(w, dtype=np.float64) for w in weights]
    lam = [np.clip(np.asarray(x, dtype=np.float64), 0.0, None) for x in multipliers]
    top = max((float(x.max(initial=0.0)) for x in lam), default=0.0)
    if top <= 0.0:
        return math.inf
    lam = [np.maximum(x, 1e-9 * top) for x in lam]
    dims = [w.shape[0] for w in weights[:-1]]
    offsets = np.concatenate([[0], np.cumsum(dims)])
    best = math.inf
    for s in (0.0, 1e-8, 1e-6, 1e-4, 1e-2, 1e-1):
        t = [(1.0 + s) * x for x in lam]
        c = np.zeros((offsets[-1], offsets[-1]))
        for k in range(len(dims)):
            a, b = offsets[k], offsets[k + 1]
            c[a:b, a:b] = -2.0 * np.diag(t[k])
            if k + 1 < len(dims):
                coupling = t[k + 1][:, None] * weights[k + 1]  # T_{k+1} W_{k+1}
                c[b : offsets[k + 2], a:b] = coupling
                c[a:b, b : offsets[k + 2]] = coupling.T
        a = offsets[len(dims) - 1]
        c[a:, a:] += weights[-1].T @ weights[-1]
        try:
            chol = scipy.linalg.cholesky(-c, lower=True)
        except np.linalg.LinAlgError:
            continue
        b_t = np.zeros((offsets[-1], weights[0].shape[1]))
        b_t[: dims[0]] = t[0][:, None] * weights[0]  # Bᵀ = [T_1 W_0; 0]
        x = scipy.linalg.solve_triangular(chol, b_t, lower=True)
        best = min(best, float(np.linalg.norm(x, 2)) ** 2)
        if s == 0.0:
            break
    return best


# ----------------------------------------------------------------------------------------------------
# Lower bound and the head summary


@dataclass(frozen=True)
class JacobianLowerBound:
    """max ‖J_f(x)‖₂ over the points where f is differentiable; ``index`` is that point's index (in the
    leading dimensions of ``points``); ``n_skipped`` points lay on a ReLU kink and were left out."""

    value: float
    index: tuple[int, ...]
    n_points: int
    n_skipped: int


def relu_net_forward(layers: Sequence[tuple[np.ndarray, np.ndarray]], x: np.ndarray) -> np.ndarray:
    """f(x) for rows x: ReLU between layers, none after the last (the head layout of ARCHITECTURE.md)."""
    h = np.asarray(x, dtype=np.float64)
    for k, (w, b) in enumerate(layers):
        h = h @ np.asarray(w, dtype=np.float64).T + np.asarray(b, dtype=np.float64)
        if k + 1 < len(layers):
            h = np.maximum(h, 0.0)
    return h


def jacobian_lower_bound(
    layers: Sequence[tuple[np.ndarray, np.ndarray]], points: Any, *, chunk: int = 128
) -> JacobianLowerBound:
    """Lower bound of Lip(f): max over points x of ‖J_f(x)‖₂, J_f(x) = W_L D_L(x) W_{L-1} ⋯ D_1(x) W_0.

    D_k(x) = diag(1[W_{k-1} v_{k-1} + b_{k-1} > 0]). Where no pre-activation is zero, f is affine on a
    neighbourhood of x with linear part J_f(x), so Lip(f) ≥ ‖J_f(x)‖₂ (method §3.3). A point with a
    pre-activation within float64 rounding of 0 (|h_i| ≤ 4 d ε (|W_i|·|v| + |b_i|), d the fan-in) may be
    a kink where no convention for σ'(0) is safe, so it is skipped and counted. ``points`` is any array
    (or h5py dataset) with the input dimension last, e.g. states (N, T+1, n); it is read ``chunk`` rows
    of its first axis at a time. ‖J‖₂² is the top eigenvalue of M (W_0 W_0ᵀ) Mᵀ with
    M = W_L D_L ⋯ W_1 D_1 (C × h_1), so the n-wide W_0 enters once through its Gram matrix.
    """
    layers = [(np.asarray(w, dtype=np.float64), np.asarray(b, dtype=np.float64)) for w, b in layers]
    check_weights([w for w, _ in layers])
    shape = tuple(points.shape)
    n_in = layers[0][0].shape[1]
    if len(shape) < 2 or shape[-1] != n_in:
        raise ValueError(f"points must have the input dimension {n_in} last, got shape {shape}")
    lead = shape[:-1]
    if len(layers) == 1:
        value = linear_head_lipschitz(layers[0][0])
        return JacobianLowerBound(value, (0,) * len(lead), int(np.prod(lead)), 0)
    gram = layers[0][0] @ layers[0][0].T
    rows_per_item = int(np.prod(shape[1:-1], dtype=np.int64)) if len(shape) > 2 else 1
    best, best_flat, skipped = -math.inf, -1, 0
    unit = 4 * np.finfo(np.float64).eps
    for start in tqdm(range(0, shape[0], chunk), desc="jacobian lower bound", disable=None):
        block = np.asarray(points[start : start + chunk], dtype=np.float64).reshape(-1, n_in)
        v = block
        masks = []
        smooth = np.ones(block.shape[0], dtype=bool)
        for w, b in layers[:-1]:
            h = v @ w.T + b
            slack = unit * w.shape[1] * (np.abs(v) @ np.abs(w).T + np.abs(b))
            smooth &= ~np.any(np.abs(h) <= slack, axis=1)
            active = h > 0
            masks.append(active)
            v = np.where(active, h, 0.0)
        # M_b = W_L D_L W_{L-1} ⋯ W_1 D_1 for every point b: (B, C, h_1).
        m = np.broadcast_to(layers[-1][0], (block.shape[0],) + layers[-1][0].shape) * masks[-1][:, None, :]
        for k in range(len(layers) - 2, 0, -1):
            m = (m @ layers[k][0]) * masks[k - 1][:, None, :]
        sq = np.linalg.eigvalsh(m @ gram @ m.transpose(0, 2, 1))[:, -1]
        skipped += int(np.sum(~smooth))
        sq = np.where(smooth, sq, -math.inf)
        if sq.size and np.max(sq) > best:
            best = float(np.max(sq))
            best_flat = start * rows_per_item + int(np.argmax(sq))
    n_points = int(np.prod(lead))
    if best_flat < 0:
        return JacobianLowerBound(math.nan, (), n_points, skipped)
    index = tuple(int(i) for i in np.unravel_index(best_flat, lead))
    return JacobianLowerBound(math.sqrt(max(best, 0.0)), index, n_points, skipped)


def depth_heads_lipschitz(weights: np.ndarray) -> dict[str, Any]:
    """Lipschitz constants of per-depth linear heads g_t(x) = softmax(W_t x + b_t), t = 0..T (method §3.5).

    Each depth gets ‖W_t‖₂ (its Lip_FC, exactly: :func:`linear_head_lipschitz`) and ‖W_t‖₂/2 (with the
    softmax). Theorem 1 needs one Lipschitz constant valid for the map g applied along the whole orbit, so
    ``fc`` and ``g`` are the largest over depths: an upper bound for every g_t, hence T_g ≥ Sh / max_t
    Lip(g_t) holds whichever depth the shadowing error is attained at.

    Returns the keys of :func:`head_lipschitz` (``fc``, ``g``, ``certified``, ...) plus ``per_depth``
    (a list of {depth, fc, g}) and ``details.argmax_depth``.
    """
    weights = np.asarray(weights, dtype=np.float64)
    if weights.ndim != 3 or not weights.shape[0]:
        raise InputError(f"per-depth head weights must be (T+1, C, n), got shape {weights.shape}")
    norms = [linear_head_lipschitz(w) for w in weights]
    top = int(np.argmax(norms))
    return {
        "lipsdp_neuron": norms[top],
        "lipsdp_layer": norms[top],
        "spectral_product": norms[top],
        "jacobian_lower": norms[top],
        "fc": norms[top],
        "g": norms[top] * SOFTMAX_LIPSCHITZ,
        "certified": True,
        "softmax_factor": SOFTMAX_LIPSCHITZ,
        "per_depth": [{"depth": t, "fc": v, "g": v * SOFTMAX_LIPSCHITZ} for t, v in enumerate(norms)],
        "details": {
            "method": "closed form ‖W_t‖₂ per depth; fc and g the largest over depths",
            "argmax_depth": top,
        },
    }


def head_lipschitz(
    layers: Sequence[tuple[np.ndarray, np.ndarray]],
    points: Any = None,
    *,
    solver: str = DEFAULT_SOLVER,
    eps: float = DEFAULT_EPS,
) -> dict[str, Any]:
    """Lipschitz bounds of the head's logit map f = W_L σ(… σ(W_0 x + b_0) …) + b_L (method §3.3).

    Returns a JSON-ready dict:
      ``lipsdp_neuron``, ``lipsdp_layer`` (certified upper bounds, LipSDP-Neuron ≤ LipSDP-Layer),
      ``spectral_product`` (Π ‖W_k‖₂, the naive upper bound), ``jacobian_lower`` (max ‖J_f‖₂ over
      ``points``, None without points), ``fc`` (the reported Lip_FC: the tightest certified upper bound,
      LipSDP-Neuron) and ``g`` = fc · 1/2 (Lip(g) with the softmax), ``certified`` (whether ``fc`` is a
      float64-certified upper bound; when the certificate fails it is the solver's value, flagged, with
      a warning and ``details.uncertified_reason``), and ``details`` (solver, status, tolerance, seconds
      per form; the lower bound's point index and skip count).
    For a single linear layer every entry is ‖W‖₂ exactly (see :func:`linear_head_lipschitz`).
    """
    layers = [(np.asarray(w, dtype=np.float64), np.asarray(b, dtype=np.float64)) for w, b in layers]
    weights = check_weights([w for w, _ in layers])
    details: dict[str, Any] = {"n_layers": len(weights), "method": None}
    if len(weights) == 1:
        norm = linear_head_lipschitz(weights[0])
        details["method"] = "closed form ‖W‖₂ (equals LipSDP-Neuron on [I, W])"
        result = {
            "lipsdp_neuron": norm,
            "lipsdp_layer": norm,
            "spectral_product": norm,
            "jacobian_lower": norm,
            "fc": norm,
            "certified": True,
        }
    else:
        neuron = lipsdp(weights, "neuron", solver, eps)
        layer = lipsdp(weights, "layer", solver, eps)
        details["method"] = "LipSDP (certified value; solver value in details)"
        details["neuron"] = neuron.to_dict()
        details["layer"] = layer.to_dict()
        # The certified √ρ* is a true upper bound; the solver's own ρ may undershoot by its tolerance, so
        # a value without a certificate is reported as such, never as a bound.
        neuron_value = neuron.certified if math.isfinite(neuron.certified) else neuron.value
        layer_value = layer.certified if math.isfinite(layer.certified) else layer.value
        certified = math.isfinite(neuron.certified)
        if not certified:
            details["uncertified_reason"] = (
                f"the float64 check of LipSDP-Neuron's multipliers ({solver}, status {neuron.status}) "
                f"found no ρ with S(ρ, T) ⪯ 0: fc = {neuron.value:.6g} is the solver's value, "
                "which can lie below the optimum; the spectral product "
                f"{spectral_product(weights):.6g} is a certified (looser) bound"
            )
            log.warning("Lip_FC is NOT certified: %s", details["uncertified_reason"])
        lower = None
        if points is not None:
            bound = jacobian_lower_bound(layers, points)
            lower = None if math.isnan(bound.value) else bound.value
            details["jacobian_lower"] = {
                "index": list(bound.index),
                "n_points": bound.n_points,
                "n_skipped": bound.n_skipped,
            }
        result = {
            "lipsdp_neuron": neuron_value,
            "lipsdp_layer": layer_value,
            "spectral_product": spectral_product(weights),
            "jacobian_lower": lower,
            "fc": neuron_value,
            "certified": certified,
        }
    result["g"] = result["fc"] * SOFTMAX_LIPSCHITZ
    result["softmax_factor"] = SOFTMAX_LIPSCHITZ
    result["details"] = details
    return result


# ----------------------------------------------------------------------------------------------------
# Weights I/O


def check_weights(weights: Sequence[Any], source: str = "weights") -> list[np.ndarray]:
    """Float64 copies of [W_0, …, W_L], checked: 2-D, finite, non-empty, and chained (W_{k+1} has as
    many columns as W_k has rows). Raises :class:`InputError` naming ``source`` and the layer."""
    out = []
    if len(weights) == 0:
        raise InputError(f"{source}: no weight matrices")
    for k, w in enumerate(weights):
        w = _as_matrix(w, f"{source}: weight {k}")
        if k and w.shape[1] != out[-1].shape[0]:
            raise InputError(
                f"{source}: weight {k} has {w.shape[1]} columns but weight {k - 1} has "
                f"{out[-1].shape[0]} rows (shapes {out[-1].shape} → {w.shape})"
            )
        out.append(w)
    return out


def _as_matrix(w: Any, name: str) -> np.ndarray:
    try:
        w = np.asarray(w, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise InputError(f"{name}: not a numeric matrix ({err})") from None
    if w.ndim != 2 or w.size == 0:
        raise InputError(f"{name}: expected a non-empty 2-D matrix, got shape {w.shape}")
    if not np.all(np.isfinite(w)):
        raise InputError(f"{name}: contains NaN or inf")
    return w


def load_weights(path: str | Path) -> list[np.ndarray]:
    """Weights [W_0, …, W_L] (out, in) from LipSDP's ``.mat`` (cell array ``weights``) or an ``.npz``
    (arrays ``weight_0``, ``weight_1``, …; or ``arr_0``, … as written by ``np.savez(*list)``; or one
    object array ``weights``). Raises :class:`InputError` naming the file and key on bad input."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: file not found")
    suffix = path.suffix.lower()
    if suffix == ".mat":
        try:
            data = scipy.io.loadmat(path)
        except Exception as err:  # scipy raises several types for corrupt files
            raise InputError(f"{path}: not a readable MATLAB .mat file ({err})") from None
        if "weights" not in data:
            keys = ", ".join(k for k in data if not k.startswith("__")) or "none"
            raise InputError(f"{path}: no variable 'weights' (found: {keys})")
        cell = data["weights"]
        items = list(cell.ravel()) if cell.dtype == object else [cell]
        return check_weights(items, f"{path}:weights")
    if suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as data:
                keys = list(data.keys())
                for prefix in ("weight_", "arr_"):
                    numbered = sorted(
                        (int(k[len(prefix) :]), k)
                        for k in keys
                        if k.startswith(prefix) and k[len(prefix) :].isdigit()
                    )
                    if numbered:
                        if [i for i, _ in numbered] != list(range(len(numbered))):
                            raise InputError(
                                f"{path}: keys {[k for _, k in numbered]} are not numbered "
                                f"0..{len(numbered) - 1} without gaps"
                            )
                        return check_weights([data[k] for _, k in numbered], str(path))
                if "weights" in keys:
                    stacked = data["weights"]
                    return check_weights(list(stacked) if stacked.ndim == 3 else [stacked], f"{path}:weights")
        except InputError:
            raise
        except Exception as err:
            raise InputError(f"{path}: not a readable .npz file ({err})") from None
        raise InputError(
            f"{path}: no arrays named weight_0, weight_1, … (found: {', '.join(keys) or 'none'})"
        )
    raise InputError(f"{path}: unknown weight file type '{suffix}' (expected .mat or .npz)")


# ----------------------------------------------------------------------------------------------------
# Command line


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m resdyn.lipschitz --form neuron|layer [--solver SCS|CLARABEL] [--eps 1e-6] FILE``.

    Prints one line per file; its last number is the LipSDP value √ρ, preceded by the status, solver,
    tolerance, time and the float64-certified value.
    """
    parser = argparse.ArgumentParser(
        prog="python -m resdyn.lipschitz",
        description="LipSDP Lipschitz bound of a ReLU network (.mat or .npz weights)",
    )
    parser.add_argument("--form", choices=FORMS, default="neuron")
    parser.add_argument("--solver", type=str.upper, choices=SOLVERS, default=DEFAULT_SOLVER)
    parser.add_argument("--eps", type=float, default=DEFAULT_EPS, help="solver tolerance (default 1e-6)")
    parser.add_argument("--no-reduce", action="store_true", help="solve the unreduced LMI")
    parser.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args(argv)
    code = 0
    for path in args.files:
        try:
            result = lipsdp(
                load_weights(path),
                args.form,
                args.solver,
                args.eps,
                reduce=not args.no_reduce,
                require_optimal=False,
            )
        except (InputError, LipSDPSolverError) as err:
            print(f"error: {err}", file=sys.stderr)
            code = 1
            continue
        flag = "" if result.status == cp.OPTIMAL else "  NOT OPTIMAL, NO CERTIFICATE:"
        print(
            f"{path.name}: LipSDP-{args.form} status={result.status} solver={result.solver} "
            f"eps={result.tolerance:g} seconds={result.seconds:.2f} lmi_size={result.lmi_size} "
            f"certified={result.certified:.6f}{flag} L={result.value:.6f}"
        )
        if result.status != cp.OPTIMAL:
            code = 1
    return code


if __name__ == "__main__":
    sys.exit(main())
