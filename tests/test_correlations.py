"""tables.robustness_correlations against scipy.stats.spearmanr, a hand-checked case, ties and n < 3."""

import math

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from resdyn.tables import robustness_correlations


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
