"""The sample-size stage (method §3.6): the grid and the stratified subsets, every subset's estimates
against the float64 brute force of test_readings, the whole test set equal to constants.json bit for bit,
fixed seeds, the band and the slope on data with a known scaling law, the artifacts and the config."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from test_readings import AUTHORS, brute_force, logits_case, run_reading, softmax, write_trajectories

from resdyn import sample_size as ss
from resdyn import shadowing, stages
from resdyn.artifacts import Pairs, SampleSizeSummary, SampleSizeTable
from resdyn.config import sample_size_settings, schema_defaults, training_settings
from resdyn.io import InputError
from resdyn.readings import Reading
from resdyn.runs import Run

SMALL = {"sizes": [], "count": 3, "min_size": 6, "subsets": 4, "seed": 3, "reference": 10}
DEFAULTS = schema_defaults("sample_size")  # count 6 from min_size 50, reference 400, 20 subsets, seed 0
QUANTILES = tuple(schema_defaults("analysis")["curve_quantiles"])  # (0.05, 0.95)


def grid_of(n_images: int, **settings) -> list[int]:
    """size_grid of the canonical settings: the schema defaults with ``settings`` changed."""
    return ss.size_grid(n_images, sample_size_settings(DEFAULTS | settings))


# ------------------------------------------------------------------------------------------ grid, subsets


def test_default_grid_on_the_digits_test_set():
    # N = 450 (digits), count 6 from 50, and the reference 400 added.
    assert DEFAULTS == {"sizes": [], "count": 6, "min_size": 50, "subsets": 20, "seed": 0, "reference": 400}
    assert grid_of(450) == [50, 78, 120, 187, 290, 400, 450]


@pytest.mark.parametrize(
    "n_images, kwargs, grid",
    [
        (100, {"sizes": [80, 20, 20, 500]}, [20, 80, 100]),  # listed sizes ≥ N dropped, N added
        (100, {"count": 1, "reference": 400}, [100]),  # N < reference: nothing added
        (100, {"count": 4, "min_size": 100, "reference": 100}, [100]),
        (1000, {"count": 4, "min_size": 10, "reference": 1000}, [10, 46, 215, 1000]),  # reference = N
        (1000, {"count": 4, "min_size": 10, "reference": 46}, [10, 46, 215, 1000]),  # already in the grid
        (1000, {"count": 4, "min_size": 10}, [10, 46, 215, 400, 1000]),  # the reference 400 added
        (1000, {"sizes": [30], "count": 4, "min_size": 10, "reference": 2}, [2, 30, 1000]),  # sizes win
    ],
)
def test_size_grid(n_images, kwargs, grid):
    assert grid_of(n_images, **kwargs) == grid


def test_class_quotas_are_the_largest_remainder_rounding():
    strata = np.repeat([0, 1, 2], [5, 3, 2])  # N = 10
    assert ss.class_quotas(strata, 10).tolist() == [5, 3, 2]
    # n = 4: exact 2.0, 1.2, 0.8 → floors 2, 1, 0 and the one left to the largest remainder (class 2).
    assert ss.class_quotas(strata, 4).tolist() == [2, 1, 1]
    # n = 5: 2.5, 1.5, 1.0 → 2, 1, 1 and one left: remainders tie (0.5, 0.5), the smaller class wins.
    assert ss.class_quotas(strata, 5).tolist() == [3, 1, 1]
    with pytest.raises(InputError, match="n = 11 images from N = 10"):
        ss.class_quotas(strata, 11)


def test_stratified_subsets_are_fixed_by_the_seed():
    strata = np.random.default_rng(0).integers(0, 4, size=200)
    first = ss.stratified_subset(strata, 60, seed=1, subset=2)
    assert np.array_equal(first, ss.stratified_subset(strata, 60, seed=1, subset=2))
    assert np.all(np.diff(first) > 0)  # sorted, no repeats
    assert np.array_equal(np.bincount(strata[first], minlength=4), ss.class_quotas(strata, 60))
    assert not np.array_equal(first, ss.stratified_subset(strata, 60, seed=1, subset=3))
    assert not np.array_equal(first, ss.stratified_subset(strata, 60, seed=2, subset=2))
    assert np.array_equal(ss.stratified_subset(strata, 200, seed=5, subset=7), np.arange(200))


# ------------------------------------------------------------------------------- exactness on each subset


@pytest.mark.parametrize(
    "reading", [Reading(), AUTHORS, Reading("mean", over_depths="mean")], ids=lambda r: r.name
)
@pytest.mark.parametrize("case", ["random", "near_duplicates", "ties"])
def test_every_subset_matches_the_brute_force(case, reading):
    """Each row of the table is the brute force of test_readings run on that subset alone."""
    logits, labels, n_classes = logits_case(case)
    probs = softmax(logits, 1.0)
    expansive = reading.expansive_probs(logits, probs)
    shadow = reading.shadowing_probs(logits, probs)
    n_images = len(labels)
    grid = [n for n in (6, 9) if n < n_images] + [n_images]
    table = ss.sample_size_table(
        expansive,
        shadow,
        labels,
        labels,
        n_classes,
        reading,
        grid,
        subsets=3,
        seed=11,
        quantiles=QUANTILES,
        chunk=4,
    )
    assert len(table) == 3 * (len(grid) - 1) + 1
    for row in table.itertuples():
        rows = ss.stratified_subset(labels, row.n, 11, row.subset)
        want = brute_force(logits[rows], probs[rows], labels[rows], labels[rows], reading)
        if want["e"] is None:
            assert math.isnan(row.g_expansive) and row.pair_i == row.pair_j == -1
        else:
            value, i, j, _ = want["e"]
            assert row.g_expansive == value  # exact: the same float64 arithmetic
            assert (row.pair_i, row.pair_j) == (rows[i], rows[j])
        best = want["best_value"]
        assert (math.isnan(row.sh_paper) and best is None) or row.sh_paper == best
        if best is not None:
            assert row.orbit_start == rows[want["best"]]
        ind = want["independent"]
        assert (math.isnan(row.sh_independent) and ind is None) or row.sh_independent == ind
        _, curve = shadowing.shadowing_curve(np.array(want["eps"]), np.array(want["delta"]))
        assert (math.isnan(row.sh_curve) and curve["value"] is None) or row.sh_curve == curve["value"]


def test_distinct_orbits_need_subsets_of_at_least_the_depths():
    logits, labels, n_classes = logits_case("random")
    probs = softmax(logits, 1.0)
    with pytest.raises(InputError, match="smallest subset has n = 3.*min_size"):
        ss.sample_size_table(
            probs,
            probs,
            labels,
            labels,
            n_classes,
            AUTHORS,
            [3, 14],
            subsets=2,
            seed=0,
            quantiles=QUANTILES,
            chunk=512,
        )


# ----------------------------------------------------------------------------------------------- the stage


def _stage(path, folder, reading, settings=SMALL, constants=True, run=None, pairs=None):
    pairs = constants if pairs is None else pairs  # both come from the run's earlier stages
    return stages.sample_size(
        path,
        folder / "sample_size.csv",
        folder / "sample_size.json",
        folder / "sample_size.png",
        run=Run("synthetic", "none", reading=reading) if run is None else run,
        settings=settings,
        quantiles=QUANTILES,
        chunk=5,
        constants_path=folder / "constants.json" if constants else None,
        pairs_path=folder / "pairs.h5" if pairs else None,
    )


WHOLE_SET_CASES = [
    (case, reading)
    for case in ("random", "near_duplicates", "ties")
    for reading in (Reading(), AUTHORS, Reading("tau", temperature_expansive=1000.0))
] + [("single_class", Reading()), ("two_images", Reading()), ("single_class", AUTHORS)]


@pytest.mark.parametrize("case, reading", WHOLE_SET_CASES, ids=lambda x: getattr(x, "name", x))
def test_the_whole_test_set_is_constants_json_exactly(case, reading, tmp_path, monkeypatch):
    """The size-N row taken from constants.json is the row the kernels recompute on all N rows, bit for
    bit, and the subsets' e taken from the pairwise pass's close pairs (pairs.h5) are those of a list built
    here: the stage's outputs with and without constants.json and pairs.h5 are the same bytes."""
    monkeypatch.setattr(ss, "PAIRS_AT_LEAST", 4)  # these small lists are taken, not rebuilt
    taken = []
    from_pass = ss.CandidatePairs.from_pass.__func__

    def spy(cls, *args):
        found = from_pass(cls, *args)
        taken.append(found is not None)
        return found

    monkeypatch.setattr(ss.CandidatePairs, "from_pass", classmethod(spy))
    logits, labels, n_classes = logits_case(case)
    path = write_trajectories(tmp_path / "trajectories.h5", logits, labels, n_classes)
    constants = run_reading(path, tmp_path / reading.name, reading, shards=3)
    settings = SMALL | ({"min_size": 8} if reading.orbits == "distinct" else {})
    summary = _stage(path, tmp_path / reading.name, reading, settings=settings)
    assert taken == [len(set(labels.tolist())) > 1]  # the pass listed the different-class pairs
    recomputed = tmp_path / "recomputed"
    recomputed.mkdir()
    _stage(path, recomputed, reading, settings=settings, constants=False, pairs=False)
    for name in ("sample_size.csv", "sample_size.json"):
        assert (tmp_path / reading.name / name).read_bytes() == (recomputed / name).read_bytes()
    table = SampleSizeTable.load(tmp_path / reading.name / "sample_size.csv").table
    full = table[table["n"] == len(labels)]
    assert len(full) == 1 and full["subset"].item() == 0
    full = full.iloc[0]

    def same(value, expected):
        return (expected is None and math.isnan(value)) or value == expected

    assert same(full["g_expansive"], constants["g_expansive"]["value"])
    assert same(full["sh_paper"], constants["g_shadowing"]["paper"]["value"])
    assert same(full["sh_curve"], constants["g_shadowing"]["curve"]["value"])
    assert same(full["sh_independent"], constants["g_shadowing"]["independent"]["value"])
    if constants["g_expansive"]["pair"] is not None:
        assert [full["pair_i"], full["pair_j"]] == constants["g_expansive"]["pair"]
    if constants["g_shadowing"]["paper"]["value"] is not None:
        assert full["orbit_start"] == constants["g_shadowing"]["paper"]["orbit_start"]
    assert summary["N"] == len(labels) and summary["reading"]["name"] == reading.name
    assert summary["sizes"][-1]["n"] == len(labels) and summary["sizes"][-1]["subsets"] == 1


