"""Tests of resdyn.lipschitz: LipSDP against LipSDP's published values, the exact reduction, the [I, W]
closed form, the softmax 1/2, the ordering of the bounds, the Jacobian lower bound and weight loading."""

from __future__ import annotations

import math
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io

from resdyn.io import InputError
from resdyn.lipschitz import (
    SOFTMAX_LIPSCHITZ,
    LipSDPSolverError,
    certify_rho,
    head_lipschitz,
    jacobian_lower_bound,
    linear_head_lipschitz,
    lipsdp,
    load_weights,
    main,
    reduce_first_layer,
    relu_net_forward,
    softmax_jacobian_norm,
    spectral_product,
)

# LipSDP's example networks, vendored with their origin and licence (tests/data/lipsdp/README.md).
RANDOM_MAT = Path(__file__).resolve().parent / "data" / "lipsdp" / "random_weights.mat"

# LipSDP's README values for random_weights.mat (2 → 10 → 30 → 20 → 2), printed to 3 decimals.
PUBLISHED = {"neuron": 36.482, "layer": 39.839}


def random_net(rng: np.random.Generator, dims: list[int], scale: float = 1.0) -> list[np.ndarray]:
    return [
        scale * rng.standard_normal((dims[k + 1], dims[k])) / math.sqrt(dims[k]) for k in range(len(dims) - 1)
    ]


def brute_lipsdp_matrix(weights, rho, lam):
    """S(ρ, T) built literally as LipSDP's MATLAB code does: [A; B]ᵀ Q [A; B] − M (α = 0, β = 1)."""
    n0 = weights[0].shape[1]
    hidden = [w.shape[0] for w in weights[:-1]]
    n_hidden = sum(hidden)
    t = np.diag(np.concatenate(lam))
    q = np.block([[np.zeros((n_hidden, n_hidden)), t], [t, -2 * t]])
    first = np.zeros((n_hidden, n0 + sum(hidden[:-1])))
    r = c = 0
    for w in weights[:-1]:
        first[r : r + w.shape[0], c : c + w.shape[1]] = w
        r += w.shape[0]
        c += w.shape[1]
    a = np.hstack([first, np.zeros((n_hidden, hidden[-1]))])
    b = np.hstack([np.zeros((n_hidden, n0)), np.eye(n_hidden)])
    ab = np.vstack([a, b])
    m = np.zeros((n0 + n_hidden, n0 + n_hidden))
    m[:n0, :n0] = rho * np.eye(n0)
    m[-hidden[-1] :, -hidden[-1] :] = -weights[-1].T @ weights[-1]
    return ab.T @ q @ ab - m


# --------------------------------------------------------------------------------------------------
# Published values


@pytest.mark.parametrize("form", ["neuron", "layer"])
@pytest.mark.parametrize("solver", ["SCS", "CLARABEL"])
def test_reproduces_published_lipsdp_values(form, solver):
    result = lipsdp(load_weights(RANDOM_MAT), form, solver, 1e-6)
    assert result.status == "optimal" and result.solver == solver and result.tolerance == 1e-6
    assert result.form == form and result.seconds > 0
    assert round(result.value, 3) == PUBLISHED[form]
    assert round(result.certified, 3) == PUBLISHED[form]
    assert abs(result.certified - result.value) < 1e-4 * result.value


def test_certified_value_is_feasible_even_at_loose_tolerance():
    weights = load_weights(RANDOM_MAT)
    tight = lipsdp(weights, "neuron", "CLARABEL", 1e-9)
    loose = lipsdp(weights, "neuron", "SCS", 1e-3, require_optimal=False)
    # Whatever the solver returns, the certified √ρ* is a true upper bound: ≥ the optimum.
    assert math.isfinite(loose.certified) and loose.certified >= tight.value * (1 - 1e-8)
    assert loose.certified <= tight.value * 1.01


