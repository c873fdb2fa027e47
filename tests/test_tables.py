"""Tables 1–3 and the best-orbit table, built from stage outputs that these tests write in exactly the
formats of docs/ARCHITECTURE.md (real JSON/HDF5 files), with the statistics computed here by a plain
float64 brute force."""

from __future__ import annotations

import json
import math
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from resdyn import stages
from resdyn.artifacts import Constants, Metrics, Pairs, SampleSizeSummary, Shadowing, Trajectories
from resdyn.io import InputError, write_json
from resdyn.paper_reference import PAPER_TABLE1, PAPER_TABLE2, paper_key
from resdyn.runs import Run
from resdyn.tables import (
    Band,
    MeanSd,
    best_orbit,
    best_orbit_table,
    closest_pairs,
    format_value,
    smallest_class_pairs,
    table1,
    table2,
    table3,
    write_table,
)

MNIST_RESNET18 = {("mnist", "resnet18"): ("MNIST", "ResNet-18")}
"""paper_rows: the run mnist/resnet18 stands for the paper's MNIST / ResNet-18 row."""

CIFAR_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


# ----------------------------------------------------------------------------------------------------
# Synthetic stage outputs (shared with test_figures.py)


def synthetic_probs(n: int, T: int, C: int, seed: int, near: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """Probability trajectories (N, T+1, C) that sharpen with depth, labels (N,), and cross-class
    near-duplicates at several scales so E spans ~1e-6..1e-1 as in the paper's figures."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % C
    rng.shuffle(labels)
    logits = rng.normal(0, 1.0, (n, 1, C)) + rng.normal(0, 0.3, (n, T + 1, C))
    logits += np.linspace(0.5, 6, T + 1)[None, :, None] * np.eye(C)[labels][:, None, :]
    probs = np.exp(logits - logits.max(axis=2, keepdims=True))
    probs /= probs.sum(axis=2, keepdims=True)
    # Copy some images onto images of other classes with small perturbations of decreasing size.
    scales = [near * 10**k for k in range(6)]
    for k, scale in enumerate(scales):
        i = k
        j = int(np.flatnonzero(labels != labels[i])[k])
        noisy = probs[i] + rng.normal(0, scale, probs[i].shape)
        noisy = np.clip(noisy, 1e-12, None)
        probs[j] = noisy / noisy.sum(axis=1, keepdims=True)
    return probs, labels


def brute_force_pairs(probs: np.ndarray, labels: np.ndarray, C: int) -> dict[str, np.ndarray]:
    """E, Ē with pairs and t* by the plain definition (method §3.1), ties to the smaller (i, j)."""
    n = probs.shape[0]
    E = np.full((C, C), np.nan)
    E_pair = np.full((C, C, 2), -1, np.int64)
    E_t = np.full((C, C), -1, np.int64)
    E_mean = np.full((C, C), np.nan)
    E_mean_pair = np.full((C, C, 2), -1, np.int64)
    for i in range(n):
        for j in range(i + 1, n):
            a, b = labels[i], labels[j]
            if a == b:
                continue
            d = np.linalg.norm(probs[i] - probs[j], axis=1)
            for M, P, value in ((E, E_pair, d.max()), (E_mean, E_mean_pair, d.mean())):
                if not value >= M[a, b]:  # NaN or larger
                    M[a, b] = M[b, a] = value
                    P[a, b] = P[b, a] = (i, j)
                    if M is E:
                        E_t[a, b] = E_t[b, a] = int(d.argmax())
    return {"E": E, "E_pair": E_pair, "E_t": E_t, "E_mean": E_mean, "E_mean_pair": E_mean_pair}


def order_in_class(labels: np.ndarray) -> np.ndarray:
    order = np.zeros_like(labels)
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        order[rows] = np.arange(1, rows.size + 1)
    return order


def write_trajectories(
    path: Path, probs: np.ndarray, labels: np.ndarray, class_names: list[str], index: np.ndarray | None = None
) -> None:
    n, depths, C = probs.shape
    with h5py.File(path, "w") as f:
        f["logits"] = np.log(probs).astype(np.float32)
        f["probs"] = probs
        f["labels"] = labels.astype(np.int64)
        f["pred"] = probs[:, -1].argmax(axis=1).astype(np.int64)
        f["index"] = (np.arange(n) if index is None else index).astype(np.int64)
        f["order_in_class"] = order_in_class(labels).astype(np.int64)
        f["head/weight"] = np.zeros((C, 16))
        f["head/bias"] = np.zeros(C)
        f.attrs.update(
            dataset="synthetic",
            model="tiny",
            T=depths - 1,
            n=16,
            class_names=class_names,
            model_checksum="0" * 64,
            data_checksum="0" * 64,
        )


def write_pairs(path: Path, stats: dict[str, np.ndarray], T: int, n: int, labels_kind: str = "true") -> None:
    C = stats["E"].shape[0]
    with h5py.File(path, "w") as f:
        f["E/value"] = stats["E"]
        f["E/pair"] = stats["E_pair"]
        f["E/t_star"] = stats["E_t"]
        f["E_mean/value"] = stats["E_mean"]
        f["E_mean/pair"] = stats["E_mean_pair"]
        f["depth_min/value"] = np.zeros(T + 1)
        f["depth_min/pair"] = np.zeros((T + 1, 2), np.int64)
        f["nearest/index"] = np.zeros((T + 1, n), np.int64)
        f["nearest/distance"] = np.zeros((T + 1, n))
        g = f.create_group("expansive")
        finite = np.where(np.isnan(stats["E"]), np.inf, stats["E"])
        a, b = np.unravel_index(np.argmin(finite), finite.shape)
        g.attrs.update(
            value=stats["E"][a, b],
            i=stats["E_pair"][a, b, 0],
            j=stats["E_pair"][a, b, 1],
            t_star=stats["E_t"][a, b],
        )
        f.attrs.update(labels=labels_kind, n_shards=1, C=C, N=n, T=T)


def brute_force_shadowing(probs: np.ndarray) -> dict[str, np.ndarray]:
    """Greedy pseudo-orbits, hops, δ, ε and b* by the plain definition of method §3.2."""
    n, depths, _ = probs.shape
    T = depths - 1
    orbits = np.zeros((n, depths), np.int64)
    hops = np.zeros((n, T))
    for start in range(n):
        orbits[start, 0] = current = start
        for t in range(T):
            d = np.linalg.norm(probs[:, t + 1] - probs[current, t + 1], axis=1)
            d[current] = np.inf
            nxt = int(np.argmin(d))
            hops[start, t] = d[nxt]
            orbits[start, t + 1] = current = nxt
    eps = np.zeros(n)
    shadow = np.zeros(n, np.int64)
    for start in range(n):
        q = probs[orbits[start], np.arange(depths)]  # (T+1, C)
        err = np.linalg.norm(probs - q[None], axis=2).max(axis=1)
        shadow[start] = int(np.argmin(err))
        eps[start] = err[shadow[start]]
    return {"orbits": orbits, "hops": hops, "delta": hops.max(axis=1), "epsilon": eps, "shadow_image": shadow}


def write_shadowing(path: Path, sh: dict[str, np.ndarray]) -> None:
    with h5py.File(path, "w") as f:
        for key, value in sh.items():
            f[key] = value


def write_data(path: Path, n: int, labels: np.ndarray, class_names: list[str], seed: int = 0) -> None:
    """A data file with class-coloured, shaped 32×32 images (so a reader can tell them apart)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:32, 0:32]
    images = np.zeros((n, 3, 32, 32), np.uint8)
    for k in range(n):
        c = labels[k]
        hue = np.array([(c * 37) % 256, (c * 91 + 80) % 256, (c * 53 + 160) % 256], float)
        radius = 6 + (k % 7)
        blob = (yy - 16 - (k % 5)) ** 2 + (xx - 16 + (k % 3)) ** 2 < radius**2
        base = rng.integers(0, 60, (3, 32, 32))
        images[k] = np.clip(base + blob[None] * hue[:, None, None], 0, 255).astype(np.uint8)
    with h5py.File(path, "w") as f:
        f["train/images"] = images[:2]
        f["train/labels"] = labels[:2].astype(np.int64)
        f["test/images"] = images
        f["test/labels"] = labels.astype(np.int64)
        f.attrs.update(class_names=class_names, source="synthetic", checksum="0" * 64, dataset="synthetic")