def _scale(block: str, factor: float):
    def edit(constants: dict) -> None:
        node = constants
        for key in block.split("."):
            node = node[key]
        node["value"] *= factor

    return edit


def _other_pair(constants: dict) -> None:
    i, j = constants["g_expansive"]["pair"]
    constants["g_expansive"]["pair"] = [
        i,
        (j + 1) % constants["N"] if (j + 1) % constants["N"] != i else j + 2,
    ]


def _other_start(constants: dict) -> None:
    constants["g_shadowing"]["paper"]["orbit_start"] = (
        constants["g_shadowing"]["paper"]["orbit_start"] + 1
    ) % 14


def _unknown_image(constants: dict) -> None:
    constants["g_expansive"]["pair"] = [0, 99]


def _other_n(constants: dict) -> None:
    constants["N"] = 15


@pytest.mark.parametrize(
    "edit, message",
    [
        (_scale("g_expansive", 1 + 1e-15), r"'g_expansive\.value'.*different inputs"),
        (_other_pair, r"'g_expansive\.value'.*different inputs"),
        (_scale("g_shadowing.paper", 1 + 1e-15), r"'g_shadowing\.paper\.value'.*different inputs"),
        (_other_start, r"'g_shadowing\.paper\.value'.*different inputs"),
        (_unknown_image, "test image 99 is not in the trajectories"),
        (_other_n, "N = 15, but .* holds 14 test images"),
    ],
    ids=["e", "pair", "sh", "orbit_start", "unknown_image", "N"],
)
def test_a_constants_json_of_other_inputs_is_refused(edit, message, tmp_path):
    """The size-N row comes from constants.json; the pair's e and the best-traced orbit's Sh, recomputed
    from the trajectories, must equal it to the bit."""
    logits, labels, n_classes = logits_case("random")
    path = write_trajectories(tmp_path / "trajectories.h5", logits, labels, n_classes)
    constants = run_reading(path, tmp_path / "definition", Reading())
    edit(constants)
    (tmp_path / "definition" / "constants.json").write_text(json.dumps(constants))
    with pytest.raises(InputError, match=r"constants\.json: " + message):
        _stage(path, tmp_path / "definition", Reading())
    assert not list((tmp_path / "definition").glob("sample_size*"))


