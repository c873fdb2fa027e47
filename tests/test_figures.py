"""Figures 2–3, the Table 3 image pairs, the Tables 4–5 orbit strips and the shadowing curve, drawn from
stage outputs the tests write in the formats of docs/ARCHITECTURE.md; each PNG is checked to be a real
image of the documented size."""

from __future__ import annotations

import struct

import h5py
import numpy as np
import pytest
from test_tables import CIFAR_NAMES, synthetic_run

from resdyn import stages
from resdyn.artifacts import Constants, DatasetFile, Pairs, Shadowing, Trajectories
from resdyn.figures import (
    CLASS_EXPANSIVE_SIZE,
    DPI,
    best_orbit_indices,
    closest_pair_indices,
    figure_class_expansive,
    plot_best_orbit,
    plot_class_expansive,
    plot_closest_pairs,
    spans_decades,
)
from resdyn.io import InputError
from resdyn.runs import Run
from resdyn.tables import best_orbit, closest_pairs


def png_size(path) -> tuple[int, int]:
    """(width, height) from the PNG header; fails on anything that is not a PNG."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


def assert_drawn(path, size) -> None:
    """A PNG of the expected pixel size whose pixels are not all one colour (something was drawn)."""
    assert png_size(path) == (round(size[0] * DPI), round(size[1] * DPI))
    image = __import__("matplotlib.pyplot").pyplot.imread(path)
    assert image.reshape(-1, image.shape[-1]).std(axis=0).max() > 0.05
    assert not list(path.parent.glob(f".{path.name}.tmp*"))


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict:
    return synthetic_run(tmp_path_factory.mktemp("cifar") / "results" / "cifar10" / "resnet18", n=50, T=8)


def loaded_orbit(paths: dict):
    return best_orbit(
        Shadowing.load(paths["shadowing"]),
        Constants.load(paths["constants"]),
        Trajectories.load(paths["trajectories"]),
    )


def loaded_pairs(paths: dict, k: int):
    return closest_pairs(Pairs.load(paths["pairs"]), Trajectories.load(paths["trajectories"]), k)


def symmetric(C: int, rng: np.random.Generator, low: float, high: float) -> np.ndarray:
    E = 10 ** rng.uniform(np.log10(low), np.log10(high), (C, C))
    E = np.triu(E, 1) + np.triu(E, 1).T
    E[np.eye(C, dtype=bool)] = np.nan
    return E


@pytest.mark.parametrize("case", ["decades", "narrow", "zeros_and_nan", "two_classes"])
def test_plot_class_expansive_sizes_and_scales(tmp_path, case):
    rng = np.random.default_rng(0)
    names, E = CIFAR_NAMES, symmetric(10, rng, 1e-6, 1e-1)
    if case == "narrow":
        E = symmetric(10, rng, 0.2, 0.5)
    elif case == "zeros_and_nan":
        E[0, 3] = E[3, 0] = 0.0  # identical trajectories across classes
        E[2, 5] = E[5, 2] = np.nan  # a class pair with no images
    elif case == "two_classes":
        names, E = ["0", "1"], np.array([[np.nan, 1e-7], [1e-7, np.nan]])
    out = plot_class_expansive(E, names, tmp_path / f"{case}.png", f"Figure 3: {case}")
    assert_drawn(out, CLASS_EXPANSIVE_SIZE)


def test_spans_decades_picks_the_log_axis():
    assert spans_decades(np.array([1e-6, 1e-1, np.nan]))
    assert spans_decades(np.array([1e-3, 0.1, 0.0]))  # zeros are drawn at the floor, not counted
    assert not spans_decades(np.array([0.2, 0.5, np.nan, 0.0]))
    assert not spans_decades(np.array([0.0, np.nan]))
    assert not spans_decades(np.array([1e-3, 0.0999]))


def test_plot_class_expansive_rejects_bad_shapes(tmp_path):
    with pytest.raises(ValueError, match=r"\(3, 3\)"):
        plot_class_expansive(np.zeros((2, 2)), ["a", "b", "c"], tmp_path / "x.png", "bad")
    with pytest.raises(ValueError, match="negative"):
        plot_class_expansive(
            np.array([[np.nan, -1.0], [-1.0, np.nan]]), ["a", "b"], tmp_path / "x.png", "bad"
        )
    with pytest.raises(ValueError, match="two classes"):
        plot_class_expansive(np.full((1, 1), np.nan), ["a"], tmp_path / "x.png", "bad")


def test_figure_class_expansive_from_files(run, tmp_path):
    pairs, trajectories = Pairs.load(run["pairs"]), Trajectories.load(run["trajectories"])
    for which in ("E", "E_mean"):
        out = figure_class_expansive(pairs, trajectories, tmp_path / f"{which}.png", which, which)
        assert_drawn(out, CLASS_EXPANSIVE_SIZE)
    with pytest.raises(ValueError, match="which"):
        figure_class_expansive(pairs, trajectories, tmp_path / "x.png", "E_max", "x")
    # Files of different runs (4 classes in trajectories.h5, 10 in pairs.h5) are refused with both names.
    other = synthetic_run(tmp_path / "other", n=20, T=8, C=4)
    with pytest.raises(InputError, match=r"pairs\.h5.*\(10, 10\).*other/trajectories\.h5 names 4 classes"):
        figure_class_expansive(pairs, Trajectories.load(other["trajectories"]), tmp_path / "x.png", "E", "x")
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("k", [1, 4])
def test_plot_closest_pairs(run, tmp_path, k):
    pairs = loaded_pairs(run, k)
    indices = closest_pair_indices(pairs)
    assert indices == [i for p in pairs for i in (p.index_a, p.index_b)] and len(indices) == 2 * k
    images = DatasetFile.test_images(run["data"], indices)
    assert images.shape == (2 * k, 32, 32, 3) and images.dtype == np.uint8
    out = plot_closest_pairs(pairs, images, tmp_path / "pairs.png", "Table 3")
    assert_drawn(out, (2.6 * k + 0.4, 2.9))
    # A run without different-class pairs (one label) gets a figure that says so, not a crash.
    none = DatasetFile.test_images(run["data"], closest_pair_indices([]))
    assert_drawn(plot_closest_pairs([], none, tmp_path / "none.png", "Table 3"), (4.0, 1.5))
    with pytest.raises(ValueError, match=f"{2 * k - 1} images for {k} pairs"):
        plot_closest_pairs(pairs, images[1:], tmp_path / "short.png", "Table 3")
    assert not (tmp_path / "short.png").exists()


def test_closest_pair_images_name_data_file_on_bad_index(run, tmp_path):
    pair = loaded_pairs(run, 1)[0]
    pair.index_b = 10**6
    with pytest.raises(InputError, match=r"data\.h5.*1000000"):
        DatasetFile.test_images(run["data"], closest_pair_indices([pair]))


def test_plot_best_orbit_strip(run, tmp_path):
    orbit = loaded_orbit(run)
    indices = best_orbit_indices(orbit)
    assert indices == [*orbit.test_index.tolist(), orbit.shadow_index] and len(indices) == orbit.T + 2
    images = DatasetFile.test_images(run["data"], indices)
    out = plot_best_orbit(orbit, images, tmp_path / "orbit.png", "Table 4")
    assert_drawn(out, (1.3 * (orbit.T + 1) + 0.6, 4.4))
    with pytest.raises(ValueError, match=f"{orbit.T + 1} images for an orbit of T \\+ 1 = {orbit.T + 1}"):
        plot_best_orbit(orbit, images[:-1], tmp_path / "short.png", "Table 4")
    assert not (tmp_path / "short.png").exists()


def test_figures_stage_draws_every_figure_of_a_run(run, tmp_path):
    """The stage layer: from the run's files to Figures 2-3, the Table 3 pairs and the orbit strip and
    table, titled with the run's network."""
    out = {name: tmp_path / name for name in ("f2.png", "f3.png", "pairs.png", "orbit.png")}
    stages.figures(
        Run("cifar10", "resnet18", replicate=2),
        data_path=run["data"],
        trajectories_path=run["trajectories"],
        pairs_path=run["pairs"],
        shadowing_path=run["shadowing"],
        constants_path=run["constants"],
        figure2_png=out["f2.png"],
        figure3_png=out["f3.png"],
        pairs_png=out["pairs.png"],
        orbit_png=out["orbit.png"],
        orbit_table_stem=tmp_path / "orbit",
        k=2,
    )
    assert_drawn(out["f2.png"], CLASS_EXPANSIVE_SIZE)
    assert_drawn(out["f3.png"], CLASS_EXPANSIVE_SIZE)
    assert_drawn(out["pairs.png"], (2.6 * 2 + 0.4, 2.9))
    orbit = loaded_orbit(run)
    assert_drawn(out["orbit.png"], (1.3 * (orbit.T + 1) + 0.6, 4.4))
    table = (tmp_path / "orbit.md").read_text()
    assert "cifar10" in table and "b*" in table
    assert {p.suffix for p in tmp_path.glob("orbit.*")} == {".png", ".csv", ".md", ".tex"}
    # A broken pairs.h5 is named with its missing key, and no figure is written.
    broken = tmp_path / "broken" / "pairs.h5"
    broken.parent.mkdir()
    with h5py.File(broken, "w") as f:
        f["E/value"] = np.zeros((10, 10))
    with pytest.raises(InputError, match=r"pairs\.h5.*'E/pair'"):
        stages.figures(
            Run("cifar10", "resnet18"),
            data_path=run["data"],
            trajectories_path=run["trajectories"],
            pairs_path=broken,
            shadowing_path=run["shadowing"],
            constants_path=run["constants"],
            figure2_png=broken.parent / "f2.png",
            figure3_png=broken.parent / "f3.png",
            pairs_png=broken.parent / "pairs.png",
            orbit_png=broken.parent / "orbit.png",
            orbit_table_stem=broken.parent / "orbit",
            k=2,
        )
    assert not list(broken.parent.glob("*.png"))