def synthetic_run(
    root: Path, n: int = 60, T: int = 8, C: int = 10, seed: int = 0, reverse_index: bool = False
) -> dict[str, Path]:
    """Every stage output one (dataset, model) needs for the tables and figures, consistent with each other
    and written as the real stages write them: row indices in the HDF5 files, test indices in
    constants.json. ``reverse_index`` stores the test images in reverse order (row r is test image N−1−r),
    so a table that confused rows with test indices would show the wrong images."""
    root.mkdir(parents=True, exist_ok=True)
    names = CIFAR_NAMES[:C] if C <= 10 else [f"class {c}" for c in range(C)]
    probs, labels = synthetic_probs(n, T, C, seed)
    stats = brute_force_pairs(probs, labels, C)
    sh = brute_force_shadowing(probs)
    paths = {
        k: root / f
        for k, f in [
            ("data", "data.h5"),
            ("trajectories", "trajectories.h5"),
            ("pairs", "pairs.h5"),
            ("shadowing", "shadowing.h5"),
            ("constants", "constants.json"),
            ("metrics", "metrics.json"),
        ]
    }
    index = np.arange(n)[::-1].copy() if reverse_index else np.arange(n)
    test_labels = np.empty_like(labels)
    test_labels[index] = labels
    write_data(paths["data"], n, test_labels, names, seed)
    write_trajectories(paths["trajectories"], probs, labels, names, index=index)
    write_pairs(paths["pairs"], stats, T, n)
    write_shadowing(paths["shadowing"], sh)
    # Best tracing: smallest ε, ties → larger δ (method §3.2).
    best = int(np.lexsort((-sh["delta"], sh["epsilon"]))[0])
    finite = np.where(np.isnan(stats["E"]), np.inf, stats["E"])
    a, b = np.unravel_index(np.argmin(finite), finite.shape)
    i, j = (int(v) for v in stats["E_pair"][a, b])
    lip_fc = 3.38
    sh_paper = float(sh["delta"][best] / sh["epsilon"][best])
    constants = {
        "g_expansive": {
            "value": float(finite[a, b]),
            "pair": [int(index[i]), int(index[j])],
            "t_star": int(stats["E_t"][a, b]),
            "pair_order": [int(order_in_class(labels)[i]), int(order_in_class(labels)[j])],
            "classes": [names[labels[i]], names[labels[j]]],
        },
        "g_shadowing": {
            "paper": {
                "value": sh_paper,
                "epsilon": float(sh["epsilon"][best]),
                "delta": float(sh["delta"][best]),
                "orbit_start": int(index[best]),
                "shadow_image": int(index[sh["shadow_image"][best]]),
            },
            "curve": {"value": None, "quantiles": [0.05, 0.95]},
        },
        "lip": {"fc": lip_fc, "g": lip_fc / 2},
        "t_g_lower": {
            "paper": sh_paper / lip_fc,
            "curve": None,
            "paper_lip_g": sh_paper / (lip_fc / 2),
            "curve_lip_g": None,
        },
    }
    write_json(paths["constants"], constants)
    write_json(
        paths["metrics"],
        {
            "precision": 0.98931,
            "recall": 0.9891,
            "f1": 0.98905,
            "accuracy": 0.9891,
            "loss": 0.036312,
            "n_test": n,
        },
    )
    paths.update(probs=probs, labels=labels, stats=stats, sh=sh, best=best, names=names, index=index)
    return paths


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict:
    return synthetic_run(tmp_path_factory.mktemp("mnist") / "results" / "mnist" / "resnet18")


