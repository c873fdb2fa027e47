"""Per-depth probes (method §3.5): fitted to convergence, against scikit-learn's logistic regression on the
same states, determinism, agreement with a trained linear head, the probes' trajectory file and Lipschitz
constants."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

from resdyn import probes, stages
from resdyn.artifacts import DatasetFile, ProbeHeads, Trajectories, load_probe_table, save_model
from resdyn.config import schema_defaults
from resdyn.data import images_to_tensor
from resdyn.io import InputError
from resdyn.lipschitz import depth_heads_lipschitz
from resdyn.model import build_model
from resdyn.runs import Run

TINY = {"blocks": [1, 1, 1, 1], "width": 16}  # T = 4, n = 1024
SETTINGS = {**schema_defaults("probes"), "batch_size": 64, "device": "cpu"}


def digits_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's digits as uint8 (N, 3, 32, 32): 8×8 upscaled ×4, 600 train / 300 test images."""
    digits = load_digits()
    images = np.kron(digits.images, np.ones((4, 4))) * (255 / 16)
    images = np.repeat(images[:, None].astype(np.uint8), 3, axis=1)
    x_train, x_test, y_train, y_test = train_test_split(
        images, digits.target, train_size=600, test_size=300, stratify=digits.target, random_state=0
    )
    return x_train, y_train.astype(np.int64), x_test, y_test.astype(np.int64)


@pytest.fixture(scope="module")
def setup() -> dict:
    """A frozen tiny revised ResNet with random weights (its states are still informative features)."""
    torch.manual_seed(0)
    model = build_model(TINY, 10).eval()
    x_train, y_train, x_test, y_test = digits_split()
    with torch.no_grad():
        s_train = model.trajectory(images_to_tensor(x_train))[0].double().numpy()
        s_test = model.trajectory(images_to_tensor(x_test))[0].double().numpy()
    return {
        "model": model,
        "train": (x_train, y_train),
        "test": (x_test, y_test),
        "states": (s_train, s_test),
    }


@pytest.fixture(scope="module")
def fitted(setup) -> tuple[torch.Tensor, torch.Tensor, list]:
    return probes.fit_probes(setup["model"], *setup["train"], SETTINGS)


def test_probes_reach_the_accuracy_of_sklearn_logistic_regression(setup, fitted):
    """Each probe minimises the objective of scikit-learn's LogisticRegression(C = 1/(λN)) (multinomial,
    lbfgs) on the same states, fitted to convergence: the final gradient norm is below the tolerance, and
    the test accuracies agree within 0.5 points at every depth."""
    weight, bias, rows = fitted
    x_test, y_test = setup["test"]
    scores = probes.probe_scores(setup["model"], weight, bias, x_test, y_test, batch_size=100, device="cpu")
    s_train, s_test = setup["states"]
    y_train = setup["train"][1]
    assert [row["depth"] for row in rows] == list(range(weight.shape[0]))
    for t in range(weight.shape[0]):
        assert rows[t]["converged"] and rows[t]["grad_norm"] <= SETTINGS["tolerance"], rows[t]
        # the recorded gradient norm is the objective's, recomputed here from the stored float32 probe
        w = weight[t].double().requires_grad_()
        b = bias[t].double().requires_grad_()
        loss = probes.probe_objective(
            torch.from_numpy(s_train[:, t]), torch.from_numpy(y_train), w, b, SETTINGS["l2"]
        )
        loss.backward()
        assert float(loss.detach()) == pytest.approx(rows[t]["loss"], rel=1e-5)
        c = 1.0 / (SETTINGS["l2"] * len(y_train))
        reference = LogisticRegression(C=c, tol=1e-10, max_iter=10000).fit(s_train[:, t], y_train)
        sklearn_accuracy = reference.score(s_test[:, t], y_test)
        assert abs(scores["accuracy"][t] - sklearn_accuracy) <= 0.005, (
            t,
            scores["accuracy"][t],
            sklearn_accuracy,
        )
    # the probes' own logits are what probe_scores scores
    logits = probes.probe_logits(torch.from_numpy(s_test).float(), weight, bias).argmax(dim=2).numpy()
    np.testing.assert_allclose((logits == y_test[:, None]).mean(axis=0), scores["accuracy"], atol=1e-12)


def test_probes_are_deterministic_for_any_state_cache_size(setup, fitted):
    """A cache too small for two depths (one network pass per depth) gives bitwise the probes, iterations
    and gradient norms of the one-pass fit: no randomness, full-batch sums."""
    assert probes._depth_groups(600, 5, 1024, 1e-6) == [range(t, t + 1) for t in range(5)]
    again = probes.fit_probes(setup["model"], *setup["train"], {**SETTINGS, "cache_gib": 1e-6})
    assert torch.equal(fitted[0], again[0]) and torch.equal(fitted[1], again[1])
    keys = ("depth", "iterations", "loss", "grad_norm", "converged")
    assert [[r[k] for k in keys] for r in fitted[2]] == [[r[k] for k in keys] for r in again[2]]