def _other_value(handle) -> None:
    handle["close/value"][0] = np.nextafter(handle["close/value"][0], 0.0)


def _same_class_pair(handle) -> None:
    handle["close/pair"][0] = [0, 3]  # both of class 0 in the "random" case


@pytest.mark.parametrize(
    "edit, message",
    [
        (_other_value, r"close pair \(\d+, \d+\) is listed at .* but the trajectories give"),
        (_same_class_pair, r"close pair \(0, 3\) is listed at .* with labels 0, 0"),
    ],
    ids=["value", "same_class"],
)
def test_close_pairs_of_other_inputs_are_refused(edit, message, tmp_path, monkeypatch):
    """The pass's list is rechecked pair by pair against the trajectories before any subset uses it;
    a pairs.h5 of another trajectories file is named and nothing is written."""
    import h5py

    monkeypatch.setattr(ss, "PAIRS_AT_LEAST", 4)
    logits, labels, n_classes = logits_case("random")
    path = write_trajectories(tmp_path / "trajectories.h5", logits, labels, n_classes)
    run_reading(path, tmp_path / "definition", Reading())
    with h5py.File(tmp_path / "definition" / "pairs.h5", "r+") as handle:
        edit(handle)
    with pytest.raises(InputError, match=r"pairs\.h5: " + message + ".*different inputs"):
        _stage(path, tmp_path / "definition", Reading())
    assert not list((tmp_path / "definition").glob("sample_size*"))