def test_cli_prints_status_and_value_last(capsys):
    assert main(["--form", "layer", "--eps", "1e-6", str(RANDOM_MAT)]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert "status=optimal" in line and "solver=SCS" in line and "eps=1e-06" in line
    assert round(float(line.split("=")[-1]), 3) == PUBLISHED["layer"]


# --------------------------------------------------------------------------------------------------
# Formulation, reduction, normalisation


def test_cvxpy_lmi_matches_lipsdp_matlab_construction():
    import cvxpy as cp

    from resdyn.lipschitz import _lipsdp_matrix

    rng = np.random.default_rng(0)
    weights = random_net(rng, [3, 4, 5, 2])
    rho = cp.Variable(nonneg=True)
    lam = [cp.Variable(4, nonneg=True), cp.Variable(5, nonneg=True)]
    rho.value = 2.5
    lam[0].value = rng.random(4)
    lam[1].value = rng.random(5)
    ours = _lipsdp_matrix(weights, rho, lam, "neuron").value
    assert np.allclose(ours, brute_lipsdp_matrix(weights, 2.5, [lam[0].value, lam[1].value]), atol=1e-12)
    assert np.allclose(ours, ours.T)


def test_certify_rho_is_the_smallest_feasible_rho():
    rng = np.random.default_rng(1)
    weights = random_net(rng, [4, 6, 5, 3], scale=0.5)
    lam = [3 * (rng.random(6) + 1.0), 3 * (rng.random(5) + 1.0)]
    rho = certify_rho(weights, lam)
    assert math.isfinite(rho)
    at = np.linalg.eigvalsh(brute_lipsdp_matrix(weights, rho * (1 + 1e-9), lam))[-1]
    below = np.linalg.eigvalsh(brute_lipsdp_matrix(weights, rho * (1 - 1e-6), lam))[-1]
    assert at <= 1e-9 and below > 0


@pytest.mark.parametrize("form", ["neuron", "layer"])
def test_reduction_and_normalisation_keep_the_optimum(form):
    rng = np.random.default_rng(2)
    # Wide input (30) through a narrow first layer (4): the reduced input block is 4, not 30.
    weights = random_net(rng, [30, 4, 6, 3], scale=3.0)
    base = lipsdp(weights, form, "CLARABEL", 1e-8, reduce=False, normalize=False)
    for reduce in (False, True):
        for normalize in (False, True):
            r = lipsdp(weights, form, "CLARABEL", 1e-8, reduce=reduce, normalize=normalize)
            assert r.value == pytest.approx(base.value, rel=1e-5)
            assert r.lmi_size == (4 if reduce else 30) + 10


def test_reduce_first_layer_rank_deficient_and_duplicates():
    rng = np.random.default_rng(3)
    u = rng.standard_normal((6, 2))
    w0 = u @ rng.standard_normal((2, 9))  # rank 2
    w0 = np.vstack([w0, w0[:1] + 1e-7])  # a near-duplicate row
    reduced = reduce_first_layer([w0, rng.standard_normal((3, 7))])
    assert reduced[0].shape == (7, 3)  # rank 2 + the 1e-7 direction
    # Same Gram matrix W_0 W_0ᵀ, hence same pre-activation geometry.
    assert np.allclose(reduced[0] @ reduced[0].T, w0 @ w0.T, atol=1e-12)


def test_neuron_le_layer_le_spectral_product_and_jacobian_lower_below():
    rng = np.random.default_rng(4)
    for dims in ([5, 8, 3], [4, 6, 7, 2], [2, 2, 2], [6, 1, 4]):
        weights = random_net(rng, dims)
        layers = [(w, rng.standard_normal(w.shape[0])) for w in weights]
        points = rng.standard_normal((200, dims[0]))
        out = head_lipschitz(layers, points, solver="SCS", eps=1e-6)
        tol = 1e-5 * out["spectral_product"]
        assert out["jacobian_lower"] <= out["lipsdp_neuron"] + tol
        assert out["lipsdp_neuron"] <= out["lipsdp_layer"] + tol
        assert out["lipsdp_layer"] <= out["spectral_product"] + tol
        assert out["fc"] == out["lipsdp_neuron"] and out["g"] == pytest.approx(out["fc"] / 2)
        assert out["details"]["neuron"]["status"] == "optimal"


def test_single_hidden_neuron_is_exact():
    # f(x) = w2 · ReLU(w1ᵀ x): Lip = ‖w1‖ |w2|, and every bound attains it.
    w1 = np.array([[3.0, 4.0]])
    w2 = np.array([[2.0], [0.0]])
    res = lipsdp([w1, w2], "neuron", "CLARABEL", 1e-9)
    assert res.value == pytest.approx(10.0, rel=1e-6)
    assert spectral_product([w1, w2]) == pytest.approx(10.0)


def test_zero_weight_gives_zero():
    res = lipsdp([np.zeros((3, 2)), np.ones((1, 3))], "neuron")
    assert res.value == 0.0 and res.status == "optimal"


@pytest.mark.filterwarnings("ignore:Solution may be inaccurate")
def test_non_optimal_status_raises():
    rng = np.random.default_rng(5)
    weights = random_net(rng, [6, 10, 10, 3])
    with pytest.raises(LipSDPSolverError, match="status"):
        lipsdp(weights, "neuron", "SCS", 1e-9, max_iters=5)
    flagged = lipsdp(weights, "neuron", "SCS", 1e-9, max_iters=5, require_optimal=False)
    assert flagged.status != "optimal"


def test_bad_arguments():
    w = [np.ones((2, 2)), np.ones((1, 2))]
    with pytest.raises(ValueError, match="form"):
        lipsdp(w, "network")
    with pytest.raises(ValueError, match="solver"):
        lipsdp(w, solver="MOSEK")
    with pytest.raises(ValueError, match="hidden"):
        lipsdp([np.ones((2, 2))])
    with pytest.raises(InputError, match="weight 1 has 3 columns"):
        lipsdp([np.ones((2, 2)), np.ones((1, 3))])
    with pytest.raises(InputError, match="NaN"):
        lipsdp([np.ones((2, 2)), np.array([[np.nan, 1.0]])])


# --------------------------------------------------------------------------------------------------
# Linear head and softmax


@pytest.mark.parametrize("n, c", [(1, 1), (2, 2), (8, 3), (20, 10), (64, 10)])
def test_lipsdp_neuron_on_identity_then_head_equals_spectral_norm(n, c):
    rng = np.random.default_rng(n * 100 + c)
    w = rng.standard_normal((c, n)) * rng.uniform(0.1, 10)
    expected = linear_head_lipschitz(w)
    assert expected == pytest.approx(np.linalg.svd(w, compute_uv=False)[0], rel=1e-12)
    res = lipsdp([np.eye(n), w], "neuron", "SCS", 1e-6)
    assert res.status == "optimal"
    assert res.value == pytest.approx(expected, rel=2e-5)
    assert res.certified == pytest.approx(expected, rel=2e-5)
    assert res.certified >= expected * (1 - 1e-9)


def test_identity_head_with_duplicate_rows_and_rank_one():
    rng = np.random.default_rng(7)
    row = rng.standard_normal(12)
    w = np.vstack([row, row, row * (1 + 1e-7)])  # exact tie and near-duplicate: rank ≈ 1
    res = lipsdp([np.eye(12), w], "neuron", "CLARABEL", 1e-8)
    assert res.value == pytest.approx(linear_head_lipschitz(w), rel=1e-6)


def test_linear_head_summary_is_closed_form():
    rng = np.random.default_rng(8)
    w = rng.standard_normal((10, 50))
    out = head_lipschitz([(w, rng.standard_normal(10))])
    norm = np.linalg.norm(w, 2)
    for key in ("lipsdp_neuron", "lipsdp_layer", "spectral_product", "jacobian_lower", "fc"):
        assert out[key] == pytest.approx(norm, rel=1e-14)
    assert out["g"] == pytest.approx(norm * SOFTMAX_LIPSCHITZ)


def _softmax(z):
    e = np.exp(z - z.max())
    return e / e.sum()


def test_softmax_jacobian_norm_at_most_half():
    rng = np.random.default_rng(9)
    assert SOFTMAX_LIPSCHITZ == 0.5
    norms = []
    for c in (2, 3, 10, 100):
        for scale in (0.01, 1.0, 5.0, 50.0):  # near uniform … near one-hot
            for _ in range(20):
                p = _softmax(scale * rng.standard_normal(c))
                norms.append(softmax_jacobian_norm(p))
        norms.append(softmax_jacobian_norm(np.full(c, 1.0 / c)))  # uniform
        one_hot = np.zeros(c)
        one_hot[0] = 1.0
        assert softmax_jacobian_norm(one_hot) == pytest.approx(0.0, abs=1e-15)
    assert max(norms) <= 0.5 + 1e-15
    # Attained: two classes at p = (1/2, 1/2), or two equal leading probabilities among C.
    assert softmax_jacobian_norm(np.array([0.5, 0.5])) == pytest.approx(0.5, abs=1e-15)
    assert softmax_jacobian_norm(np.array([0.5, 0.5, 0.0, 0.0])) == pytest.approx(0.5, abs=1e-15)
    # Uniform over C has norm 1/C.
    assert softmax_jacobian_norm(np.full(10, 0.1)) == pytest.approx(0.1, abs=1e-15)


def test_softmax_difference_quotient_at_most_half():
    # The Lipschitz statement itself on pairs of logits, including 1e-7-close pairs.
    rng = np.random.default_rng(10)
    worst = 0.0
    for c in (2, 3, 10):
        for _ in range(300):
            z = rng.standard_normal(c) * rng.choice([0.1, 1, 10])
            y = z + rng.standard_normal(c) * rng.choice([1e-7, 1e-3, 1.0])
            worst = max(worst, np.linalg.norm(_softmax(z) - _softmax(y)) / np.linalg.norm(z - y))
    assert 0.3 < worst <= 0.5 + 1e-7
    # Two classes at z = 0 along (1, −1): quotient → 1/2.
    d = np.array([1e-6, -1e-6])
    q = np.linalg.norm(_softmax(d) - _softmax(np.zeros(2))) / np.linalg.norm(d)
    assert q == pytest.approx(0.5, rel=1e-6)


# --------------------------------------------------------------------------------------------------
# Jacobian lower bound


def brute_jacobian_norm(layers, x):
    """‖J_f(x)‖₂ by the explicit product in float64 (x assumed away from kinks)."""
    return np.linalg.norm(_explicit_jacobian(layers, x), 2)


def test_jacobian_lower_bound_matches_brute_force_and_finite_differences():
    rng = np.random.default_rng(11)
    weights = random_net(rng, [7, 9, 6, 3])
    layers = [(w, rng.standard_normal(w.shape[0]) * 0.3) for w in weights]
    points = rng.standard_normal((5, 4, 7))  # (N, T+1, n) like trajectory states
    bound = jacobian_lower_bound(layers, points, chunk=2)
    norms = np.array([[brute_jacobian_norm(layers, points[i, t]) for t in range(4)] for i in range(5)])
    assert bound.n_points == 20 and bound.n_skipped == 0
    assert bound.value == pytest.approx(norms.max(), rel=1e-12)
    assert norms[bound.index] == pytest.approx(norms.max(), rel=1e-12)
    # The lower bound is a real difference quotient of f near the best point.
    x = points[bound.index]
    _, _, vt = np.linalg.svd(_explicit_jacobian(layers, x))
    step = 1e-6 * vt[0]
    quotient = np.linalg.norm(relu_net_forward(layers, x + step) - relu_net_forward(layers, x)) / 1e-6
    assert quotient == pytest.approx(bound.value, rel=1e-6)


def _explicit_jacobian(layers, x):
    jac = np.eye(x.size)
    v = x
    for k, (w, b) in enumerate(layers):
        h = w @ v + b
        jac = w @ jac
        if k + 1 < len(layers):
            jac = (h > 0)[:, None] * jac
            v = np.maximum(h, 0)
    return jac


def test_jacobian_lower_bound_skips_kinks_and_reads_h5(tmp_path):
    w0 = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]])
    w1 = np.array([[1.0, -1.0, 2.0]])
    layers = [(w0, np.zeros(3)), (w1, np.zeros(1))]
    points = np.array(
        [
            [0.0, 1.0],  # first two pre-activations exactly 0: a kink
            [1.0, 1.0],  # h = (1, −1, 1): J = [1, 2]
            [1.0, 1.0 + 1e-7],
        ]
    )  # near-duplicate of the previous point
    bound = jacobian_lower_bound(layers, points)
    assert bound.n_skipped == 1 and bound.n_points == 3
    assert bound.value == pytest.approx(math.sqrt(5.0), rel=1e-14)
    assert bound.index in ((1,), (2,))  # exact tie between the two smooth points
    path = tmp_path / "states.h5"
    with h5py.File(path, "w") as handle:
        handle.create_dataset("states", data=points[None].repeat(2, axis=0))
    with h5py.File(path, "r") as handle:
        again = jacobian_lower_bound(layers, handle["states"], chunk=1)
    assert again.value == bound.value and again.n_points == 6 and again.n_skipped == 2
    only_kinks = jacobian_lower_bound(layers, points[:1])
    assert math.isnan(only_kinks.value) and only_kinks.n_skipped == 1
    with pytest.raises(ValueError, match="input dimension 2"):
        jacobian_lower_bound(layers, np.zeros((4, 3)))


