"""Measured robustness (resdyn/robustness.py, issue 27 item 2) on a tiny revised ResNet."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from resdyn import robustness
from resdyn.artifacts import RobustnessTable
from resdyn.config import attack_settings, schema_defaults
from resdyn.data import images_to_tensor
from resdyn.io import InputError
from resdyn.model import build_model

TINY = {"blocks": [1, 1, 1, 1], "width": 16}
SETTINGS = {
    **attack_settings(schema_defaults("robustness")),
    "noise_sigmas": [0.0, 0.1, 0.3],
    "linf_eps": [0.0, 0.005, 0.01, 0.03],
    "l2_eps": [0.0, 0.25, 0.5, 1.5],
    "pgd_steps": 10,
    "minimal_attack": "deepfool",
    "minimal_steps": 50,
    "minimal_norms": ["l2", "linf"],
    "batch_size": 16,
    "max_images": 40,
    "seed": 5,
    "device": "cpu",
}


@pytest.fixture(scope="module")
def setup() -> dict:
    """A random tiny network, labels = its own predictions except 4 flipped (misclassified) images."""
    torch.manual_seed(0)
    model = build_model(TINY, 10).eval()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(48, 3, 32, 32), dtype=np.uint8)
    with torch.no_grad():
        labels = model(images_to_tensor(images)).argmax(dim=1).numpy()
    labels[[3, 10, 20, 33]] = (labels[[3, 10, 20, 33]] + 1) % 10
    result = robustness.measure_robustness(model, images, labels, SETTINGS)
    return {"model": model, "images": images, "labels": labels, "result": result}


def test_zero_sigma_and_zero_eps_give_the_clean_accuracy_exactly(setup):
    table = setup["result"].table
    assert list(table.columns) == robustness.COLUMNS
    clean = table.loc[table.measure == "clean", "accuracy"].item()
    assert clean == 36 / 40 and (table.n_images == 40).all() and (table.seed == 5).all()
    at_zero = table[table.measure.isin(["noise", "pgd_linf", "pgd_l2"]) & (table.level == 0)]
    assert len(at_zero) == 3
    assert (at_zero.accuracy == clean).all() and (at_zero.accuracy_single_run == clean).all()


def test_pgd_accuracy_is_non_increasing_in_eps(setup):
    """The reported accuracy counts an image broken at ε when PGD broke it at any ε' ≤ ε, so it is
    non-increasing by construction; each single run is at most the clean accuracy and at least the
    cumulative accuracy."""
    table = setup["result"].table
    for measure in ("pgd_linf", "pgd_l2"):
        rows = table[table.measure == measure].sort_values("level")
        assert (np.diff(rows.accuracy.to_numpy()) <= 0).all(), rows
        assert (rows.accuracy_single_run >= rows.accuracy).all()
        assert rows.accuracy.iloc[-1] < rows.accuracy.iloc[0]  # the largest ε breaks something


def test_minimal_perturbation_flips_the_prediction_and_undercuts_pgd(setup):
    """Each minimal adversarial really changes the prediction, its norm is what the table summarises,
    and it is no larger than the smallest grid ε at which PGD broke the image."""
    result, model = setup["result"], setup["model"]
    x = images_to_tensor(setup["images"][:40])
    y = torch.from_numpy(setup["labels"][:40].astype(np.int64))
    correct = result.correct
    assert correct.sum() == 36
    table = result.table.set_index("measure")
    for norm in ("l2", "linf"):
        distance, adversarial = robustness.minimal_perturbations(
            model, x, y, norm, attack="deepfool", steps=SETTINGS["minimal_steps"], batch_size=16, seed=5
        )
        np.testing.assert_array_equal(np.where(correct, distance, 0.0), result.minimal[norm])
        found = np.isfinite(distance)
        assert found[correct].all()
        with torch.no_grad():
            prediction = model(adversarial).argmax(dim=1).numpy()
        assert (prediction[found] != y.numpy()[found]).all()
        delta = (adversarial - x).flatten(1)
        size = (delta.norm(dim=1) if norm == "l2" else delta.abs().amax(dim=1)).double().numpy()
        np.testing.assert_allclose(distance[found], size[found], rtol=1e-12)
        broken_at = result.pgd_broken_at[norm]
        pgd_found = correct & np.isfinite(broken_at)
        assert pgd_found.any()
        assert (result.minimal[norm][pgd_found] <= broken_at[pgd_found]).all(), (
            result.minimal[norm][pgd_found],
            broken_at[pgd_found],
        )
        assert table.loc[f"minimal_{norm}", "value"] == np.median(result.minimal[norm])
        assert table.loc[f"minimal_{norm}", "value_correct"] == np.median(result.minimal[norm][correct])


def test_the_same_seed_gives_the_same_result(setup):
    again = robustness.measure_robustness(setup["model"], setup["images"], setup["labels"], SETTINGS)
    first = setup["result"]
    columns = list(robustness.COLUMNS)
    assert again.table[columns].equals(first.table[columns])
    for norm in ("l2", "linf"):
        np.testing.assert_array_equal(again.minimal[norm], first.minimal[norm])
        np.testing.assert_array_equal(again.pgd_broken_at[norm], first.pgd_broken_at[norm])
    measures = RobustnessTable(first.table).measures()
    assert measures["clean_accuracy"] == 0.9 and "pgd_l2_accuracy@1.5" in measures


def test_bad_robustness_settings_are_named():
    with pytest.raises(InputError, match="unknown.*colour"):
        robustness.check_settings({**SETTINGS, "colour": 1})
    with pytest.raises(InputError, match="linf_eps"):
        robustness.check_settings({**SETTINGS, "linf_eps": [0.1, 0.01]})
    with pytest.raises(InputError, match="minimal_attack"):
        robustness.check_settings({**SETTINGS, "minimal_attack": "cw"})


def test_robustness_csv_round_trip_and_checks(setup, tmp_path):
    table = setup["result"].table
    path = tmp_path / "robustness.csv"
    RobustnessTable(table).save(path)
    assert RobustnessTable.load(path).table.equals(table)
    bad = table.copy()
    bad.loc[0, "accuracy"] = 1.5
    bad.to_csv(path, index=False)
    with pytest.raises(InputError, match=r"robustness.csv.*'accuracy' = 1.5"):
        RobustnessTable.load(path)
    table.drop(columns=["seed"]).to_csv(path, index=False)
    with pytest.raises(InputError, match="robustness.csv: columns"):
        RobustnessTable.load(path)


def test_a_file_with_the_retired_seconds_column_still_loads(setup, tmp_path):
    """robustness.csv written before the per-measure seconds moved to the job's log keep loading: the
    column is dropped, every other cell read as written."""
    table = setup["result"].table
    path = tmp_path / "robustness.csv"
    table.assign(seconds=0.25).to_csv(path, index=False, float_format="%.17g", na_rep="")
    loaded = RobustnessTable.load(path).table
    assert list(loaded.columns) == list(RobustnessTable.COLUMNS)
    assert loaded.equals(table)
