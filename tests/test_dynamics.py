"""The dynamics table (every run's accuracy and constants by epoch) and its figure's plotted data."""

import math

import matplotlib.collections
import numpy as np
import pandas as pd
import pytest

from resdyn.artifacts import Constants, Metrics
from resdyn.figures import dynamics_figure
from resdyn.io import InputError
from resdyn.tables import DYNAMICS_KEYS, DYNAMICS_VALUES, DynamicsKey, dynamics_table


def _constants(e, sh, curve, lip, pairing="best_tracing", sh_independent=None) -> Constants:
    independent = sh if sh_independent is None else sh_independent
    return Constants(
        {
            "g_expansive": {"value": e},
            "g_shadowing": {
                "pairing": pairing,
                "paper": {"value": sh},
                "independent": {"value": independent},
                "curve": {"value": curve},
            },
            "lip": {"fc": lip},
            "t_g_lower": {
                "paper": None if sh is None else sh / lip,
                "independent": None if independent is None else independent / lip,
            },
        }
    )


def _metrics(accuracy: float) -> Metrics:
    return Metrics({"accuracy": accuracy})


def _runs():
    """Two replicates × epochs 2, 4, 8 × readings definition (best tracing) and authors (independent),
    listed out of order, with one undefined Sh."""
    keys, metrics, constants, expected = [], [], [], []
    rng = np.random.default_rng(3)
    for epoch in (8, 2, 4):
        for replicate in (2, 1):
            accuracy = round(0.5 + epoch / 20 + replicate / 100, 4)
            for reading in ("authors", "definition"):
                e, sh, sh_ind, curve, lip = rng.uniform(0.1, 1.0, size=5)
                if reading == "authors":
                    e *= 1e-4
                if (epoch, replicate, reading) == (4, 2, "definition"):
                    sh = None
                pairing = "independent" if reading == "authors" else "best_tracing"
                keys.append(DynamicsKey("digits", "m", replicate, epoch, reading))
                metrics.append(_metrics(accuracy))
                constants.append(_constants(e, sh, curve, lip, pairing, sh_ind))
                headline = sh_ind if reading == "authors" else sh
                expected.append(
                    {
                        "Dataset": "digits",
                        "Model": "m",
                        "Replicate": replicate,
                        "Epoch": epoch,
                        "Reading": reading,
                        "Test accuracy": accuracy,
                        "g-expansive": e,
                        "Sh": headline,
                        "Sh curve": curve,
                        "Lip_FC": lip,
                        "T_g ≥ Sh/Lip_FC": None if headline is None else headline / lip,
                    }
                )
    return keys, metrics, constants, expected


def test_every_cell_of_the_dynamics_table():
    keys, metrics, constants, expected = _runs()
    table = dynamics_table(keys, metrics, constants)
    assert list(table.columns) == DYNAMICS_KEYS + DYNAMICS_VALUES
    # readings in first-seen order (authors first here), then epoch, then replicate
    order = sorted(
        expected, key=lambda r: (["authors", "definition"].index(r["Reading"]), r["Epoch"], r["Replicate"])
    )
    assert table.to_dict("records") == order


def test_bad_dynamics_input_names_the_problem():
    keys, metrics, constants, _ = _runs()
    with pytest.raises(InputError, match="12 runs, 11 metrics.json, 12 constants.json"):
        dynamics_table(keys, metrics[:-1], constants)
    with pytest.raises(InputError, match="no runs"):
        dynamics_table([], [], [])
    broken = {"g_expansive": {"value": 1.0}}  # as loaded: the message names the run
    with pytest.raises(InputError, match="epoch 8 reading authors: missing key 'g_shadowing.pairing'"):
        dynamics_table(keys[:1], metrics[:1], [broken])


def test_dynamics_figure_plots_the_mean_and_seed_band_per_reading():
    keys, metrics, constants, _ = _runs()
    table = dynamics_table(keys, metrics, constants)
    figure = dynamics_figure(table, "digits / m")
    axes = [ax for ax in figure.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == DYNAMICS_VALUES
    for ax, value in zip(axes, DYNAMICS_VALUES):
        readings = ["authors"] if value == "Test accuracy" else ["authors", "definition"]
        assert len(ax.lines) == len(readings)
        bands = [c for c in ax.collections if isinstance(c, matplotlib.collections.PolyCollection)]
        assert len(bands) == len(readings)
        for line, band, reading in zip(ax.lines, bands, readings):
            rows = table[table["Reading"] == reading]
            numbers = pd.to_numeric(rows[value], errors="coerce")
            per_epoch = numbers.groupby(rows["Epoch"]).agg(["mean", "min", "max"])
            np.testing.assert_array_equal(line.get_xdata(), [2, 4, 8])
            np.testing.assert_allclose(line.get_ydata(), per_epoch["mean"], rtol=1e-15)
            vertices = np.concatenate([path.vertices for path in band.get_paths()])
            for epoch, low, high in zip(per_epoch.index, per_epoch["min"], per_epoch["max"]):
                at = vertices[vertices[:, 0] == epoch][:, 1]
                assert math.isclose(at.min(), low, rel_tol=1e-15) and math.isclose(
                    at.max(), high, rel_tol=1e-15
                )
    # the undefined Sh of replicate 2 at epoch 4 leaves replicate 1's value as the mean there
    sh_def = axes[DYNAMICS_VALUES.index("Sh")].lines[1].get_ydata()
    only = table[(table["Reading"] == "definition") & (table["Epoch"] == 4) & (table["Replicate"] == 1)]
    assert sh_def[1] == only["Sh"].iloc[0]
    assert axes[DYNAMICS_VALUES.index("g-expansive")].get_yscale() == "log"  # authors' e is 1e-4 smaller


def test_one_replicate_draws_no_band():
    keys, metrics, constants, _ = _runs()
    table = dynamics_table(keys, metrics, constants)
    one = table[table["Replicate"] == 1]
    figure = dynamics_figure(one, "digits / m")
    for ax in figure.axes:
        assert not [c for c in ax.collections if isinstance(c, matplotlib.collections.PolyCollection)]
    line = figure.axes[0].lines[0]
    np.testing.assert_array_equal(
        line.get_ydata(), one[one["Reading"] == "authors"]["Test accuracy"].to_numpy(float)
    )