def test_plot_best_orbit_grayscale_images(tmp_path):
    """MNIST-like single-channel test images are shown as grey RGB."""
    paths = synthetic_run(tmp_path / "results" / "mnist" / "resnet50", n=24, T=3, C=3, seed=2)
    with h5py.File(paths["data"], "r+") as f:
        grey = f["test/images"][:, :1]
        del f["test/images"]
        f["test/images"] = grey
    orbit = loaded_orbit(paths)
    images = DatasetFile.test_images(paths["data"], best_orbit_indices(orbit))
    assert images.shape == (orbit.T + 2, 32, 32, 3)
    assert (images[..., 0] == images[..., 1]).all() and (images[..., 1] == images[..., 2]).all()
    out = plot_best_orbit(orbit, images, tmp_path / "orbit.png", "Table 5")
    assert_drawn(out, (1.3 * 4 + 0.6, 4.4))


@pytest.mark.parametrize(
    "caption",
    sorted((__import__("pathlib").Path(__file__).parent.parent / "report").glob("*.rst")),
    ids=lambda p: p.name,
)
def test_report_captions_render_like_snakemake(caption):
    """Each caption renders the way Snakemake's report does (Jinja2, then docutils to HTML) without a
    reStructuredText warning, with and without the {dataset}/{model} wildcards."""
    from types import SimpleNamespace

    import jinja2
    from docutils.core import publish_parts

    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
    for wildcards in ({"dataset": "cifar10", "model": "resnet18"}, {}):
        text = env.from_string(caption.read_text()).render(
            snakemake=SimpleNamespace(wildcards=SimpleNamespace(**wildcards)), categories={}, files={}
        )
        html = publish_parts(text, writer="html", settings_overrides={"halt_level": 2, "report_level": 2})[
            "body"
        ]
        assert len(html) > 200 and "system-message" not in html
        if wildcards and "snakemake.wildcards" in caption.read_text():
            assert "cifar10" in html
