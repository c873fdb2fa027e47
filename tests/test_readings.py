"""Readings (method §3.4): every reading's constants against a float64 brute force written here, shard-count
independence, the definition unchanged, and the config contract."""

from __future__ import annotations

import math
from pathlib import Path

import h5py
import numpy as np
import pytest

from resdyn import stages
from resdyn.artifacts import Trajectories
from resdyn.config import schema_defaults
from resdyn.io import InputError
from resdyn.readings import DEFINITION, Reading, reading_settings, view_probs
from resdyn.runs import Run

ANALYSIS = schema_defaults("analysis")
LIPSCHITZ = schema_defaults("lipschitz")  # solver, eps

AUTHORS = Reading(
    "authors",
    temperature_expansive=1000.0,
    temperature_shadowing=1.0,
    depths="blocks",
    over_depths="min",
    orbits="distinct",
    pairing="independent",
)
READINGS = [
    Reading(),
    AUTHORS,
    Reading("tau", temperature_expansive=1000.0, temperature_shadowing=1000.0),
    Reading("tau_e", temperature_expansive=1000.0),
    Reading("min", over_depths="min"),
    Reading("mean", over_depths="mean"),
    Reading("blocks", depths="blocks"),
    Reading("distinct", orbits="distinct", temperature_expansive=0.5, temperature_shadowing=0.5),
    Reading("predicted", labels="predicted", pairing="independent"),
]


# ---------------------------------------------------------------------------------------- brute force


def softmax(z: np.ndarray, tau: float) -> np.ndarray:
    z = z / tau
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def distance(u: np.ndarray, v: np.ndarray) -> float:
    """‖u − v‖₂ with the squares summed class by class in order (the package's stated arithmetic). Each
    square is d·d: libm's pow(d, 2), which Python's ``d ** 2`` calls, need not be correctly rounded and
    was seen 1 ulp off on a subset of the near-duplicates case."""
    total = 0.0
    for c in range(u.size):
        diff = float(u[c]) - float(v[c])
        total += diff * diff
    return math.sqrt(total)


def brute_force(logits, probs, labels, pred, reading: Reading) -> dict:
    """Every constant of ``reading`` by plain loops: e (pair, depth), the orbits, ε, b*, both pairings."""
    first = reading.first_depth

    def view(tau):
        return probs[:, first:] if tau == 1.0 else softmax(logits[:, first:], tau)

    P = view(reading.temperature_expansive)
    n, depths, _ = P.shape
    y = pred if reading.labels == "predicted" else labels
    best = None
    for i in range(n):
        for j in range(i + 1, n):
            if y[i] == y[j]:
                continue
            d = [distance(P[i, t], P[j, t]) for t in range(depths)]
            if reading.over_depths == "max":
                value, depth = max(d), first + d.index(max(d))
            elif reading.over_depths == "min":
                value, depth = min(d), first + d.index(min(d))
            else:
                total = 0.0
                for x in d:
                    total += x
                value, depth = total / depths, None
            if best is None or (value, i, j) < best[:3]:
                best = (value, i, j, depth)

    Q = view(reading.temperature_shadowing)
    orbits, hops = [], []
    for start in range(n):
        orbit, hop = [start], []
        for t in range(depths - 1):
            a = orbit[-1]
            excluded = set(orbit) if reading.orbits == "distinct" else {a}
            candidates = [(distance(Q[a, t + 1], Q[j, t + 1]), j) for j in range(n) if j not in excluded]
            d, j = min(candidates)
            orbit.append(j)
            hop.append(d)
        orbits.append(orbit)
        hops.append(hop)
    eps, shadow = [], []
    for orbit in orbits:
        worst = [max(distance(Q[b, t], Q[a, t]) for t, a in enumerate(orbit)) for b in range(n)]
        eps.append(min(worst))
        shadow.append(worst.index(min(worst)))
    delta = [max(h) for h in hops]
    positive = [k for k in range(n) if eps[k] > 0]
    traced = min(positive, key=lambda k: (eps[k], -delta[k], k)) if positive else None
    eps_orbit = min(positive, key=lambda k: (eps[k], k)) if positive else None
    delta_orbit = min(range(n), key=lambda k: (delta[k], k))
    return {
        "e": best,
        "orbits": orbits,
        "best": traced,
        "best_value": None if traced is None else delta[traced] / eps[traced],
        "eps": eps,
        "delta": delta,
        "shadow": shadow,
        "independent": None if eps_orbit is None else delta[delta_orbit] / eps[eps_orbit],
        "eps_orbit": eps_orbit,
        "delta_orbit": delta_orbit,
    }