def test_nearest_tables_of_other_inputs_are_refused(tmp_path):
    """Revisiting orbits take the pass's nearest neighbours: each entry is rechecked first, and readings
    whose pass saw other probabilities (another temperature) or whose orbits are distinct take none."""
    import h5py

    logits, labels, n_classes = logits_case("random")
    path = write_trajectories(tmp_path / "trajectories.h5", logits, labels, n_classes)
    run_reading(path, tmp_path / "definition", Reading())
    probs = softmax(logits, 1.0)
    passed = Pairs.load(tmp_path / "definition" / "pairs.h5").result
    index, distance = ss.nearest_from_pass(passed, probs, Reading(), "pairs.h5")
    np.testing.assert_array_equal(index, passed.nn_index)
    for other in (AUTHORS, Reading("tau", temperature_expansive=1000.0)):
        assert ss.nearest_from_pass(passed, other.shadowing_probs(logits, probs), other, "pairs.h5") is None
    with h5py.File(tmp_path / "definition" / "pairs.h5", "r+") as handle:
        handle["nearest/distance"][2, 5] = np.nextafter(handle["nearest/distance"][2, 5], 1.0)
    with pytest.raises(
        InputError, match=r"pairs\.h5: image 5's nearest neighbour at depth 2 .*different inputs"
    ):
        _stage(path, tmp_path / "definition", Reading())
    assert not list((tmp_path / "definition").glob("sample_size*"))


def test_a_short_or_missing_pass_list_is_rebuilt():
    """Too few close pairs for the larger subsets (fewer than PAIRS_AT_LEAST / 4), or none (an older
    pairs.h5, whose bound reads NaN): the stage builds its own list."""
    from resdyn import distances

    logits, labels, n_classes = logits_case("random")
    probs = softmax(logits, 1.0)
    result = distances.pairwise_shard(
        probs, labels, 0, 14, n_classes=n_classes, chunk=4, device="cpu", close="max"
    )
    assert 0 < len(result.close_value) < ss.PAIRS_AT_LEAST // 4
    assert ss.CandidatePairs.from_pass(result, probs, labels, "max", "pairs.h5") is None
    older = distances.pairwise_shard(probs, labels, 0, 14, n_classes=n_classes, chunk=4, device="cpu")
    assert ss.CandidatePairs.from_pass(older, probs, labels, "max", "pairs.h5") is None


@pytest.mark.parametrize(
    "reading", [Reading(), AUTHORS, Reading("mean", over_depths="mean")], ids=lambda r: r.name
)
@pytest.mark.parametrize("case", ["random", "near_duplicates", "ties", "single_class"])
def test_the_recheck_recomputes_the_whole_sets_pair_and_orbit(case, reading):
    """recheck_full_set gives the whole set's subset_constants values bit for bit (rows, any reading)."""
    logits, labels, n_classes = logits_case(case)
    probs = softmax(logits, 1.0)
    expansive = reading.expansive_probs(logits, probs)
    shadow = reading.shadowing_probs(logits, probs)
    found = ss.subset_constants(expansive, shadow, labels, n_classes, reading, quantiles=QUANTILES, chunk=4)
    again = ss.recheck_full_set(expansive, shadow, labels, reading, found, chunk=4)
    assert again == {"g_expansive": found["g_expansive"], "sh_paper": found["sh_paper"]}


def test_fixed_seeds_give_identical_curves(tmp_path):
    logits, labels, n_classes = logits_case("random")
    path = write_trajectories(tmp_path / "trajectories.h5", logits, labels, n_classes)
    outputs = {}
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        folder = tmp_path / name
        folder.mkdir()
        _stage(path, folder, Reading(), settings=SMALL | {"seed": seed}, constants=False)
        outputs[name] = [(folder / f"sample_size.{ext}").read_bytes() for ext in ("csv", "json")]
    assert outputs["a"] == outputs["b"]
    assert outputs["a"][0] != outputs["c"][0]