# ----------------------------------------------------------------------------------------------------
# Number formatting and writing


@pytest.mark.parametrize(
    "value, text, latex",
    [
        (None, "n/a", "n/a"),
        (float("nan"), "n/a", "n/a"),
        (4.14e-5, "4.14e-05", r"$4.14\times10^{-5}$"),
        (8.75e-06, "8.75e-06", r"$8.75\times10^{-6}$"),
        (2.3583, "2.3583", "2.3583"),
        (0.0031, "0.0031", "0.0031"),
        (0.987, "0.9870", "0.9870"),
        (0.0, "0", "0"),
        (3, "3", "3"),
        (np.int64(16), "16", "16"),
        (123456.0, "1.23e+05", r"$1.23\times10^{5}$"),
        (float("inf"), "inf", r"$\infty$"),
        ("cat_dog & 5%", "cat_dog & 5%", r"cat\_dog \& 5\%"),
    ],
)
def test_format_value_as_the_paper(value, text, latex):
    assert format_value(value) == text
    assert format_value(value, latex=True) == latex


def test_write_table_three_formats_with_na(tmp_path):
    df = pd.DataFrame(
        [["mnist", 4.14e-5, None, 3], ["cifar10", 0.0081, 2.3583, None]],
        columns=["Dataset", "g-expansive", "ε", "t*"],
        dtype=object,
    )
    paths = write_table(df, tmp_path / "sub" / "table2")
    assert [p.name for p in paths] == ["table2.csv", "table2.md", "table2.tex"]
    csv_text, md, tex = (p.read_text() for p in paths)
    back = pd.read_csv(paths[0])  # "n/a" reads back as NaN
    assert back["g-expansive"].tolist() == [4.14e-5, 0.0081]
    assert math.isnan(back["ε"][0]) and back["ε"][1] == 2.3583
    assert "nan" not in csv_text.lower().replace("n/a", "") and "n/a" in csv_text
    assert "4.14e-05" in md and "2.3583" in md and "n/a" in md and "nan" not in md.lower().replace("n/a", "")
    assert "| 3 " in md or "|   3 |" in md or " 3 |" in md
    assert r"$4.14\times10^{-5}$" in tex and r"$\varepsilon$" in tex and r"$t^*$" in tex
    assert r"\begin{tabular}" in tex and "n/a" in tex and "nan" not in tex.replace("n/a", "")
    assert not list((tmp_path / "sub").glob(".*tmp*"))  # atomic: no temporaries left


# ----------------------------------------------------------------------------------------------------
# Paper reference


def test_paper_reference_keys_and_consistency():
    assert paper_key("mnist", "resnet18") == ("MNIST", "ResNet-18")
    assert paper_key("mnist5k", "resnet50") == ("MNIST", "ResNet-50")  # configs/mnist5k.yaml
    assert paper_key("CIFAR-10", "ResNet-50") == ("CIFAR-10", "ResNet-50")
    assert paper_key("cifar10", "resnet50") == ("CIFAR-10", "ResNet-50")
    assert paper_key("digits", "resnet18") is None
    # The entries' paper_row (config) wins over the names, dataset and model each on its own.
    assert paper_key("fashionish", "tiny", "mnist", "resnet18") == ("MNIST", "ResNet-18")
    assert paper_key("mnist", "resnet18", "cifar10", "resnet50") == ("CIFAR-10", "ResNet-50")
    assert paper_key("mnist", "tiny", None, "resnet50") == ("MNIST", "ResNet-50")
    assert paper_key("digits", "tiny", None, "resnet18") is None  # the dataset stands for no row
    assert paper_key("digits", "resnet18", "cifar10") == ("CIFAR-10", "ResNet-18")
    assert set(PAPER_TABLE1) == set(PAPER_TABLE2) and len(PAPER_TABLE1) == 4
    for row in PAPER_TABLE2.values():
        # The paper's own arithmetic: Sh = δ/ε and T_g = Sh/Lip, to the printed precision.
        assert row["g_shadowing"] == pytest.approx(row["delta"] / row["epsilon"], abs=0.02, rel=0.15)
        assert row["t_g_lower"] == pytest.approx(row["g_shadowing"] / row["lip_fc"], abs=6e-4)


# ----------------------------------------------------------------------------------------------------
# Table 1