# ---------------------------------------------------------------------------------------- the stages


def write_trajectories(path: Path, logits: np.ndarray, labels: np.ndarray, n_classes: int) -> Path:
    """A trajectories.h5 through the artifact's own writer: float64 logits, probs = softmax(logits)."""
    n, depths, _ = logits.shape
    probs = softmax(logits, 1.0)
    head = [(np.random.default_rng(0).normal(size=(n_classes, 8)), np.zeros(n_classes))]
    with Trajectories.writer(path, N=n, T=depths - 1, n=8, C=n_classes, store_states=False) as writer:
        writer.write_batch(0, logits, probs, None)
        order = np.zeros(n, dtype=np.int64)
        for c in range(n_classes):
            members = np.flatnonzero(labels == c)
            order[members] = np.arange(1, members.size + 1)
        writer.finish(
            labels=labels,
            pred=logits[:, -1].argmax(axis=1),
            order_in_class=order,
            head=head,
            class_names=[f"c{k}" for k in range(n_classes)],
            attrs={"dataset": "synthetic", "model": "none", "T": depths - 1, "n": 8}
            | {"model_checksum": "-", "data_checksum": "-"},
        )
    return path


def run_reading(trajectories: Path, folder: Path, reading: Reading, shards: int = 2) -> dict:
    """Every analysis stage of one reading, as the workflow chains them; returns constants.json."""
    return run_stages(trajectories, folder, Run("synthetic", "none", reading=reading), shards, chunk=3)


def run_stages(trajectories: Path, folder: Path, run: Run, shards: int, chunk: int) -> dict:
    """The pairwise, shadowing, Lipschitz and constants stages of ``run`` with ``shards`` shards."""
    folder.mkdir(parents=True, exist_ok=True)
    parts = [folder / f"pairs_{k}.h5" for k in range(1, shards + 1)]
    for k, part in enumerate(parts, 1):
        stages.pairwise_shard(trajectories, part, f"{k}-of-{shards}", run=run, chunk=chunk, device="cpu")
    stages.gather_pairwise(parts, folder / "pairs.h5", run=run)
    orbit_parts = [folder / f"shadowing_{k}.h5" for k in range(1, shards + 1)]
    for k, part in enumerate(orbit_parts, 1):
        stages.shadowing_shard(
            trajectories, folder / "pairs.h5", part, f"{k}-of-{shards}", run=run, chunk=chunk
        )
    stages.gather_shadowing(
        orbit_parts[::-1],
        folder / "shadowing.h5",
        folder / "c.csv",
        folder / "c.png",
        run=run,
        quantiles=ANALYSIS["curve_quantiles"],
    )
    if not (folder.parent / "lipschitz.json").exists():
        stages.lipschitz(trajectories, folder.parent / "lipschitz.json", **LIPSCHITZ, device="cpu")
    return stages.constants(
        folder / "constants.json",
        trajectories_path=trajectories,
        pairs_path=folder / "pairs.h5",
        shadowing_path=folder / "shadowing.h5",
        lipschitz_path=folder.parent / "lipschitz.json",
        run=run,
    )


CASES = ["random", "near_duplicates", "ties", "single_class", "two_images"]


def logits_case(name: str) -> tuple[np.ndarray, np.ndarray, int]:
    rng = np.random.default_rng(sorted(CASES).index(name))
    if name == "random":
        return rng.normal(scale=3.0, size=(14, 5, 4)), np.repeat(np.arange(4), 4)[:14], 4
    if name == "near_duplicates":
        z = rng.normal(scale=3.0, size=(12, 4, 3))
        z[4] = z[2] + 1e-7 * rng.normal(size=z[2].shape)  # different classes, distance ~1e-8
        z[9] = z[7] + 1e-7
        return z, np.arange(12) % 3, 3
    if name == "ties":
        z = rng.integers(-2, 3, size=(10, 4, 3)).astype(np.float64)
        z[6] = z[1]  # exact duplicates: every distance tie and ε = 0 orbits
        z[8] = z[3]
        return z, np.arange(10) % 2, 3
    if name == "single_class":
        return rng.normal(size=(8, 4, 3)), np.zeros(8, dtype=np.int64), 3
    if name == "two_images":
        return rng.normal(size=(2, 2, 2)), np.array([0, 1]), 2
    raise KeyError(name)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("reading", READINGS, ids=lambda r: r.name)