def test_the_figure_is_titled_with_the_network_and_the_reading(tmp_path, monkeypatch):
    from resdyn import figures

    titles = []
    plot = figures.plot_sample_size
    monkeypatch.setattr(figures, "plot_sample_size", lambda *a: titles.append(a[-1]) or plot(*a))
    logits, labels, n_classes = logits_case("random")
    path = write_trajectories(tmp_path / "trajectories.h5", logits, labels, n_classes)
    _stage(path, tmp_path, AUTHORS, constants=False, run=Run("digits", "tiny", 3, AUTHORS))
    _stage(path, tmp_path, Reading(), constants=False, run=Run("digits", "tiny"))
    assert titles == ["digits / tiny / replicate 3 / reading authors", "digits / tiny / reading definition"]
    assert (tmp_path / "sample_size.png").stat().st_size > 0


def test_summary_bands_slopes_and_reference(tmp_path):
    logits, labels, n_classes = logits_case("random")
    path = write_trajectories(tmp_path / "trajectories.h5", logits, labels, n_classes)
    summary = _stage(path, tmp_path, Reading(), constants=False)
    table = SampleSizeTable.load(tmp_path / "sample_size.csv").table
    assert [s["n"] for s in summary["sizes"]] == ss.size_grid(14, sample_size_settings(SMALL))
    assert summary["settings"] == sample_size_settings(SMALL)
    for size in summary["sizes"]:
        values = table.loc[table["n"] == size["n"], "sh_curve"].dropna().to_numpy()
        got = size["sh_curve"]
        assert got["n_defined"] == values.size
        if values.size:  # the plain numpy statistics of the subsets' values
            assert got["median"] == np.median(values)
            assert [got["low"], got["high"]] == np.quantile(values, [0.05, 0.95]).tolist()
    ref = summary["reference"]
    assert ref["available"] and ref["n"] == 10 and ref["subsets"] == 4
    assert ref["g_expansive"] == next(s for s in summary["sizes"] if s["n"] == 10)["g_expansive"]
    loaded = SampleSizeSummary.load(tmp_path / "sample_size.json")
    assert loaded.at_reference("g_expansive") == ref["g_expansive"]
    # The fitted slope is the least-squares line through the log medians.
    medians = [(s["n"], s["g_expansive"]["median"]) for s in summary["sizes"]]
    x, y = np.log([n for n, _ in medians]), np.log([m for _, m in medians])
    want = np.polyfit(x, y, 1)
    assert summary["slope"]["g_expansive"]["value"] == pytest.approx(want[0], rel=1e-12)
    assert summary["slope"]["g_expansive"]["intercept"] == pytest.approx(want[1], rel=1e-12)
    # A reference larger than the test set: said so, not extrapolated.
    big = _stage(path, tmp_path, Reading(), settings=SMALL | {"reference": 400}, constants=False)
    reason = "N = 14 < 400: the test set is smaller than the reference size (not extrapolated)"
    assert big["reference"] == {"n": 400, "available": False, "undefined_reason": reason}
    loaded = SampleSizeSummary.load(tmp_path / "sample_size.json")
    assert loaded.at_reference("g_expansive") is None and "N = 14 < 400" in loaded.reference_reason()