def test_table1_values_and_paper_columns_only_when_asked(run, tmp_path):
    other = tmp_path / "results" / "digits" / "resnet50" / "metrics.json"
    write_json(
        other, {"precision": 0.5, "recall": 0.25, "f1": 0.3, "accuracy": 0.4, "loss": 1.5, "n_test": 9}
    )
    sources = {
        ("mnist", "resnet18"): Metrics.load(run["metrics"]),
        ("digits", "resnet50"): Metrics.load(other),
    }
    plain = table1(sources)
    assert list(plain.columns) == [
        "Dataset",
        "Model",
        "Precision",
        "Recall",
        "F1 (macro)",
        "Accuracy",
        "Test loss",
    ]
    assert plain.iloc[0].tolist() == ["mnist", "resnet18", 0.98931, 0.9891, 0.98905, 0.9891, 0.036312]
    assert plain.iloc[1].tolist() == ["digits", "resnet50", 0.5, 0.25, 0.3, 0.4, 1.5]
    assert not any("[paper]" in c for c in plain.columns)
    assert list(table1(sources, paper_rows=None).columns) == list(plain.columns)
    with_paper = table1(sources, paper_rows=MNIST_RESNET18 | {("digits", "resnet50"): None})
    assert list(with_paper.columns) == [
        "Dataset",
        "Model",
        "Precision",
        "Precision [paper]",
        "Recall",
        "Recall [paper]",
        "F1 (macro)",
        "F1 (macro) [paper]",
        "Accuracy",
        "Test loss",
        "Test loss [paper]",
    ]
    assert (
        with_paper.loc[0, "Precision [paper]"] == 0.9893 and with_paper.loc[0, "Test loss [paper]"] == 0.0363
    )
    assert with_paper.loc[1, "Precision [paper]"] is None  # the paper has no digits run
    paths = write_table(with_paper, tmp_path / "table1")
    md = paths[1].read_text()
    assert "0.9893" in md and "Precision [paper]" in md and "n/a" in md and "nan" not in md.replace("n/a", "")
    # A run stands for the paper's row its paper_rows entry names, whatever its own names.
    renamed = table1(
        {("digits", "tiny"): sources[("mnist", "resnet18")]},
        paper_rows={("digits", "tiny"): ("CIFAR-10", "ResNet-50")},
    )
    assert renamed.loc[0, "Precision [paper]"] == PAPER_TABLE1[("CIFAR-10", "ResNet-50")]["precision"]


def test_table1_stage_reads_the_runs_files(run, tmp_path):
    """The stage layer: one metrics.json path per run, its (dataset, model) from the run (not from the path),
    replicates grouped by run, paper rows one per run."""
    other = tmp_path / "somewhere" / "metrics.json"
    write_json(
        other, {"precision": 0.5, "recall": 0.25, "f1": 0.3, "accuracy": 0.4, "loss": 1.5, "n_test": 9}
    )
    runs = [Run("mnist", "resnet18"), Run("digits", "resnet50"), Run("digits", "resnet50", replicate=2)]
    paths = [run["metrics"], other, run["metrics"]]
    stages.table1(runs, paths, tmp_path / "stage" / "table1", paper_rows=[("MNIST", "ResNet-18"), None, None])
    want = table1(
        {
            ("mnist", "resnet18"): Metrics.load(run["metrics"]),
            ("digits", "resnet50"): [Metrics.load(other), Metrics.load(run["metrics"])],
        },
        paper_rows=MNIST_RESNET18 | {("digits", "resnet50"): None},
    )
    written = write_table(want, tmp_path / "domain" / "table1")
    stage_files = sorted((tmp_path / "stage").iterdir())
    assert [p.name for p in stage_files] == [p.name for p in written]
    for got, expected in zip(stage_files, written):
        assert got.read_bytes() == expected.read_bytes()
    assert want.loc[1, "Replicates"] == 2 and want.loc[0, "Precision [paper]"] == 0.9893
    stages.table1(runs[:1], paths[:1], tmp_path / "plain", paper_rows=None)
    assert "[paper]" not in (tmp_path / "plain.csv").read_text()
    with pytest.raises(InputError, match="2 runs but 1 metrics.json"):
        stages.table1(runs[:2], paths[:1], tmp_path / "t", paper_rows=None)
    with pytest.raises(InputError, match="2 runs but 1 paper rows"):
        stages.table1(runs[:2], paths[:2], tmp_path / "t", paper_rows=[None])
    with pytest.raises(InputError, match=r"digits/resnet50: replicates \[2\], expected 1..1"):
        stages.table1(runs[2:], paths[2:], tmp_path / "t", paper_rows=None)


def test_table1_accepts_loaded_dicts_and_names_missing_key(run, tmp_path):
    loaded = json.loads(run["metrics"].read_text())
    assert table1({("mnist", "resnet18"): loaded}).loc[0, "Recall"] == 0.9891
    broken = tmp_path / "metrics.json"
    write_json(broken, {"precision": 1.0, "recall": 1.0, "accuracy": 1.0, "loss": 0.0})
    with pytest.raises(InputError, match=r"metrics\.json.*'f1'"):
        table1({("mnist", "resnet18"): Metrics.load(broken)})
    with pytest.raises(InputError, match=r"metrics of mnist/resnet18.*'f1'"):
        table1({("mnist", "resnet18"): json.loads(broken.read_text())})
    write_json(broken, {"precision": "high", "recall": 1.0, "f1": 1.0, "accuracy": 1.0, "loss": 0.0})
    with pytest.raises(InputError, match=r"metrics\.json.*'precision'.*'high'"):
        table1({("mnist", "resnet18"): Metrics.load(broken)})
    broken.write_text("{not json")
    with pytest.raises(InputError, match="metrics.json"):
        stages.table1([Run("mnist", "resnet18")], [broken], tmp_path / "t1", paper_rows=None)


# ----------------------------------------------------------------------------------------------------
# Table 2