def test_reading_matches_the_brute_force(case, reading, tmp_path):
    logits, labels, n_classes = logits_case(case)
    if reading.orbits == "distinct" and logits.shape[0] < logits.shape[1] - reading.first_depth:
        pytest.skip("too few images for distinct orbits (tested below)")
    if logits.shape[1] - reading.first_depth < 2:
        pytest.skip("a pseudo-orbit needs two depths")
    path = write_trajectories(tmp_path / "trajectories.h5", logits, labels, n_classes)
    traj = Trajectories.load(path)
    got = run_reading(path, tmp_path / reading.name, reading)
    want = brute_force(traj.logits, traj.probs, traj.labels, traj.pred, reading)

    e = got["g_expansive"]
    if want["e"] is None:
        assert e["value"] is None and "no different-class pair" in e["undefined_reason"]
    else:
        value, i, j, depth = want["e"]
        assert e["value"] == value  # exact: the same float64 arithmetic
        assert e["pair"] == [i, j]
        assert e["t_star"] == depth

    paper = got["g_shadowing"]["paper"]
    if want["best"] is None:
        assert paper["value"] is None
    else:
        k = want["best"]
        assert paper["value"] == want["best_value"]
        assert (paper["epsilon"], paper["delta"]) == (want["eps"][k], want["delta"][k])
        assert paper["orbit"] == want["orbits"][k]
        assert paper["shadow_image"] == want["shadow"][k]
        assert paper["shadow_is_start"] == (want["shadow"][k] == k)
    independent = got["g_shadowing"]["independent"]
    assert independent["value"] == want["independent"]
    assert independent["epsilon_orbit"] == want["eps_orbit"]
    assert independent["delta_orbit"] == want["delta_orbit"]
    assert independent["delta"] == want["delta"][want["delta_orbit"]]
    headline = "paper" if reading.pairing == "best_tracing" else "independent"
    assert got["g_shadowing"]["pairing"] == reading.pairing
    assert got["reading"] == {"name": reading.name, **reading.settings()}
    lip_g = got["lip"]["fc"] / 2 / reading.temperature_shadowing
    assert got["lip"]["g"] == pytest.approx(lip_g, rel=1e-12)
    sh = got["g_shadowing"][headline]["value"]
    if sh is not None:
        assert got["t_g_lower"]["independent" if headline == "independent" else "paper"] == pytest.approx(
            sh / got["lip"]["fc"], rel=1e-15
        )


@pytest.mark.parametrize(
    "reading", [AUTHORS, Reading("mean", over_depths="mean", orbits="distinct")], ids=lambda r: r.name
)
def test_shard_count_does_not_change_a_reading(reading, tmp_path):
    logits, labels, n_classes = logits_case("random")
    path = write_trajectories(tmp_path / "trajectories.h5", logits, labels, n_classes)
    one = run_reading(path, tmp_path / "one", reading, shards=1)
    five = run_reading(path, tmp_path / "five", reading, shards=5)
    one.pop("versions"), five.pop("versions")
    assert one == five


def test_definition_reading_is_the_main_analysis(tmp_path):
    """The reading 'definition' gives exactly what the stages give for a run named without a reading
    (the trained network's own run, in its training folder), at the config's default chunk and one shard."""
    logits, labels, n_classes = logits_case("near_duplicates")
    path = write_trajectories(tmp_path / "trajectories.h5", logits, labels, n_classes)
    explicit = run_reading(path, tmp_path / "explicit", Reading())
    run = Run("synthetic", "none")
    assert run.is_trained_run and run.reading == Reading(labels=ANALYSIS["labels"])
    implicit = run_stages(path, tmp_path / "implicit", run, shards=1, chunk=ANALYSIS["chunk"])
    explicit.pop("versions"), implicit.pop("versions")
    assert explicit == implicit


def test_distinct_orbits_that_run_out_of_images_fail_clearly(tmp_path):
    z = np.random.default_rng(1).normal(size=(3, 5, 2))
    path = write_trajectories(tmp_path / "trajectories.h5", z, np.array([0, 1, 0]), 2)
    reading = Reading("distinct", orbits="distinct")
    with pytest.raises(InputError, match="run out of images"):
        stages.shadowing_shard(
            path,
            tmp_path / "unused.h5",
            tmp_path / "s.h5",
            "1-of-1",
            run=Run("d", "m", reading=reading),
            chunk=3,
        )
    assert not (tmp_path / "s.h5").exists()