@pytest.mark.parametrize("dim, slope", [(1, -2.0), (2, -1.0)])
def test_band_and_slope_follow_a_known_scaling_law(dim, slope):
    """Points uniform in [0, 1]^d, two balanced classes, the same point at both depths: e is the smallest
    of M = n_0·n_1 ≈ n²/4 different-class distances, so (Poisson limit, boundary effects of order e)
    P(e > r) = exp(−M·V_d·r^d), M = n_0·n_1, with V_1 = 2, V_2 = π: median e ∝ n^(−2/d), and the q-quantile is
    r_q = (−log(1 − q)/(M·V_d))^(1/d)."""
    rng = np.random.default_rng(dim)
    points = rng.random((4000, dim))
    probs = np.repeat(points[:, None, :], 2, axis=1)
    labels = np.arange(4000) % 2
    grid = [25, 50, 100, 200, 400]
    table = ss.sample_size_table(
        probs, probs, labels, labels, 2, Reading(), grid, subsets=60, seed=0, quantiles=QUANTILES, chunk=512
    )
    summary = ss.summarize(table, 4000, reference=400)
    volume = {1: 2.0, 2: math.pi}[dim]

    def quantile(q, n):
        pairs = (n // 2) * (n - n // 2)  # M: the two classes' sizes in a stratified subset
        return (-math.log(1 - q) / (pairs * volume)) ** (1 / dim)

    assert summary["slope"]["g_expansive"]["value"] == pytest.approx(slope, abs=0.25)
    inside = 0
    assert [size["n"] for size in summary["sizes"]] == grid
    for size in summary["sizes"]:
        n, found = size["n"], size["g_expansive"]
        assert found["low"] < quantile(0.5, n) < found["high"]
        assert found["low"] < found["median"] < found["high"]
        values = table.loc[table["n"] == n, "g_expansive"]
        inside += int(((values >= quantile(0.05, n)) & (values <= quantile(0.95, n))).sum())
    assert inside / (60 * len(grid)) == pytest.approx(0.9, abs=0.06)  # the 5–95 % band holds ~90 %


# ----------------------------------------------------------------------------------------- artifacts, config


def test_sample_size_csv_round_trips_bit_for_bit(tmp_path):
    table = pd.DataFrame(
        {
            "n": [5, 5, 9],
            "subset": [0, 1, 0],
            "g_expansive": [0.1 + 0.2, 1e-300, np.nan],
            "pair_i": [1, 2, -1],
            "pair_j": [3, 4, -1],
            "sh_paper": [np.nan, 2 / 3, 1.0],
            "orbit_start": [-1, 0, 7],
            "sh_curve": [0.5, np.nextafter(0.5, 1), 0.25],
            "sh_independent": [1 / 7, 2 / 7, 3 / 7],
        }
    )
    SampleSizeTable(table).save(tmp_path / "s.csv")
    back = SampleSizeTable.load(tmp_path / "s.csv").table
    pd.testing.assert_frame_equal(back, table, check_exact=True)
    assert ",,1,3," not in (tmp_path / "s.csv").read_text()  # NaN is an empty cell


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda t: t.drop(columns="sh_curve"), "columns"),
        (lambda t: t.assign(g_expansive=-1.0), "'g_expansive' = -1.0 in row 0"),
        (lambda t: pd.concat([t, t.iloc[[-1]]]), "must have one row"),
        (lambda t: t.assign(n=1), "sizes must be >= 2"),
    ],
)
def test_malformed_sample_size_csv_is_named(edit, message, tmp_path):
    table = pd.DataFrame([[5, 0, 0.1, 1, 2, 0.5, 3, 0.2, 0.3], [9, 0, 0.1, 1, 2, 0.5, 3, 0.2, 0.3]])
    table.columns = SampleSizeTable.COLUMNS
    edit(table).to_csv(tmp_path / "s.csv", index=False)
    with pytest.raises(InputError, match=message):
        SampleSizeTable.load(tmp_path / "s.csv")


def test_sample_size_settings_are_canonical():
    given = {"sizes": [80, 20, 80], "count": 9, "min_size": 3, "subsets": 20, "seed": 0, "reference": 400}
    other = given | {"count": 2, "min_size": 70, "sizes": [20, 80]}
    assert repr(sample_size_settings(given)) == repr(sample_size_settings(other))
    assert sample_size_settings(given) == {"sizes": [20, 80], "subsets": 20, "seed": 0, "reference": 400}
    grid = {"sizes": [], "count": 6, "min_size": 50, "subsets": 20, "seed": 0, "reference": 400}
    assert sample_size_settings(grid) == {
        "count": 6,
        "min_size": 50,
        "subsets": 20,
        "seed": 0,
        "reference": 400,
    }
    with pytest.raises(InputError, match=r"sample_size\.subsets = 0"):
        sample_size_settings(grid | {"subsets": 0})
    with pytest.raises(InputError, match="unknown key.*'sises'"):
        sample_size_settings(grid | {"sises": [3]})


def test_replicates_differ_only_in_the_seed():
    config = {
        "datasets": {"d": {"source": "sklearn-digits", "training": {"epochs": 3}}},
        "models": {"m": {"training": {"seed": 5}}},
        "training": {"epochs": 8, "lr": 0.001, "batch_size": 128, "seed": 0, "device": "cpu"},
    }
    first = training_settings(config, "d", "m")
    assert training_settings(config, "d", "m", replicate=1) == first == first | {"seed": 5, "epochs": 3}
    assert training_settings(config, "d", "m", replicate=4) == first | {"seed": 8}
    with pytest.raises(InputError, match="replicate must be an integer >= 1"):
        training_settings(config, "d", "m", replicate=0)