def test_table2_values_nulls_and_paper_columns(run, tmp_path):
    constants = json.loads(run["constants"].read_text())
    df = table2({("mnist", "resnet18"): Constants.load(run["constants"])})
    row = df.iloc[0]
    assert row["g-expansive"] == constants["g_expansive"]["value"]
    i, j = constants["g_expansive"]["pair"]
    c_i, c_j = constants["g_expansive"]["classes"]
    assert row["pair (i, j)"] == f"{i} ({c_i}), {j} ({c_j})"
    assert row["t*"] == constants["g_expansive"]["t_star"] and isinstance(row["t*"], int)
    assert row["Sh best-tracing"] == constants["g_shadowing"]["paper"]["value"]
    assert row["ε"] == constants["g_shadowing"]["paper"]["epsilon"]
    assert row["δ"] == constants["g_shadowing"]["paper"]["delta"]
    assert row["Sh curve"] is None and row["T_g ≥ Sh_curve/Lip_FC"] is None
    assert row["Lip_FC"] == 3.38 and row["Lip(g) with softmax"] == 1.69
    assert row["T_g ≥ Sh/Lip(g)"] == pytest.approx(2 * row["T_g ≥ Sh/Lip_FC"])
    assert not any("[paper]" in c for c in df.columns)

    paper = table2({("mnist", "resnet18"): Constants.load(run["constants"])}, paper_rows=MNIST_RESNET18)
    assert paper.loc[0, "g-expansive [paper]"] == 4.14e-5 and paper.loc[0, "Lip_FC [paper]"] == 3.38
    assert paper.loc[0, "T_g [paper]"] == 0.6977 and paper.loc[0, "ε [paper]"] == 0.1025
    assert list(paper.columns).index("g-expansive [paper]") == list(paper.columns).index("g-expansive") + 1
    csv_path, md_path, tex_path = write_table(paper, tmp_path / "table2")
    md, tex = md_path.read_text(), tex_path.read_text()
    assert "4.14e-05" in md and "n/a" in md and "nan" not in md.replace("n/a", "")
    assert r"$\mathrm{Lip}_{FC}$" in tex and r"$4.14\times10^{-5}$" in tex
    assert pd.read_csv(csv_path)["Lip_FC [paper]"].tolist() == [3.38]


def test_table2_null_pair_and_missing_key(run, tmp_path):
    constants = json.loads(run["constants"].read_text())
    constants["g_expansive"].update(value=None, pair=None, t_star=None)
    path = tmp_path / "constants.json"
    write_json(path, constants)
    row = table2({("x", "y"): Constants.load(path)}).iloc[0]
    assert row["g-expansive"] is None and row["pair (i, j)"] is None and row["t*"] is None
    md = write_table(table2({("x", "y"): Constants.load(path)}), tmp_path / "t2")[1].read_text()
    assert "nan" not in md.lower().replace("n/a", "")
    del constants["t_g_lower"]["curve_lip_g"]
    write_json(path, constants)
    with pytest.raises(InputError, match=r"constants\.json.*'t_g_lower\.curve_lip_g'"):
        table2({("x", "y"): Constants.load(path)})
    del constants["g_shadowing"]["paper"]
    with pytest.raises(InputError, match=r"constants of x/y.*'g_shadowing\.paper\.value'"):
        table2({("x", "y"): constants})


# ----------------------------------------------------------------------------------------------------
# Reference-size columns and training replicates (method §3.6)


def sample_size_summary(n_images: int, reference: int = 400, median: float | None = 0.2) -> dict:
    """A sample_size.json as resdyn.sample_size.summarize writes it, with e's median ``median`` and the
    Sh estimates' medians 2·median, 3·median at the reference size."""
    entries = {
        name: {"median": None, "low": None, "high": None, "n_defined": 0}
        if median is None
        else {
            "median": factor * median,
            "low": factor * median / 2,
            "high": factor * median * 2,
            "n_defined": 20,
        }
        for name, factor in (("g_expansive", 1), ("sh_paper", 2), ("sh_curve", 3), ("sh_independent", 4))
    }
    if reference > n_images:
        ref = {"n": reference, "available": False, "undefined_reason": f"N = {n_images} < {reference}: …"}
    else:
        ref = {"n": reference, "available": True, "undefined_reason": None, "subsets": 20} | entries
    slope = {"value": -0.5, "intercept": 0.0, "sizes": [50, n_images], "undefined_reason": None}
    return {
        "N": n_images,
        "band": [0.05, 0.95],
        "sizes": [{"n": n_images, "subsets": 1} | entries],
        "slope": dict.fromkeys(entries, slope),
        "reference": ref,
    }


def test_table2_reference_size_columns(run, tmp_path):
    keys = [("mnist", "resnet18"), ("digits", "resnet50"), ("tiny", "resnet18")]
    summaries = {
        keys[0]: sample_size_summary(10000),
        keys[1]: sample_size_summary(300),
        keys[2]: sample_size_summary(500, median=None),
    }
    constants = Constants.load(run["constants"])
    df = table2(dict.fromkeys(keys, constants), sample_size=summaries)
    assert list(df.columns[-6:]) == [
        "g-expansive @400",
        "g-expansive @400 5–95%",
        "Sh best-tracing @400",
        "Sh best-tracing @400 5–95%",
        "Sh curve @400",
        "Sh curve @400 5–95%",
    ]
    assert list(df.columns[:-6]) == list(table2({keys[0]: constants}).columns)
    row = df.iloc[0]
    assert row["g-expansive @400"] == 0.2 and row["Sh curve @400"] == pytest.approx(0.6)
    assert row["g-expansive @400 5–95%"] == Band(0.1, 0.4)
    assert df.loc[1, "g-expansive @400"] == "n/a (N = 300 < 400)" and df.loc[1, "Sh curve @400 5–95%"] is None
    assert df.loc[2, "Sh best-tracing @400"] == "undefined"
    csv_path, md_path, tex_path = write_table(df, tmp_path / "table2")
    md, tex = md_path.read_text(), tex_path.read_text()
    assert "[0.1000, 0.4000]" in md and "n/a (N = 300 < 400)" in md
    assert "[0.1000, 0.4000]" in tex and r"@400 5–95\%" in tex
    assert pd.read_csv(csv_path)["g-expansive @400 5–95%"].tolist()[0] == "[0.1, 0.4]"
    mixed = dict(summaries) | {keys[1]: sample_size_summary(300, reference=200)}
    with pytest.raises(InputError, match="disagree on the reference size"):
        table2(dict.fromkeys(keys, constants), sample_size=mixed)
    with pytest.raises(InputError, match="no sample-size summary for tiny/resnet18"):
        table2(dict.fromkeys(keys, constants), sample_size=dict(list(summaries.items())[:2]))