def test_revisiting_scan_equals_the_nearest_neighbour_route(tmp_path):
    """Both routes to the revisiting orbits agree (the scan serves a separate shadowing temperature)."""
    from resdyn import distances, shadowing
    from resdyn.distances import pairwise_bruteforce

    logits, labels, n_classes = logits_case("ties")
    probs = softmax(logits, 1.0)
    tables = pairwise_bruteforce(probs, labels, n_classes)
    want_orbits, want_hops = shadowing.greedy_pseudo_orbits(tables.nn_index, tables.nn_distance)
    orbits, hops = distances.scan_orbits(probs, 0, len(probs), distinct=False)
    np.testing.assert_array_equal(orbits, want_orbits)
    np.testing.assert_array_equal(hops, want_hops)


def test_temperature_one_uses_the_stored_probabilities_and_others_the_logits():
    logits = np.random.default_rng(2).normal(scale=5.0, size=(4, 3, 5))
    probs = softmax(logits, 1.0)
    np.testing.assert_array_equal(view_probs(logits, probs, 1.0, 1), probs[:, 1:])
    hot = view_probs(logits, probs, 1000.0, 0)
    np.testing.assert_allclose(hot, softmax(logits, 1000.0), rtol=1e-15, atol=0)
    assert np.abs(hot - 0.2).max() < 0.05  # τ = 1000 flattens the distribution


def test_float32_logits_are_refused_for_a_temperature(tmp_path):
    logits, labels, n_classes = logits_case("random")
    path = write_trajectories(tmp_path / "trajectories.h5", logits, labels, n_classes)
    with h5py.File(path, "a") as handle:
        del handle["logits"]
        handle["logits"] = logits.astype(np.float32)
    stages.pairwise_shard(path, tmp_path / "ok.h5", "1-of-1", run=Run("d", "m"), chunk=512, device="cpu")
    # τ = 1 reads /probs: fine
    with pytest.raises(InputError, match="float32.*rerun its trajectories"):
        stages.pairwise_shard(
            path, tmp_path / "out.h5", "1-of-1", run=Run("d", "m", reading=AUTHORS), chunk=512, device="cpu"
        )
    assert not (tmp_path / "out.h5").exists()


# ------------------------------------------------------------------------------------------ the config


def test_reading_settings_are_canonical():
    readings = {
        "a": {"temperature": 1000},
        "b": {"temperature": {"expansive": "1e3", "shadowing": 1000.0}},
        "c": None,
    }
    assert reading_settings(readings, "a") == reading_settings(readings, "b")
    assert repr(reading_settings(readings, "a")) == repr(reading_settings(readings, "b"))
    assert reading_settings(readings, "c") == Reading().settings()
    assert reading_settings(readings, "c", "predicted")["labels"] == "predicted"
    assert reading_settings({}, DEFINITION) == Reading().settings()


@pytest.mark.parametrize(
    "readings, name, message",
    [
        ({"definition": {"over_depths": "min"}}, "definition", "choices are fixed"),
        ({}, "nope", "no reading 'nope'"),
        ({"x": {"temperature": 0}}, "x", "readings.x.*temperature"),
        ({"x": {"temperature": {"expansive": 2, "hot": 3}}}, "x", "unknown key.*hot"),
        ({"x": {"orbits": "sometimes"}}, "x", "orbits = 'sometimes'"),
    ],
)
def test_bad_readings_are_named(readings, name, message):
    with pytest.raises(InputError, match=message):
        reading_settings(readings, name)