def test_readings_table_reads_each_readings_reference_size(tmp_path):
    """The readings table's reference-size Sh is the reading's headline pairing (method §3.4)."""
    from resdyn import tables

    logits, labels, n_classes = logits_case("random")
    path = write_trajectories(tmp_path / "trajectories.h5", logits, labels, n_classes)
    found, summaries = {}, {}
    for reading in (Reading(), AUTHORS):
        key = ("mnist", "resnet50", reading.name)
        found[key] = run_reading(path, tmp_path / reading.name, reading)
        summaries[key] = _stage(path, tmp_path / reading.name, reading)
    paper_rows = {("mnist", "resnet50"): ("MNIST", "ResNet-50")}
    table = tables.readings_table(found, paper_rows=paper_rows, sample_size=summaries)
    assert table["Reading"].tolist() == ["definition", "authors", "published"]
    for position, (key, summary) in enumerate(summaries.items()):
        headline = "sh_paper" if key[2] == "definition" else "sh_independent"
        ref = summary["reference"]
        assert table.loc[position, "Sh @10"] == ref[headline]["median"]
        assert table.loc[position, "Sh @10 5–95%"] == tables.Band(ref[headline]["low"], ref[headline]["high"])
        assert table.loc[position, "g-expansive @10"] == ref["g_expansive"]["median"]
    assert table.loc[2, "Sh @10"] is None  # the paper's own row: no subsets
    tables.write_table(table, tmp_path / "readings")


# ------------------------------------------------------------------------------------- candidate pairs


def _clustered(n_images: int = 60, seed: int = 5) -> tuple[np.ndarray, np.ndarray, int]:
    """Logits in a few tight clusters shared by the classes, so the closest pairs are few and crowded."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=3.0, size=(4, 5, 4))
    logits = centres[rng.integers(0, 4, n_images)] + 0.05 * rng.normal(size=(n_images, 5, 4))
    logits[7] = logits[3] + 1e-7  # a near-duplicate pair across classes
    logits[12] = logits[20]  # an exact duplicate: d = 0 at every depth
    return logits, np.arange(n_images) % 3, 3


def _clustered_table(reading: Reading, grid: list[int], *, subsets: int, seed: int, **kwargs) -> pd.DataFrame:
    """sample_size_table on _clustered(90) under ``reading``'s views (true labels, chunk 7)."""
    logits, labels, n_classes = _clustered(90)
    probs = softmax(logits, 1.0)
    expansive, shadow = reading.expansive_probs(logits, probs), reading.shadowing_probs(logits, probs)
    return ss.sample_size_table(
        expansive,
        shadow,
        labels,
        labels,
        n_classes,
        reading,
        grid,
        subsets=subsets,
        seed=seed,
        quantiles=QUANTILES,
        chunk=7,
        **kwargs,
    )


CANDIDATE_CASES = ["random", "near_duplicates", "ties", "single_class", "two_images", "clustered"]


def _case(name: str) -> tuple[np.ndarray, np.ndarray, int]:
    return _clustered() if name == "clustered" else logits_case(name)


@pytest.mark.parametrize("at_least", [1, 8, 10**9], ids=["tiny", "partial", "complete"])
@pytest.mark.parametrize("over_depths", ["max", "min"])
@pytest.mark.parametrize("case", CANDIDATE_CASES)
def test_candidate_pairs_give_each_subsets_e_exactly(case, over_depths, at_least, monkeypatch):
    """The list's contract against the float64 brute force: unlisted different-class pairs are ≥ bound >
    every listed value, and a subset's first listed pair is its e and pair from pairwise_bruteforce."""
    from resdyn import distances

    monkeypatch.setattr(ss, "PAIRS_AT_LEAST", at_least)
    logits, labels, n_classes = _case(case)
    probs = softmax(logits, 1.0)
    lists = ss.CandidatePairs.build(probs, labels, over_depths)
    assert lists is not None
    dist = np.sqrt(distances.squared_distance(probs[:, None], probs[None, :]))  # (N, N, D)
    reduced = dist.max(axis=2) if over_depths == "max" else dist.min(axis=2)
    listed = set(zip(lists.first.tolist(), lists.second.tolist()))
    for i, j in zip(*np.triu_indices(len(labels), 1)):
        if labels[i] != labels[j] and (i, j) not in listed:
            assert reduced[i, j] >= lists.bound
    assert np.all(lists.value < lists.bound) and np.all(lists.first < lists.second)
    assert np.array_equal(lists.value, reduced[lists.first, lists.second])
    rng = np.random.default_rng(1)
    outcomes = set()
    for _ in range(40):
        n = int(rng.integers(2, len(labels) + 1))
        members = np.sort(rng.choice(len(labels), size=n, replace=False))
        got = lists.expansive(members)
        outcomes.add(got is None)
        if got is None:
            continue
        want = distances.pairwise_bruteforce(probs[members], labels[members], n_classes)
        value, pair, _ = distances.expansive_constant(want, over_depths)
        assert (math.isnan(got[0]) and math.isnan(value)) or got[0] == value
        assert got[1].tolist() == pair.tolist()
    if at_least == 10**9:  # every pair listed: always an answer
        assert lists.bound == math.inf and outcomes == {False}