def test_table2_stage_reads_the_runs_files(run, tmp_path):
    """The stage layer: constants.json and sample_size.json paths one per run, keyed by the runs."""
    summary = tmp_path / "sample_size.json"
    write_json(summary, sample_size_summary(10000))
    runs = [Run("mnist", "resnet18"), Run("mnist", "resnet18", replicate=2)]
    stages.table2(
        runs,
        [run["constants"], run["constants"]],
        [summary, summary],
        tmp_path / "stage" / "table2",
        paper_rows=[("MNIST", "ResNet-18")] * 2,
    )
    constants, loaded = Constants.load(run["constants"]), SampleSizeSummary.load(summary)
    want = table2(
        {("mnist", "resnet18"): [constants, constants]},
        paper_rows=MNIST_RESNET18,
        sample_size={("mnist", "resnet18"): [loaded, loaded]},
    )
    written = write_table(want, tmp_path / "domain" / "table2")
    stage_files = sorted((tmp_path / "stage").iterdir())
    assert [p.name for p in stage_files] == [p.name for p in written]
    for got, expected in zip(stage_files, written):
        assert got.read_bytes() == expected.read_bytes()
    assert want.loc[0, "Replicates"] == 2 and want.loc[0, "g-expansive [paper]"] == 4.14e-5
    with pytest.raises(InputError, match="2 runs but 1 sample_size.json"):
        stages.table2(runs, [run["constants"]] * 2, [summary], tmp_path / "t", paper_rows=None)


def _shifted(data: dict, factor: float) -> dict:
    """A copy of a constants.json or metrics.json with every number scaled (another replicate)."""
    if isinstance(data, dict):
        return {k: _shifted(v, factor) for k, v in data.items()}
    if isinstance(data, float):
        return data * factor
    return data


def test_one_replicate_is_the_single_run_table(run, tmp_path):
    """K = 1 keeps today's tables byte for byte."""
    for build, path in ((table1, Metrics.load(run["metrics"])), (table2, Constants.load(run["constants"]))):
        single = write_table(build({("mnist", "resnet18"): path}), tmp_path / "single")
        listed = write_table(build({("mnist", "resnet18"): [path]}), tmp_path / "listed")
        assert [p.read_bytes() for p in single] == [p.read_bytes() for p in listed]


def test_tables_with_two_replicates_show_mean_and_sd(run, tmp_path):
    metrics = json.loads(run["metrics"].read_text())
    constants = json.loads(run["constants"].read_text())
    other = _shifted(constants, 1.5)
    other["g_expansive"]["pair"] = [7, 9]
    other["g_expansive"]["classes"] = ["cat", "dog"]
    other["g_expansive"]["t_star"] = 5
    other["lip"]["certified"] = False
    key = ("mnist", "resnet18")
    t1 = table1({key: [metrics, _shifted(metrics, 0.5)], ("digits", "resnet50"): metrics})
    assert list(t1.columns[:3]) == ["Dataset", "Model", "Replicates"]
    assert t1.loc[0, "Replicates"] == 2 and t1.loc[1, "Replicates"] == 1
    recall = t1.loc[0, "Recall"]
    values = [0.9891, 0.9891 * 0.5]
    assert recall == MeanSd(np.mean(values), np.std(values, ddof=1), 2, 2, min(values), max(values))
    assert t1.loc[1, "Recall"] == 0.9891  # a run with one replicate keeps its plain value
    md = write_table(t1, tmp_path / "t1")[1].read_text()
    band = f"{np.mean(values):.4f} ± {np.std(values, ddof=1):.4f} ({min(values):.4f}–{max(values):.4f})"
    assert band in md  # the seed band: mean ± sd (min–max)

    t2 = table2(
        {key: [constants, other]},
        paper_rows=MNIST_RESNET18,
        sample_size={key: [sample_size_summary(10000), sample_size_summary(10000, median=0.4)]},
    )
    row = t2.iloc[0]
    e = [constants["g_expansive"]["value"], other["g_expansive"]["value"]]
    assert row["g-expansive"] == MeanSd(np.mean(e), np.std(e, ddof=1), 2, 2, min(e), max(e))
    assert row["Sh curve"] is None  # no replicate defines it
    assert row["g-expansive [paper]"] == 4.14e-5  # the paper's number, not averaged
    i, j = constants["g_expansive"]["pair"]
    c_i, c_j = constants["g_expansive"]["classes"]
    assert row["pair (i, j)"] == f"{i} ({c_i}), {j} ({c_j}); 7 (cat), 9 (dog)"
    assert row["t*"] == f"{constants['g_expansive']['t_star']}; 5"
    assert row["Lip_FC"].endswith("(uncertified)")  # one replicate's certificate failed
    assert row["g-expansive @400"] == MeanSd(np.mean([0.2, 0.4]), np.std([0.2, 0.4], ddof=1), 2, 2, 0.2, 0.4)
    assert row["g-expansive @400 5–95%"] == Band(0.1, 0.8)  # the envelope of both bands
    one_defined = _shifted(constants, 1.0)
    one_defined["g_shadowing"]["curve"]["value"] = 0.25
    t2 = table2({key: [constants, one_defined]})
    assert t2.loc[0, "Sh curve"] == MeanSd(0.25, None, 1, 2, 0.25, 0.25)
    md, tex = (p.read_text() for p in write_table(t2, tmp_path / "t2")[1:])
    assert "0.2500 ± n/a (1 of 2)" in md and r"0.2500 $\pm$ n/a (1 of 2)" in tex


# ----------------------------------------------------------------------------------------------------
# Table 3