def test_readings_table_puts_the_published_row_beside_the_runs(tmp_path):
    from resdyn import tables

    logits, labels, n_classes = logits_case("random")
    path = write_trajectories(tmp_path / "trajectories.h5", logits, labels, n_classes)
    runs = {
        reading.name: run_reading(path, tmp_path / reading.name, reading) for reading in (Reading(), AUTHORS)
    }
    found = {
        (dataset, "resnet50", name): data for dataset in ("mnist", "digits") for name, data in runs.items()
    }
    paper_rows = {("mnist", "resnet50"): ("MNIST", "ResNet-50"), ("digits", "resnet50"): None}
    table = tables.readings_table(found, paper_rows=paper_rows)
    assert table["Reading"].tolist() == ["definition", "authors", "published", "definition", "authors"]
    published = table.iloc[2]
    assert (published["Dataset"], published["g-expansive"], published["Sh"]) == ("mnist", 8.75e-6, 0.0031)
    authors = table.iloc[1]
    ind = found[("mnist", "resnet50", "authors")]["g_shadowing"]["independent"]
    assert (authors["Sh"], authors["ε"], authors["δ"]) == (ind["value"], ind["epsilon"], ind["delta"])
    assert authors["Choices"] == "τ 1000/1, blocks, min, distinct, independent, true labels"
    assert table.iloc[0]["Sh"] == found[("mnist", "resnet50", "definition")]["g_shadowing"]["paper"]["value"]
    stems = tables.write_table(table, tmp_path / "readings")
    assert {p.suffix for p in stems} == {".csv", ".md", ".tex"}


def test_readings_table_with_replicates_gives_each_runs_replicate(tmp_path):
    """Keys (dataset, model, reading, replicate) add a "Replicate" column; rows keep the mapping's order and
    the published row follows the last run of its (dataset, model), the row its paper_rows entry names."""
    from test_tables import sample_size_summary

    from resdyn import tables
    from resdyn.io import write_json
    from resdyn.paper_reference import PAPER_TABLE2

    logits, labels, n_classes = logits_case("random")
    path = write_trajectories(tmp_path / "trajectories.h5", logits, labels, n_classes)
    readings = (Reading(), AUTHORS)
    runs = {reading.name: run_reading(path, tmp_path / reading.name, reading) for reading in readings}
    found = {("digits", "tiny", name, k): data for k in (1, 2) for name, data in runs.items()}
    paper_rows = {("digits", "tiny"): ("MNIST", "ResNet-18")}
    table = tables.readings_table(found, paper_rows=paper_rows)
    assert list(table.columns[:5]) == ["Dataset", "Model", "Reading", "Replicate", "Choices"]
    assert table["Reading"].tolist() == ["definition", "authors", "definition", "authors", "published"]
    assert table["Replicate"].tolist() == [1, 1, 2, 2, None]
    published = table.iloc[4]
    paper = PAPER_TABLE2[("MNIST", "ResNet-18")]
    assert (published["Dataset"], published["g-expansive"], published["Sh"]) == (
        "digits",
        paper["g_expansive"],
        paper["g_shadowing"],
    )
    authors = runs["authors"]["g_shadowing"]["independent"]
    assert table.iloc[3]["Sh"] == authors["value"] and table.iloc[3]["Choices"] == table.iloc[1]["Choices"]
    single = tables.readings_table({key[:3]: data for key, data in found.items() if key[3] == 1})
    assert "Replicate" not in single.columns and single["Reading"].tolist() == ["definition", "authors"]
    assert single.drop(columns="Choices").equals(
        table.iloc[:2].drop(columns=["Replicate", "Choices"]).reset_index(drop=True)
    )

    # The stage layer keys the rows by the runs: a replicate >= 2 among them adds the column.
    summary = tmp_path / "sample_size.json"
    write_json(summary, sample_size_summary(len(labels), reference=10))
    stage_runs = [Run("digits", "tiny", k, reading) for k in (1, 2) for reading in readings]
    constants_paths = [tmp_path / reading.name / "constants.json" for _ in (1, 2) for reading in readings]
    stages.readings_table(
        stage_runs,
        constants_paths,
        [summary] * 4,
        tmp_path / "readings",
        paper_rows=[("MNIST", "ResNet-18")] * 4,
    )
    written = (tmp_path / "readings.csv").read_text().splitlines()
    assert written[0].startswith("Dataset,Model,Reading,Replicate,Choices,")
    assert [line.split(",")[2:4] for line in written[1:]] == [
        ["definition", "1"],
        ["authors", "1"],
        ["definition", "2"],
        ["authors", "2"],
        ["published", "n/a"],
    ]
    stages.readings_table(
        stage_runs[:2], constants_paths[:2], [summary] * 2, tmp_path / "one", paper_rows=None
    )
    assert (tmp_path / "one.csv").read_text().startswith("Dataset,Model,Reading,Choices,")
    with pytest.raises(InputError, match="2 runs, 2 constants.json and 1 sample_size.json"):
        stages.readings_table(stage_runs[:2], constants_paths[:2], [summary], tmp_path / "x", paper_rows=None)
