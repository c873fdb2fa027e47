"""tables.robustness_correlations against scipy.stats.spearmanr, a hand-checked case, ties and n < 3."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from resdyn.artifacts import Constants, RobustnessTable
from resdyn.figures import robustness_scatter_figure
from resdyn.io import InputError
from resdyn.stages import headline_measures
from resdyn.tables import robustness_correlations, robustness_runs, robustness_table


def test_rho_matches_scipy_and_a_hand_checked_case():
    rng = np.random.default_rng(1)
    runs = pd.DataFrame({"e": rng.normal(size=12), "acc": rng.normal(size=12)})
    runs.loc[3, "acc"] = runs.loc[4, "acc"]  # a partial tie: average ranks, as scipy
    runs["hand_c"] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
    out = robustness_correlations(runs, ["e", "hand_c"], ["acc"], n_boot=500, seed=0)
    assert math.isclose(out["ρ"][0], spearmanr(runs.e, runs.acc).statistic, rel_tol=1e-12)
    assert out["CI low"][0] <= out["ρ"][0] <= out["CI high"][0] and out["Runs"][0] == 12
    again = robustness_correlations(runs, ["e"], ["acc"], n_boot=500, seed=0)
    assert again.iloc[0].equals(out.iloc[0])
    # hand-checked: ranks (1,2,3) vs (3,1,2): d = (-2, 1, 1), ρ = 1 − 6·6/(3·8) = −0.5
    small = pd.DataFrame({"c": [0.1, 0.2, 0.3], "m": [9.0, 1.0, 5.0]})
    assert robustness_correlations(small, ["c"], ["m"])["ρ"][0] == -0.5


def test_ties_and_too_few_runs_give_nan_with_a_reason():
    runs = pd.DataFrame({"c": [1.0, 1.0, 1.0, 1.0], "m": [1.0, 2.0, 3.0, 4.0], "few": [1.0, 2.0, None, None]})
    out = robustness_correlations(runs, ["c", "few"], ["m"])
    assert math.isnan(out["ρ"][0]) and "tie" in out["Reason"][0]
    assert math.isnan(out["ρ"][1]) and "at least 3" in out["Reason"][1] and out["Runs"][1] == 2


def _constants(e: float, sh: float, lip: float) -> Constants:
    return Constants(
        {
            "g_expansive": {"value": e},
            "g_shadowing": {"paper": {"value": sh}, "curve": {"value": 2 * sh}},
            "lip": {"fc": lip},
            "t_g_lower": {"paper": sh / lip},
        }
    )


def _robustness(clean: float, pgd: float, minimal: float) -> pd.DataFrame:
    """A robustness.csv table with a clean row, a two-level L∞ PGD grid and a minimal L2 row."""
    rows = [("clean", math.nan, clean, math.nan), ("pgd_linf", 0.0, clean, math.nan)]
    rows += [("pgd_linf", 0.05, pgd, math.nan), ("minimal_l2", math.nan, math.nan, minimal)]
    table = pd.DataFrame(rows, columns=["measure", "level", "accuracy", "value"])
    table["accuracy_single_run"] = table["accuracy"]
    table["value_correct"] = table["value"]
    table[["n_images", "n_failed", "seed"]] = [50, 0, 7]
    table["attack"] = "test"
    return table[list(RobustnessTable.COLUMNS)]


def _networks(values: list[tuple[float, float, float, float, float, float]]) -> dict:
    return {
        f"net{k}": (
            {"definition": _constants(e, sh, lip), "authors": _constants(2 * e, sh, lip)},
            RobustnessTable(_robustness(clean, pgd, minimal)).measures(),
        )
        for k, (e, sh, lip, clean, pgd, minimal) in enumerate(values)
    }


def test_robustness_table_reads_every_reading_and_measure(tmp_path):
    values = [
        (0.1, 1.0, 2.0, 0.9, 0.5, 0.3),
        (0.3, 1.2, 1.0, 0.95, 0.6, 0.2),
        (0.2, 0.9, 3.0, 0.97, 0.8, 0.5),
    ]
    values += [(0.5, 1.1, 2.5, 0.99, 0.7, 0.4)]
    runs = robustness_runs(_networks(values))
    assert runs.measures == ["clean_accuracy", "pgd_linf_accuracy@0.05", "minimal_l2_median"]
    assert runs.constants[:5] == [f"{c} [definition]" for c in ("e", "Sh paper", "Sh curve", "Lip_FC", "T_g")]
    assert len(runs.constants) == 10 and list(runs.frame["T_g [authors]"]) == [v[1] / v[2] for v in values]
    table = robustness_table(runs, n_boot=200, seed=0)
    assert len(table) == 2 * 10 * 3 and set(table["Runs"]) == {4}  # every clean accuracy is ≥ 0.5
    assert list(table["Networks"].unique()) == ["all", "clean accuracy ≥ 0.5"]
    every = table[table["Networks"] == "all"].set_index(["Constant", "Measure"])
    row = every.loc[("e [definition]", "clean_accuracy")]
    assert math.isclose(row["ρ"], spearmanr([v[0] for v in values], [v[3] for v in values]).statistic)
    # the same ρ under the authors' reading (e doubled keeps its ranks)
    assert every.loc[("e [authors]", "clean_accuracy"), "ρ"] == row["ρ"]
    two = robustness_table(robustness_runs(_networks(values[:2])))
    assert table["ρ"].notna().any() and two["ρ"].isna().all()
    assert all("only 2 run(s)" in reason for reason in two["Reason"])


def test_trained_block_leaves_out_networks_below_the_threshold():
    # two networks near chance (nothing survives an attack) and four trained ones whose e ranks them
    # against their robustness: across all six e looks like a robustness measure, among the trained not
    values = [(0.01, 1.0, 1.0, 0.1, 0.0, 0.0), (0.02, 1.0, 1.0, 0.12, 0.0, 0.0)]
    trained = [(0.4, 1.0, 1.0, 0.99, 0.2, 0.5), (0.3, 1.0, 1.0, 0.98, 0.4, 0.6)]
    trained += [(0.2, 1.0, 1.0, 0.97, 0.6, 0.7), (0.1, 1.0, 1.0, 0.96, 0.8, 0.8)]
    runs = robustness_runs(_networks(values + trained))
    table = robustness_table(runs, trained_accuracy=0.9, n_boot=200, seed=0).set_index(
        ["Networks", "Constant", "Measure"]
    )
    key = ("e [definition]", "minimal_l2_median")
    e = [v[0] for v in values + trained]
    minimal = [v[5] for v in values + trained]
    assert math.isclose(table.loc[("all", *key), "ρ"], spearmanr(e, minimal).statistic)
    assert table.loc[("all", *key), "ρ"] > 0 and table.loc[("all", *key), "Runs"] == 6
    among = table.loc[("clean accuracy ≥ 0.9", *key)]
    assert among["Runs"] == 4 and among["ρ"] == -1.0  # e[2:] and minimal[2:] in opposite orders
    # 4 runs: ρ, but no bootstrap interval (it would collapse to [-1, -1])
    assert math.isnan(among["CI low"]) and math.isnan(among["CI high"]) and among["Bootstrap used"] == 0
    assert "too few for a bootstrap interval" in among["Reason"]
    assert math.isfinite(table.loc[("all", *key), "CI low"])  # 6 runs get one
    with pytest.raises(InputError, match="trained_accuracy"):
        robustness_table(runs, trained_accuracy=1.5)


def test_robustness_figure_plots_each_runs_values():
    values = [
        (0.1, 1.0, 2.0, 0.9, 0.5, 0.3),
        (0.3, 1.2, 1.0, 0.95, 0.6, 0.2),
        (0.2, 0.9, 3.0, 0.97, 0.8, 0.5),
    ]
    runs = robustness_runs(_networks(values))
    shown = ["e [definition]", "T_g [definition]"]
    measures = headline_measures(runs.measures)
    assert measures == runs.measures  # one PGD level above 0: the largest
    figure = robustness_scatter_figure(
        runs.frame, shown, measures, {("e [definition]", "clean_accuracy"): 0.5}
    )
    axes = np.asarray(figure.axes).reshape(2, 3)
    for r, constant in enumerate(shown):
        for c, measure in enumerate(measures):
            points = axes[r, c].collections[0].get_offsets()
            np.testing.assert_array_equal(points, runs.frame[[measure, constant]].to_numpy(float))
    assert axes[0, 0].get_title() == "ρ = +0.50 (3 runs)" and axes[1, 2].get_title() == "ρ n/a (3 runs)"


def test_robustness_figure_marks_the_networks_below_the_trained_threshold():
    values = [
        (0.01, 1.0, 2.0, 0.1, 0.0, 0.0),
        (0.3, 1.2, 1.0, 0.95, 0.6, 0.2),
        (0.2, 0.9, 3.0, 0.97, 0.8, 0.5),
    ]
    runs = robustness_runs(_networks(values))
    trained = np.array([False, True, True])
    figure = robustness_scatter_figure(
        runs.frame,
        ["e [definition]"],
        ["minimal_l2_median"],
        {("e [definition]", "minimal_l2_median"): 0.5},
        trained,
        {("e [definition]", "minimal_l2_median"): -1.0},
    )
    (ax,) = figure.axes
    filled, hollow = ax.collections
    columns = ["minimal_l2_median", "e [definition]"]
    np.testing.assert_array_equal(filled.get_offsets(), runs.frame[columns].to_numpy(float)[1:])
    np.testing.assert_array_equal(hollow.get_offsets(), runs.frame[columns].to_numpy(float)[:1])
    assert len(hollow.get_facecolors()) == 0 or hollow.get_facecolors()[0][3] == 0  # no fill
    assert ax.get_title() == "ρ = +0.50 (3 runs)\ntrained: ρ = -1.00 (2)"