def test_smallest_class_pairs_hand_built():
    nan = np.nan
    E = np.array([[nan, 0.5, 0.1, 0.3], [0.5, nan, 0.1, nan], [0.1, 0.1, nan, 2e-7], [0.3, nan, 2e-7, nan]])
    assert smallest_class_pairs(E, 1) == [(2, 3)]
    assert smallest_class_pairs(E, 3) == [(2, 3), (0, 2), (1, 2)]  # exact tie 0.1: smaller (a, b) first
    assert smallest_class_pairs(E, 10) == [(2, 3), (0, 2), (1, 2), (0, 3), (0, 1)]  # NaN skipped
    near = np.array([[nan, 1e-7 + 1e-14], [1e-7 + 1e-14, nan]])
    assert smallest_class_pairs(near, 4) == [(0, 1)]
    assert smallest_class_pairs(np.full((1, 1), nan), 2) == []  # a single class has no pairs
    with pytest.raises(ValueError, match="k must be"):
        smallest_class_pairs(E, 0)
    with pytest.raises(ValueError, match="square"):
        smallest_class_pairs(np.zeros((2, 3)), 1)


def test_smallest_class_pairs_random_against_sort():
    rng = np.random.default_rng(3)
    for _ in range(20):
        C = int(rng.integers(2, 12))
        M = rng.choice([1e-6, 1e-3, 0.1, 0.5], size=(C, C)) * rng.integers(1, 3, size=(C, C))
        E = np.triu(M, 1) + np.triu(M, 1).T
        E[np.eye(C, dtype=bool)] = np.nan
        k = int(rng.integers(1, C * C))
        expected = sorted((E[a, b], a, b) for a in range(C) for b in range(a + 1, C))[:k]
        assert smallest_class_pairs(E, k) == [(a, b) for _, a, b in expected]


def test_table3_from_files_matches_brute_force(run):
    k = 4
    df = table3(
        {("mnist", "resnet18"): (Pairs.load(run["pairs"]), Trajectories.load(run["trajectories"]))}, k
    )
    stats, labels, names = run["stats"], run["labels"], run["names"]
    order = order_in_class(labels)
    C = stats["E"].shape[0]
    expected = sorted(
        (stats["E"][a, b], a, b) for a in range(C) for b in range(a + 1, C) if not np.isnan(stats["E"][a, b])
    )[:k]
    assert len(df) == k and df["Rank"].tolist() == [1, 2, 3, 4]
    for (_, row), (value, a, b) in zip(df.iterrows(), expected):
        i, j = stats["E_pair"][a, b]
        if labels[i] != a:
            i, j = j, i
        assert (row["Class a"], row["Class b"]) == (names[a], names[b])
        assert (row["Test index a"], row["Test index b"]) == (i, j)
        assert (row["Order a"], row["Order b"]) == (order[i], order[j])
        assert row["n-th block (t*)"] == stats["E_t"][a, b]
        assert row["Distance"] == value
        # The distance is what the two trajectories really give (float64 brute force).
        assert value == np.linalg.norm(run["probs"][i] - run["probs"][j], axis=1).max()
    assert df["Distance"].tolist() == sorted(df["Distance"].tolist())
    assert df["Distance"].iloc[0] < 1e-4  # the planted near-duplicates surface first


def test_table3_maps_rows_to_test_indices_and_checks_classes(tmp_path):
    names = ["a", "b", "c"]
    probs = np.full((4, 3, 3), 1 / 3)
    probs[1] += np.array([1e-7, -1e-7, 0.0])  # N small, a near-duplicate at 1e-7
    labels = np.array([0, 1, 2, 0])
    stats = brute_force_pairs(probs, labels, 3)
    write_trajectories(tmp_path / "traj.h5", probs, labels, names, index=np.array([10, 11, 12, 13]))
    write_pairs(tmp_path / "pairs.h5", stats, T=2, n=4)
    pairs = closest_pairs(Pairs.load(tmp_path / "pairs.h5"), Trajectories.load(tmp_path / "traj.h5"), 3)
    assert len(pairs) == 3
    first = pairs[0]  # exact ties 0 between (0, 2)... and the 1e-7 pair: 0 sorts first
    assert first.distance == 0.0 and (first.class_a, first.class_b) == ("a", "c")
    assert (first.index_a, first.index_b) == (10, 12) and (first.order_a, first.order_b) == (1, 1)
    assert pairs[2].distance == pytest.approx(np.sqrt(2) * 1e-7, rel=1e-6)
    # Mismatching files (labels permuted) are refused with both names.
    write_trajectories(tmp_path / "wrong.h5", probs, np.array([2, 0, 1, 1]), names)
    with pytest.raises(InputError, match=r"pairs\.h5.*wrong\.h5"):
        closest_pairs(Pairs.load(tmp_path / "pairs.h5"), Trajectories.load(tmp_path / "wrong.h5"), 3)


def test_table3_two_images_with_predicted_labels(tmp_path):
    """N = 2, one image per class, the pairs stage run on predicted labels (pairs.h5 attr labels)."""
    probs = np.array([[[0.6, 0.4], [0.2, 0.8]], [[0.6, 0.4], [0.2 + 1e-7, 0.8 - 1e-7]]])
    pred = probs[:, -1].argmax(axis=1)  # both predicted class 1: no different-class pair
    true = np.array([1, 0])
    write_trajectories(tmp_path / "traj.h5", probs, true, ["zero", "one"])
    write_pairs(tmp_path / "pairs.h5", brute_force_pairs(probs, pred, 2), T=1, n=2, labels_kind="pred")
    assert closest_pairs(Pairs.load(tmp_path / "pairs.h5"), Trajectories.load(tmp_path / "traj.h5"), 3) == []
    write_pairs(tmp_path / "pairs.h5", brute_force_pairs(probs, true, 2), T=1, n=2, labels_kind="true")
    (pair,) = closest_pairs(Pairs.load(tmp_path / "pairs.h5"), Trajectories.load(tmp_path / "traj.h5"), 3)
    assert (pair.class_a, pair.index_a, pair.class_b, pair.index_b) == ("zero", 1, "one", 0)
    assert pair.distance == pytest.approx(np.sqrt(2) * 1e-7, rel=1e-6) and pair.t_star == 1