@pytest.mark.slow
def test_last_probe_agrees_with_a_trained_linear_head(tmp_path):
    """On a well-trained network (its head linear), the probe at t = T solves the head's own problem on the
    same states, so it predicts what the head predicts on ≥ 99% of test images. The images are
    test_train's learnable bands, on which the tiny network is trained to (near) perfect accuracy: on
    digits a tiny network stops near 97%, and two 97% classifiers can disagree on the 3% they get wrong."""
    from test_train import make_arrays

    from resdyn.train import train

    x_train, y_train = make_arrays(400, 4, seed=0)
    x_test, y_test = make_arrays(300, 4, seed=1)
    torch.manual_seed(1)
    model = build_model(TINY, 4)
    train(
        model,
        x_train,
        y_train,
        epochs=6,
        lr=3e-3,
        batch_size=32,
        seed=0,
        device="cpu",
        checkpoint_path=tmp_path / "model_ckpt.pt",
        log_path=tmp_path / "train_log.csv",
    )
    weight, bias, _ = probes.fit_probes(model, x_train, y_train, SETTINGS)
    with torch.no_grad():
        states = model.trajectory(images_to_tensor(x_test))[0]
        head = model.head(states[:, -1]).argmax(dim=1)
        probe = probes.probe_logits(states, weight, bias)[:, -1].argmax(dim=1)
    assert (head.numpy() == y_test).mean() >= 0.99  # the head is well trained
    assert (head == probe).float().mean() >= 0.99


def test_probe_stages_write_a_self_contained_trajectory_file(setup, tmp_path):
    """probes → probes.pt + probes.csv; probe_trajectories stores every W_t, b_t and p_t = softmax(W_t x_t +
    b_t); the Lipschitz stage gives ‖W_t‖₂ per depth and their maximum."""
    x_train, y_train = setup["train"]
    x_test, y_test = setup["test"]
    names = [str(k) for k in range(10)]
    data = tmp_path / "data.h5"
    DatasetFile(
        {"train": (x_train, y_train), "test": (x_test[:40], y_test[:40])},
        names,
        dataset="digits",
        source="npz",
        origin="test",
    ).save(data)
    model_path = tmp_path / "model.pt"
    save_model(model_path, setup["model"], TINY, 10, names)
    table = stages.fit_probes(
        model_path,
        data,
        tmp_path / "probes.pt",
        tmp_path / "probes.csv",
        settings=SETTINGS,
        batch_size=32,
    )
    # every probe fits the training states perfectly here, so the accuracy column reads back as integers
    pd.testing.assert_frame_equal(load_probe_table(tmp_path / "probes.csv"), table, check_dtype=False)
    assert (table["grad_norm"] <= SETTINGS["tolerance"]).all() and (table["iterations"] >= 1).all()
    heads = ProbeHeads.load(tmp_path / "probes.pt")
    assert tuple(heads.weight.shape) == (5, 10, 1024)
    stages.record_trajectories(
        model_path,
        data,
        tmp_path / "traj.h5",
        run=Run("digits", "tiny"),
        batch_size=16,
        store_states=True,
        device="cpu",
        probes_path=tmp_path / "probes.pt",
    )
    traj = Trajectories.load(tmp_path / "traj.h5")
    assert traj.head is None
    weight, bias = traj.depth_heads
    np.testing.assert_array_equal(weight, heads.weight.double().numpy())
    with Trajectories.open_states(tmp_path / "traj.h5") as states:
        x = states[()].astype(np.float64)
    z = np.einsum("bdn,dcn->bdc", x, weight) + bias
    expected = np.exp(z - z.max(axis=2, keepdims=True))
    np.testing.assert_allclose(
        traj.probs, expected / expected.sum(axis=2, keepdims=True), rtol=1e-12, atol=1e-15
    )
    np.testing.assert_allclose(traj.logits, z, rtol=1e-12, atol=1e-12)
    lip = stages.lipschitz(
        tmp_path / "traj.h5", tmp_path / "lipschitz.json", solver="SCS", eps=1e-6, device="cpu"
    )
    norms = [np.linalg.norm(w, 2) for w in weight]
    assert [row["fc"] for row in lip["per_depth"]] == pytest.approx(norms, rel=1e-12)
    assert lip["fc"] == pytest.approx(max(norms), rel=1e-12) and lip["g"] == pytest.approx(max(norms) / 2)
    np.testing.assert_allclose(table["weight_norm"], norms, rtol=1e-6)


def test_probes_for_another_model_are_refused(setup, tmp_path):
    names = [str(k) for k in range(10)]
    x_test, y_test = setup["test"]
    data = tmp_path / "data.h5"
    DatasetFile(
        {"train": (x_test[:20], y_test[:20]), "test": (x_test[:20], y_test[:20])},
        names,
        dataset="digits",
        source="npz",
        origin="test",
    ).save(data)
    model_path = tmp_path / "model.pt"
    save_model(model_path, setup["model"], TINY, 10, names)
    ProbeHeads(torch.zeros(3, 10, 1024), torch.zeros(3, 10), names, SETTINGS, []).save(tmp_path / "p.pt")
    with pytest.raises(InputError, match="do not fit"):
        stages.record_trajectories(
            model_path,
            data,
            tmp_path / "t.h5",
            run=Run("d", "m"),
            batch_size=8,
            store_states=False,
            device="cpu",
            probes_path=tmp_path / "p.pt",
        )
    assert not (tmp_path / "t.h5").exists()


def test_depth_heads_lipschitz_takes_the_largest_depth():
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(4, 3, 6)) * np.array([1.0, 5.0, 2.0, 0.5])[:, None, None]
    lip = depth_heads_lipschitz(weights)
    norms = [np.linalg.norm(w, 2) for w in weights]
    assert lip["details"]["argmax_depth"] == 1 and lip["fc"] == norms[1] and lip["certified"]


def test_bad_probe_settings_are_named():
    with pytest.raises(InputError, match="unknown.*colour"):
        probes.check_settings({**SETTINGS, "colour": 1})
    with pytest.raises(InputError, match="tolerance=0"):
        probes.check_settings({**SETTINGS, "tolerance": 0})
    with pytest.raises(InputError, match=r"missing \['max_iter'\]"):
        probes.check_settings({k: v for k, v in SETTINGS.items() if k != "max_iter"})