@pytest.mark.parametrize("reading", [Reading(), AUTHORS], ids=lambda r: r.name)
def test_the_table_does_not_depend_on_the_workers(reading):
    """Subsets computed side by side on three threads (one numba thread each) give the table of one
    thread, bit for bit and in the same order."""
    from resdyn import _kernels

    if not _kernels.thread_safe():
        pytest.skip("numba's threading layer here does not allow concurrent callers: one worker only")
    tables = [_clustered_table(reading, [9, 20, 45, 90], subsets=7, seed=4, workers=w) for w in (1, 3)]
    assert len(tables[0]) == 3 * 7 + 1
    pd.testing.assert_frame_equal(tables[0], tables[1], check_exact=True)


@pytest.mark.parametrize("limit", [3, 12, 40])
@pytest.mark.parametrize("over_depths", ["max", "min"])
def test_candidate_pairs_within_the_candidate_limit_keep_the_contract(over_depths, limit, monkeypatch):
    """Past MAX_CANDIDATES the list keeps the last radius that fitted, or shrinks before any fitted: the
    list is shorter than PAIRS_AT_LEAST asks, but unlisted different-class pairs are still ≥ its bound >
    every listed value, and every value is the brute force's."""
    from resdyn import distances

    monkeypatch.setattr(ss, "PAIRS_AT_LEAST", 10**9)
    monkeypatch.setattr(ss, "MAX_CANDIDATES", limit)
    logits, labels, _ = _clustered()
    probs = softmax(logits, 1.0)
    lists = ss.CandidatePairs.build(probs, labels, over_depths)
    assert lists is not None and lists.bound < math.inf  # never complete under the limit
    assert len(lists.value) <= limit
    dist = np.sqrt(distances.squared_distance(probs[:, None], probs[None, :]))
    reduced = dist.max(axis=2) if over_depths == "max" else dist.min(axis=2)
    listed = set(zip(lists.first.tolist(), lists.second.tolist()))
    for i, j in zip(*np.triu_indices(len(labels), 1)):
        if labels[i] != labels[j] and (i, j) not in listed:
            assert reduced[i, j] >= lists.bound
    assert np.all(lists.value < lists.bound)
    assert np.array_equal(lists.value, reduced[lists.first, lists.second])


def test_candidate_pairs_leave_the_mean_reading_to_the_kernel():
    logits, labels, _ = logits_case("random")
    assert ss.CandidatePairs.build(softmax(logits, 1.0), labels, "mean") is None


@pytest.mark.parametrize(
    "reading", [Reading(), AUTHORS, Reading("tau", temperature_expansive=1000.0)], ids=lambda r: r.name
)
def test_tables_with_and_without_candidate_lists_are_identical(reading, monkeypatch):
    """Subsets that hold a listed pair take e from the list, the others (forced here by a short list) run
    the kernel: the table is the one the kernel alone gives, bit for bit."""
    logits, labels, _ = _clustered(90)
    expansive = reading.expansive_probs(logits, softmax(logits, 1.0))
    grid = [8, 20, 45, 90]

    def table() -> pd.DataFrame:
        return _clustered_table(reading, grid, subsets=6, seed=2)

    monkeypatch.setattr(ss, "PAIRS_AT_LEAST", 6)
    lists = ss.CandidatePairs.build(expansive, labels, reading.over_depths)
    found = [
        lists.expansive(ss.stratified_subset(labels, n, 2, b)) is not None
        for n in grid[:-1]
        for b in range(6)
    ]
    assert any(found) and not all(found)  # both routes are taken
    with_lists = table()
    monkeypatch.setattr(ss.CandidatePairs, "build", classmethod(lambda cls, *args: None))
    pd.testing.assert_frame_equal(with_lists, table(), check_exact=True)