def test_table3_missing_key_names_file_and_key(run, tmp_path):
    broken = tmp_path / "pairs.h5"
    with h5py.File(broken, "w") as f:
        f["E/value"] = np.zeros((2, 2))
        f["E/pair"] = np.zeros((2, 2, 2), np.int64)
    with pytest.raises(InputError, match=r"pairs\.h5.*'E/t_star'"):
        stages.table3([Run("x", "y")], [broken], [run["trajectories"]], tmp_path / "table3", k=2)
    assert not list(tmp_path.glob("table3*"))


def test_table3_stage_keys_the_rows_by_run(run, tmp_path):
    """The stage layer names each row by its run, whatever folder its files sit in."""
    stages.table3(
        [Run("d", "x_m"), Run("d_x", "m")],
        [run["pairs"]] * 2,
        [run["trajectories"]] * 2,
        tmp_path / "table3",
        k=2,
    )
    df = pd.read_csv(tmp_path / "table3.csv")
    assert list(zip(df["Dataset"], df["Model"])) == [("d", "x_m")] * 2 + [("d_x", "m")] * 2
    one = table3({("d", "x_m"): (Pairs.load(run["pairs"]), Trajectories.load(run["trajectories"]))}, 2)
    assert df["Distance"].tolist() == one["Distance"].tolist() * 2
    with pytest.raises(InputError, match="2 runs, 1 pairs.h5 and 2 trajectories"):
        stages.table3(
            [Run("d", "x_m"), Run("d_x", "m")], [run["pairs"]], [run["trajectories"]] * 2, tmp_path / "t", k=2
        )


# ----------------------------------------------------------------------------------------------------
# Tables 4–5


@pytest.mark.parametrize("reverse_index", [False, True])
def test_best_orbit_matches_brute_force(tmp_path, reverse_index):
    run = synthetic_run(
        tmp_path / "results" / "mnist" / "resnet18", n=30, T=4, C=4, seed=5, reverse_index=reverse_index
    )
    orbit = best_orbit(
        Shadowing.load(run["shadowing"]),
        Constants.load(run["constants"]),
        Trajectories.load(run["trajectories"]),
    )
    sh, probs, best, names, labels = run["sh"], run["probs"], run["best"], run["names"], run["labels"]
    T = probs.shape[1] - 1
    assert orbit.T == T and orbit.rows.tolist() == sh["orbits"][best].tolist() and orbit.rows[0] == best
    assert orbit.hops.tolist() == sh["hops"][best].tolist()
    assert orbit.shadow_row == sh["shadow_image"][best]
    assert orbit.test_index.tolist() == run["index"][orbit.rows].tolist()
    assert orbit.shadow_index == run["index"][orbit.shadow_row]
    assert orbit.classes == [names[labels[r]] for r in orbit.rows]
    # ε(ξ) = max_t ‖p_t(b*) − q_t‖: the recomputed per-depth errors reproduce the stored ε.
    assert orbit.errors.max() == pytest.approx(sh["epsilon"][best], rel=1e-12, abs=1e-15)
    assert orbit.epsilon == sh["epsilon"][best] and orbit.delta == sh["delta"][best]
    df = best_orbit_table(orbit, "mnist", "resnet18")
    assert len(df) == T + 2 and df["Image"].tolist() == [f"a_{t}" for t in range(T + 1)] + ["b*"]
    assert df.loc[0, "Hop δ_{t−1}"] is None and df.loc[1, "Hop δ_{t−1}"] == sh["hops"][best][0]
    assert df.loc[T + 1, "‖p_t(b*) − q_t‖"] == sh["epsilon"][best]
    md = write_table(df, tmp_path / "orbit")[1].read_text()
    assert "b*" in md and "a_0" in md and "nan" not in md.replace("n/a", "")


def test_best_orbit_bad_inputs(run, tmp_path):
    shadowing, trajectories = Shadowing.load(run["shadowing"]), Trajectories.load(run["trajectories"])
    constants = json.loads(run["constants"].read_text())
    del constants["g_shadowing"]["paper"]["orbit_start"]
    path = tmp_path / "constants.json"
    write_json(path, constants)
    with pytest.raises(InputError, match=r"constants\.json.*'g_shadowing\.paper\.orbit_start'"):
        best_orbit(shadowing, Constants.load(path), trajectories)
    constants["g_shadowing"]["paper"]["orbit_start"] = 10**6
    write_json(path, constants)
    with pytest.raises(InputError, match=r"orbit_start 1000000 is not a test index"):
        best_orbit(shadowing, Constants.load(path), trajectories)
    constants["g_shadowing"]["paper"]["orbit_start"] = int(run["best"])
    constants["g_shadowing"]["paper"]["shadow_image"] = int(run["sh"]["shadow_image"][run["best"]]) + 1
    write_json(path, constants)
    with pytest.raises(InputError, match=r"constants\.json: shadow_image .*shadowing\.h5"):
        best_orbit(shadowing, Constants.load(path), trajectories)
    broken = tmp_path / "shadowing.h5"
    with h5py.File(broken, "w") as f:
        f["orbits"] = run["sh"]["orbits"]
    with pytest.raises(InputError, match=r"shadowing\.h5.*'hops'"):
        best_orbit(Shadowing.load(broken), Constants.load(run["constants"]), trajectories)