# --------------------------------------------------------------------------------------------------
# Loading weights


def test_load_weights_formats_and_errors(tmp_path):
    rng = np.random.default_rng(12)
    weights = random_net(rng, [3, 4, 2])
    named = tmp_path / "named.npz"
    np.savez(named, **{f"weight_{k}": w for k, w in enumerate(weights)})
    listed = tmp_path / "listed.npz"
    np.savez(listed, *weights)
    mat = tmp_path / "net.mat"
    cell = np.empty((1, 2), dtype=object)
    cell[0, 0], cell[0, 1] = weights
    scipy.io.savemat(mat, {"weights": cell})
    for path in (named, listed, mat):
        loaded = load_weights(path)
        assert len(loaded) == 2 and all(np.array_equal(a, b) for a, b in zip(loaded, weights))

    with pytest.raises(InputError, match="missing.npz: file not found"):
        load_weights(tmp_path / "missing.npz")
    bad = tmp_path / "bad.mat"
    bad.write_bytes(b"not a mat file")
    with pytest.raises(InputError, match="bad.mat"):
        load_weights(bad)
    wrong_key = tmp_path / "wrong.mat"
    scipy.io.savemat(wrong_key, {"W": weights[0]})
    with pytest.raises(InputError, match="no variable 'weights'.*W"):
        load_weights(wrong_key)
    gap = tmp_path / "gap.npz"
    np.savez(gap, weight_0=weights[0], weight_2=weights[1])
    with pytest.raises(InputError, match="without gaps"):
        load_weights(gap)
    chain = tmp_path / "chain.npz"
    np.savez(chain, weight_0=weights[0], weight_1=weights[0])
    with pytest.raises(InputError, match="chain.npz: weight 1 has 3 columns"):
        load_weights(chain)
    other = tmp_path / "other.npz"
    np.savez(other, x=weights[0])
    with pytest.raises(InputError, match="no arrays named weight_0"):
        load_weights(other)
    with pytest.raises(InputError, match="unknown weight file type"):
        (tmp_path / "w.txt").write_text("1")
        load_weights(tmp_path / "w.txt")


def test_cli_reports_bad_file(tmp_path, capsys):
    assert main(["--form", "neuron", str(tmp_path / "nope.mat")]) == 1
    assert "nope.mat: file not found" in capsys.readouterr().err


def test_reduced_multipliers_certify_the_unreduced_lmi():
    """The reduction changes W_0 only: the reduced solve's λ, checked in the full LMI, give its value."""
    from resdyn.lipschitz import certify_multipliers

    rng = np.random.default_rng(3)
    weights = [rng.standard_normal((6, 20)), rng.standard_normal((5, 6)), rng.standard_normal((3, 5))]
    reduced = lipsdp(weights, "neuron", "SCS", 1e-6, reduce=True)
    full = lipsdp(weights, "neuron", "SCS", 1e-6, reduce=False)
    cross = certify_multipliers(weights, reduced.multipliers)
    assert cross == pytest.approx(reduced.certified, rel=1e-9)
    assert full.certified == pytest.approx(reduced.certified, rel=1e-4)
    assert "multipliers" not in reduced.to_dict()
