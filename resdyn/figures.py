"""The paper's figures: Figures 2–3 (class-wise g-expansive values), the image pairs of Table 3 and the
best-traced pseudo-orbit strips of Tables 4–5 and the g-shadowing curve (method §3.1–3.2, §7). Every
plot of the package lives here.

Every figure is drawn with matplotlib's Agg backend at a fixed size (documented per function, at
``DPI`` dots per inch) and written atomically through :func:`resdyn.io.atomic_output`.
"""

from __future__ import annotations

import math
import os
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from resdyn.artifacts import Pairs, Trajectories  # noqa: E402
from resdyn.io import InputError, atomic_output  # noqa: E402
from resdyn.tables import DYNAMICS_VALUES, BestOrbit, ClosestPair, format_value  # noqa: E402

PathLike = str | os.PathLike
DPI = 100
# Values spanning at least this ratio are drawn on a log axis (Figures 2–3 span 1e-6..1e-1 in the paper).
LOG_SCALE_RATIO = 100.0
CLASS_EXPANSIVE_SIZE = (10.0, 5.0)  # inches


def _save(fig: plt.Figure, out_png: PathLike, dpi: int = DPI) -> Path:
    out_png = Path(out_png)
    with atomic_output(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    plt.close(fig)
    return out_png


def class_colors(n_classes: int) -> list:
    """One distinguishable colour per class: tab10 up to 10 classes, tab20 up to 20, else a hue wheel."""
    if n_classes <= 10:
        return [plt.get_cmap("tab10")(k) for k in range(n_classes)]
    if n_classes <= 20:
        return [plt.get_cmap("tab20")(k) for k in range(n_classes)]
    return [plt.get_cmap("hsv")(k / n_classes) for k in range(n_classes)]


def spans_decades(values: np.ndarray) -> bool:
    """Whether the positive finite ``values`` span a factor of at least ``LOG_SCALE_RATIO`` (log axis)."""
    values = np.asarray(values, dtype=np.float64)
    positive = values[np.isfinite(values) & (values > 0)]
    return positive.size > 0 and bool(positive.max() / positive.min() >= LOG_SCALE_RATIO)


def plot_class_expansive(
    E: np.ndarray, class_names: Sequence[str], out_png: PathLike, title: str, value_label: str = "E[a, b]"
) -> Path:
    """Figures 2 and 3 (§4): for each class a on the x-axis, one dot per other class b at E[a, b],
    coloured by b, with a legend of class names.

    Pass E (C×C, max over depths, Figure 3) or Ē (mean over depths, Figure 2); ``value_label`` names it
    on the y-axis. Dots of one column are spread a little sideways in the order of b so equal values do
    not hide each other; NaN entries (no pair) and the diagonal are skipped. The y-axis is logarithmic
    when the positive values span a factor ≥ ``LOG_SCALE_RATIO``; then exact zeros (identical
    probability trajectories) are drawn as triangles at the bottom of the axis. The dashed line marks
    the smallest value (for Figure 3 it is the g-expansive constant). Size: 10 × 5 in at ``DPI``.
    """
    E = np.asarray(E, dtype=np.float64)
    C = len(class_names)
    if E.shape != (C, C):
        raise ValueError(f"E has shape {E.shape}, expected ({C}, {C}) for {C} class names")
    if C < 2:
        raise ValueError("Figures 2–3 need at least two classes")
    off_diagonal = ~np.eye(C, dtype=bool) & np.isfinite(E)
    if (E[off_diagonal] < 0).any():
        raise ValueError(f"{value_label} holds negative distances")
    values = E[off_diagonal]
    positive = values[values > 0]
    log_scale = spans_decades(values)
    floor = positive.min() / 3.0 if log_scale else 0.0
    colors = class_colors(C)
    spread = 0.7 / max(C - 1, 1)

    fig, ax = plt.subplots(figsize=CLASS_EXPANSIVE_SIZE, layout="constrained")
    for b in range(C):
        a = np.flatnonzero(off_diagonal[:, b])
        if a.size == 0:
            continue
        x = a + (b - (C - 1) / 2) * spread
        y = E[a, b]
        zero = log_scale & (y == 0)
        ax.scatter(x[~zero], y[~zero], color=colors[b], s=36, edgecolors="black", linewidths=0.4, zorder=3)
        if zero.any():
            ax.scatter(
                x[zero],
                np.full(zero.sum(), floor),
                color=colors[b],
                marker="v",
                s=48,
                edgecolors="black",
                linewidths=0.4,
                zorder=3,
            )
    handles = [
        Line2D(
            [],
            [],
            marker="o",
            linestyle="",
            color=colors[b],
            markeredgecolor="black",
            markeredgewidth=0.4,
            markersize=7,
            label=class_names[b],
        )
        for b in range(C)
    ]
    if values.size:
        smallest = values.min()
        line_at = floor if (log_scale and smallest == 0) else smallest
        ax.axhline(line_at, color="0.4", linestyle="--", linewidth=1, zorder=1)
        handles.append(
            Line2D([], [], color="0.4", linestyle="--", label=f"minimum = {format_value(float(smallest))}")
        )
    if log_scale:
        ax.set_yscale("log")
        if (values == 0).any():
            ax.set_ylim(bottom=floor / 2)
            handles.append(
                Line2D(
                    [],
                    [],
                    marker="v",
                    linestyle="",
                    color="0.5",
                    markeredgecolor="black",
                    markersize=7,
                    label="= 0 (drawn at floor)",
                )
            )
    else:
        # Headroom above the largest dot, which would otherwise sit on the frame.
        ax.set_ylim(0, 1.08 * values.max() if values.size and values.max() > 0 else 1.0)
    ax.set_xticks(range(C))
    ax.set_xticklabels(
        class_names,
        rotation=30 if max(map(len, class_names)) > 3 else 0,
        ha="right" if max(map(len, class_names)) > 3 else "center",
    )
    ax.set_xlim(-0.6, C - 0.4)
    for edge in np.arange(0.5, C - 1, 1.0):
        ax.axvline(edge, color="0.9", linewidth=0.8, zorder=0)
    ax.set_xlabel("class a")
    ax.set_ylabel(f"{value_label} (distance of probabilities)")
    ax.grid(axis="y", which="major", color="0.85", linewidth=0.6)
    ax.set_title(title)
    fig.legend(
        handles=handles,
        title="class b",
        loc="outside right upper",
        ncol=1 if C <= 20 else 2,
        fontsize="small",
        frameon=False,
    )
    return _save(fig, out_png)


def figure_class_expansive(
    pairs: Pairs, trajectories: Trajectories, out_png: PathLike, which: str, title: str
) -> Path:
    """Figure 3 (``which="E"``, max over depths) or Figure 2 (``which="E_mean"``, mean over depths)
    for one (dataset, model), from ``pairs.h5`` and the class names of ``trajectories.h5``."""
    labels = {"E": r"$E[a,b] = \min\ \max_t\ d_t$", "E_mean": r"$\bar{E}[a,b] = \min\ \mathrm{mean}_t\ d_t$"}
    if which not in labels:
        raise ValueError(f"which must be 'E' or 'E_mean', got {which!r}")
    E = np.asarray(getattr(pairs.result, which), dtype=np.float64)
    names = trajectories.class_names
    if E.shape != (len(names), len(names)):
        raise InputError(
            f"{pairs.path}: /{which}/value has shape {E.shape}, but {trajectories.path} "
            f"names {len(names)} classes"
        )
    return plot_class_expansive(E, names, out_png, title, value_label=labels[which])


def _show_image(ax: plt.Axes, image: np.ndarray) -> None:
    ax.imshow(image, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def plot_closest_pairs(
    pairs: Sequence[ClosestPair], images: np.ndarray, out_png: PathLike, title: str
) -> Path:
    """The images of Table 3: each of the K closest different-class pairs side by side, with class,
    order within class and test index above each image and E[a, b] and t* beneath the pair.
    ``images`` are the pairs' test images in order (a, b of pair 1, a, b of pair 2, …), (2K, H, W, 3)
    ready for imshow (:meth:`resdyn.artifacts.DatasetFile.test_images` of :func:`closest_pair_indices`).
    Size: (2.6 K + 0.4) × 2.9 in at ``DPI``."""
    if not pairs:
        # Every test image carries one label (a degenerate run): say so instead of failing the stage.
        fig, ax = plt.subplots(figsize=(4.0, 1.5))
        ax.axis("off")
        ax.text(
            0.5,
            0.5,
            "no different-class pair:\nthe g-expansive constant is undefined",
            ha="center",
            va="center",
            fontsize=10,
        )
        fig.suptitle(title, fontsize=9)
        return _save(fig, out_png)
    K = len(pairs)
    if len(images) != 2 * K:
        raise ValueError(f"plot_closest_pairs: {len(images)} images for {K} pairs")
    # A fixed layout (not constrained): two image columns per pair and a narrow spacer between pairs,
    # so each pair reads as one group and the text under it sits centred below both images.
    widths = []
    for k in range(K):
        widths += [1.0, 1.0] + ([0.3] if k < K - 1 else [])
    fig, axes = plt.subplots(1, len(widths), figsize=(2.6 * K + 0.4, 2.9), width_ratios=widths)
    fig.subplots_adjust(left=0.02, right=0.98, top=0.70, bottom=0.17, wspace=0.08)
    axes = np.atleast_1d(axes)
    for k, pair in enumerate(pairs):
        left, right = axes[3 * k], axes[3 * k + 1]
        for ax, image, cls, order, index in (
            (left, images[2 * k], pair.class_a, pair.order_a, pair.index_a),
            (right, images[2 * k + 1], pair.class_b, pair.order_b, pair.index_b),
        ):
            _show_image(ax, image)
            ax.set_title(f"{cls}\n#{order} in class\n(test {index})", fontsize=9)
        if k < K - 1:
            axes[3 * k + 2].axis("off")
        middle = (left.get_position().x1 + right.get_position().x0) / 2
        fig.text(
            middle,
            left.get_position().y0 - 0.03,
            f"d = {format_value(pair.distance)}\nfarthest at t* = {pair.t_star}",
            ha="center",
            va="top",
            fontsize=9,
        )
    fig.suptitle(title, y=0.98)
    return _save(fig, out_png)


def closest_pair_indices(pairs: Sequence[ClosestPair]) -> list[int]:
    """The test indices whose images :func:`plot_closest_pairs` shows, in its order."""
    return [i for p in pairs for i in (p.index_a, p.index_b)]


def best_orbit_indices(orbit: BestOrbit) -> list[int]:
    """The test indices whose images :func:`plot_best_orbit` shows: a_0..a_T, then b*."""
    return [*(int(i) for i in orbit.test_index), int(orbit.shadow_index)]


def plot_best_orbit(orbit: BestOrbit, images: np.ndarray, out_png: PathLike, title: str) -> Path:
    """Tables 4–5 (§4) as an image strip: the best-traced pseudo-orbit a_0..a_T on top, each image with
    its depth t, class and order within class, the class g gives at depth t (argmax q_t) and the hop
    δ_{t−1} = d_t(a_{t−1}, a_t) that led to it; beneath a_0 the shadowing image b*, and beneath every a_t
    the class g gives b* at depth t and the error ‖p_t(b*) − q_t‖₂ (its maximum is ε). ``images`` are
    the test images of :func:`best_orbit_indices`, (T + 2, H, W, 3) ready for imshow.
    Size: (1.3 (T+1) + 0.6) × 4.4 in at ``DPI``."""
    T = orbit.T
    if len(images) != T + 2:
        raise ValueError(f"plot_best_orbit: {len(images)} images for an orbit of T + 1 = {T + 1} and b*")
    fig, axes = plt.subplots(
        2, T + 1, figsize=(1.3 * (T + 1) + 0.6, 4.4), layout="constrained", squeeze=False
    )
    worst = int(np.argmax(orbit.errors))
    for t in range(T + 1):
        top, bottom = axes[0, t], axes[1, t]
        _show_image(top, images[t])
        hop = "start" if t == 0 else f"δ = {format_value(float(orbit.hops[t - 1]))}"
        top.set_title(f"t = {t}", fontsize=9)
        top.set_xlabel(f"{orbit.classes[t]} #{orbit.orders[t]}\ng: {orbit.g_classes[t]}\n{hop}", fontsize=8)
        error = f"‖p−q‖ = {format_value(float(orbit.errors[t]))}"
        if t == 0:
            _show_image(bottom, images[-1])
            bottom.set_title(f"b*: {orbit.shadow_class} #{orbit.shadow_order}", fontsize=9)
            bottom.set_xlabel(
                f"g: {orbit.shadow_g_classes[0]}\n{error}",
                fontsize=8,
                color="firebrick" if worst == 0 else "black",
            )
        else:
            bottom.axis("off")
            bottom.text(
                0.5,
                0.5,
                f"b* at t = {t}\ng: {orbit.shadow_g_classes[t]}\n{error}",
                ha="center",
                va="center",
                fontsize=8,
                transform=bottom.transAxes,
                color="firebrick" if worst == t else "black",
            )
    axes[0, 0].set_ylabel("orbit $a_t$", fontsize=9)
    axes[1, 0].set_ylabel("shadow $b^*$", fontsize=9)
    sh = orbit.delta / orbit.epsilon if orbit.epsilon > 0 else math.inf
    fig.suptitle(
        f"{title}\nδ = {format_value(orbit.delta)}, ε = {format_value(orbit.epsilon)}, "
        f"Sh = δ/ε = {format_value(sh)} (largest error in red)",
        fontsize=10,
    )
    return _save(fig, out_png)


def plot_shadowing_curve(curve: pd.DataFrame, summary: Mapping[str, Any], out_png: str | os.PathLike) -> Path:
    """Plot δ*(ε) (top) and r(ε) = δ*(ε)/ε (bottom) on a log ε axis, shade the quantile window and mark
    Sh_curve; an undefined curve gives a figure stating the reason. Written atomically as PNG."""
    fig, (ax_delta, ax_ratio) = plt.subplots(2, 1, sharex=True, figsize=(7, 6), constrained_layout=True)
    quantiles = summary.get("quantiles", {})
    counts = f"{summary.get('n_orbits', '?')} pseudo-orbits, {len(curve)} levels with a finite δ*"
    fig.suptitle("g-shadowing curve estimate (docs/method.md §3.2)\n" + counts, fontsize=11)
    undefined = "Sh_curve undefined:\n" + textwrap.fill(summary.get("undefined_reason") or "", 60)
    if not len(curve):
        for ax in (ax_delta, ax_ratio):
            ax.set_axis_off()
        ax_delta.text(
            0.5, 0.5, undefined, ha="center", va="center", transform=ax_delta.transAxes, fontsize=10
        )
    else:
        eps = curve["epsilon"].to_numpy()
        delta_star = curve["delta_star"].to_numpy()
        ratio = curve["ratio"].to_numpy()
        ax_delta.step(eps, delta_star, where="post", color="tab:blue", lw=1.2)
        ax_delta.plot(eps, delta_star, "o", ms=3, color="tab:blue", label="δ*(ε) at observed levels")
        ax_ratio.plot(eps, ratio, "o-", ms=3, lw=1, color="tab:green", label="r(ε) at observed levels")
        ax_delta.set_xscale("log")
        # matplotlib's own minor labels collide over a decade or two; label 1-2-5 steps in plain numbers.
        ax_ratio.xaxis.set_minor_locator(matplotlib.ticker.LogLocator(subs=(2.0, 5.0)))
        ax_ratio.xaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax_ratio.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        low, high = quantiles.get("epsilon_low"), quantiles.get("epsilon_high")
        for ax, values in ((ax_delta, delta_star), (ax_ratio, ratio)):
            positive = values[values > 0]
            if positive.size and positive.max() / positive.min() > 50:
                ax.set_yscale("log")
            if low is not None and high is not None and low <= eps.max() and high >= eps.min():
                ax.axvspan(
                    max(low, eps.min()),
                    min(high, eps.max()),
                    color="0.88",
                    zorder=0,
                    label=f"window: {quantiles['q_low']:g}–{quantiles['q_high']:g} quantiles of ε_k",
                )
            ax.grid(True, which="major", alpha=0.4)
        if summary.get("value") is not None:
            ax_ratio.plot(
                [summary["epsilon"]],
                [summary["value"]],
                marker="*",
                ms=14,
                color="tab:red",
                ls="none",
                label=f"Sh_curve = min r = {summary['value']:.4g} at ε = {summary['epsilon']:.3g}",
            )
            ax_delta.plot(
                [summary["epsilon"]],
                [summary["delta_star"]],
                marker="*",
                ms=14,
                color="tab:red",
                ls="none",
                label=f"δ* = {summary['delta_star']:.3g} at the minimum",
            )
        ax_delta.set_ylabel("δ*(ε) = min{δ_k : ε_k > ε}")
        ax_ratio.set_ylabel("r(ε) = δ*(ε) / ε")
        ax_ratio.set_xlabel("shadowing level ε (log scale)")
        if summary.get("value") is None:
            ax_ratio.text(
                0.5,
                0.5,
                undefined,
                ha="center",
                va="center",
                transform=ax_ratio.transAxes,
                fontsize=9,
                bbox={"facecolor": "white", "edgecolor": "tab:red"},
            )
        ax_delta.legend(loc="upper left", fontsize=8)
        ax_ratio.legend(loc="upper right", fontsize=8)
    # 120 dpi, not DPI: the curve's PNG predates the shared setting and is kept byte-identical.
    return _save(fig, out_png, dpi=120)


SAMPLE_SIZE_SIZE = (7.0, 7.5)  # inches
_SAMPLE_SIZE_PANELS = (
    # (panel, estimate, label, colour)
    (0, "g_expansive", "g-expansive e", "tab:blue"),
    (1, "sh_paper", "Sh best-tracing", "tab:orange"),
    (1, "sh_curve", "Sh curve", "tab:green"),
)


def plot_sample_size(table: pd.DataFrame, summary: Mapping[str, Any], out_png: PathLike, title: str) -> Path:
    """The sample-size figure (method §3.6), log-log: top, e of every subset (grey dots) against its size
    n, the median per size (line), the 5–95 % band (shaded), the fitted line median ∝ n^s with its slope
    s (dashed), the whole test set (star) and the reference size (dotted); bottom, the same median, band
    and slope for Sh best-tracing and Sh curve. ``table`` is sample_size.csv, ``summary`` its
    :func:`resdyn.sample_size.summarize`. Size: 7 × 7.5 in at ``DPI``."""
    fig, axes = plt.subplots(2, 1, sharex=True, figsize=SAMPLE_SIZE_SIZE, constrained_layout=True)
    band = summary["band"]
    band_label = f"{100 * band[0]:g}–{100 * band[1]:g} %"
    fig.suptitle(f"Dependence on the sample size (docs/method.md §3.6)\n{title}", fontsize=11)
    sizes = summary["sizes"]
    n_all = np.array([s["n"] for s in sizes], dtype=np.float64)
    drawn = [False, False]
    for panel, estimate, label, colour in _SAMPLE_SIZE_PANELS:
        ax = axes[panel]
        median = np.array([np.nan if s[estimate]["median"] is None else s[estimate]["median"] for s in sizes])
        low = np.array([np.nan if s[estimate]["low"] is None else s[estimate]["low"] for s in sizes])
        high = np.array([np.nan if s[estimate]["high"] is None else s[estimate]["high"] for s in sizes])
        ok = np.isfinite(median) & (median > 0) & (low > 0)
        if not ok.any():
            continue
        drawn[panel] = True
        if panel == 0:
            values = table[estimate].to_numpy(dtype=np.float64)
            shown = np.isfinite(values) & (values > 0)
            ax.plot(table["n"].to_numpy()[shown], values[shown], ".", ms=3, color="0.6", label="one subset")
        ax.fill_between(
            n_all[ok], low[ok], high[ok], color=colour, alpha=0.18, lw=0, label=f"{label}: {band_label}"
        )
        ax.plot(n_all[ok], median[ok], "o-", ms=4, lw=1.3, color=colour, label=f"{label}: median")
        fit = summary["slope"][estimate]
        if fit["value"] is not None:
            grid = np.geomspace(n_all[ok].min(), n_all[ok].max(), 50)
            ax.plot(
                grid,
                np.exp(fit["intercept"]) * grid ** fit["value"],
                "--",
                color=colour,
                lw=1,
                label=f"{label}: fit ∝ n^{fit['value']:.3f}",
            )
        if np.isfinite(median[-1]) and median[-1] > 0:
            ax.plot([n_all[-1]], [median[-1]], "*", ms=13, color=colour, ls="none")
    reference = summary.get("reference", {})
    for panel, ax in enumerate(axes):
        if not drawn[panel]:
            ax.text(0.5, 0.5, "undefined on every subset", ha="center", va="center", transform=ax.transAxes)
            ax.set_yticks([])
            continue
        ax.set_xscale("log")
        ax.set_yscale("log")
        _plain_log_labels(ax.yaxis)
        if reference.get("available"):
            ax.axvline(reference["n"], color="0.3", ls=":", lw=1, label=f"reference n = {reference['n']}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    _plain_log_labels(axes[1].xaxis)
    axes[0].set_ylabel("g-expansive e")
    axes[1].set_ylabel("g-shadowing Sh")
    axes[1].set_xlabel(f"subset size n (log scale; star: the whole test set, N = {summary['N']})")
    return _save(fig, out_png)


def _plain_log_labels(axis: Any) -> None:
    """Tick labels of a log axis as plain numbers (0.2, 50) instead of 2×10^-1: every minor tick labelled
    when the axis spans less than a factor 3, those with leading digit 2, 3 or 5 up to a factor 30, none
    beyond (they would collide)."""
    low, high = sorted(axis.get_view_interval())
    span = high / low if low > 0 else math.inf
    digits = set(range(2, 10)) if span < 3 else {2, 3, 5} if span < 30 else set()

    def minor(value: float, _: Any) -> str:
        leading = round(value / 10 ** math.floor(math.log10(value) + 1e-9)) if value > 0 else 0
        return f"{value:.3g}" if leading in digits else ""

    axis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:.3g}"))
    axis.set_minor_formatter(matplotlib.ticker.FuncFormatter(minor))


def plot_probe_accuracy(tables: Mapping[str, pd.DataFrame], out_png: PathLike, title: str) -> Path:
    """Test accuracy against depth t = 0..T for each model (method §3.5): its per-depth probe (solid) and
    the network's own head applied at that depth (dashed), one colour per model. 7 × 4.5 in."""
    fig, ax = plt.subplots(figsize=(7, 4.5), constrained_layout=True)
    colors = plt.get_cmap("tab10")
    for k, (model, table) in enumerate(tables.items()):
        depth = table["depth"].to_numpy()
        ax.plot(depth, table["test_accuracy"], "o-", color=colors(k % 10), label=f"{model}: probe g_θt")
        ax.plot(
            depth,
            table["head_test_accuracy"],
            "s--",
            color=colors(k % 10),
            alpha=0.7,
            label=f"{model}: final head g",
        )
    ax.set_xlabel("depth t (0 = stem output)")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1.02)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.grid(True, alpha=0.4)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(title, fontsize=11)
    return _save(fig, out_png)


ROBUSTNESS_PANEL = (3.0, 2.6)  # inches per panel


def _rho_text(value: Any) -> str:
    return "ρ n/a" if value is None or not math.isfinite(value) else f"ρ = {value:+.2f}"


def robustness_scatter_figure(
    runs: pd.DataFrame,
    constants: Sequence[str],
    measures: Sequence[str],
    rho: Mapping[tuple[str, str], Any],
    trained: np.ndarray | None = None,
    rho_trained: Mapping[tuple[str, str], Any] | None = None,
) -> plt.Figure:
    """The scatter figure of the robustness correlation (not saved): one panel per (constant, measure),
    constants down, measures across; each point is one run (``runs``: one row per run, with a ``Run``
    column and the ``constants`` and ``measures`` columns), a run without either value is left out. The
    panel's title gives Spearman's ρ from ``rho[(constant, measure)]`` (NaN: "ρ n/a"). A constant
    spanning two decades or more is drawn on a log axis.

    ``trained`` (a bool per row of ``runs``), when given, splits the points: the trained networks filled
    (the panel's first collection), the others hollow (the second), and the title adds the trained
    networks' ρ from ``rho_trained``."""
    if not constants or not measures:
        raise InputError(
            f"robustness figure: no constants ({list(constants)}) or measures ({list(measures)})"
        )
    width, height = ROBUSTNESS_PANEL
    fig, axes = plt.subplots(
        len(constants),
        len(measures),
        figsize=(width * len(measures), height * len(constants)),
        squeeze=False,
        constrained_layout=True,
    )
    if trained is not None and len(trained) != len(runs):
        raise InputError(f"robustness figure: {len(trained)} trained flags for {len(runs)} runs")
    flags = pd.Series(True if trained is None else np.asarray(trained, dtype=bool), index=runs.index)
    for r, constant in enumerate(constants):
        for c, measure in enumerate(measures):
            ax = axes[r, c]
            pair = runs[[constant, measure]].apply(pd.to_numeric, errors="coerce").dropna()
            done = flags[pair.index]
            ax.scatter(pair[measure][done], pair[constant][done], s=18, color="tab:blue")
            title = f"{_rho_text(rho.get((constant, measure), math.nan))} ({len(pair)} runs)"
            if trained is not None:
                ax.scatter(
                    pair[measure][~done],
                    pair[constant][~done],
                    s=18,
                    facecolors="none",
                    edgecolors="tab:blue",
                )
                value = (rho_trained or {}).get((constant, measure), math.nan)
                title += f"\ntrained: {_rho_text(value)} ({int(done.sum())})"
            if spans_decades(pair[constant].to_numpy()):
                ax.set_yscale("log")
            ax.set_title(title, fontsize=9)
            ax.set_xlabel(measure, fontsize=8)
            ax.set_ylabel(constant, fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(True, alpha=0.4)
    heading = "Constants against measured robustness (one point per run"
    heading += "; hollow: clean accuracy below the trained threshold)" if trained is not None else ")"
    fig.suptitle(heading, fontsize=11)
    return fig


def plot_robustness_scatter(
    runs: pd.DataFrame,
    constants: Sequence[str],
    measures: Sequence[str],
    rho: Mapping[tuple[str, str], Any],
    out_png: PathLike,
    trained: np.ndarray | None = None,
    rho_trained: Mapping[tuple[str, str], Any] | None = None,
) -> Path:
    """:func:`robustness_scatter_figure` written to ``out_png`` (``ROBUSTNESS_PANEL`` inches per panel)."""
    return _save(robustness_scatter_figure(runs, constants, measures, rho, trained, rho_trained), out_png)


DYNAMICS_PANEL = (3.6, 2.8)  # inches per panel


def dynamics_figure(table: pd.DataFrame, title: str) -> plt.Figure:
    """The constants of one (dataset, model) against the training epoch (not saved): one panel per value
    of :data:`resdyn.tables.DYNAMICS_VALUES`, in a 2 × 3 grid. ``table`` holds that network's rows of the
    dynamics table (:func:`resdyn.tables.dynamics_table`). In each panel a line per reading (the test
    accuracy, a property of the network, only the first reading's) joins the mean over the replicates at
    each epoch; with more than one replicate a shaded band spans their min–max (the seed band). Undefined
    values are left out of the mean; a panel whose values span two decades or more has a log axis."""
    if table.empty:
        raise InputError(f"dynamics figure {title!r}: no runs")
    width, height = DYNAMICS_PANEL
    columns = 3
    rows = math.ceil(len(DYNAMICS_VALUES) / columns)
    fig, axes = plt.subplots(
        rows, columns, figsize=(width * columns, height * rows), squeeze=False, constrained_layout=True
    )
    readings = list(dict.fromkeys(table["Reading"]))
    colors = plt.get_cmap("tab10")
    for ax, value in zip(axes.flat, DYNAMICS_VALUES):
        shown = readings[:1] if value == "Test accuracy" else readings
        for k, reading in enumerate(shown):
            rows_of = table[table["Reading"] == reading]
            numbers = pd.to_numeric(rows_of[value], errors="coerce")
            by_epoch = numbers.groupby(rows_of["Epoch"].astype(int)).agg(["mean", "min", "max", "count"])
            by_epoch = by_epoch[by_epoch["count"] > 0]
            epochs = by_epoch.index.to_numpy()
            label = "network" if value == "Test accuracy" else reading
            ax.plot(epochs, by_epoch["mean"].to_numpy(), "o-", color=colors(k % 10), label=label)
            if rows_of["Replicate"].nunique() > 1:
                ax.fill_between(epochs, by_epoch["min"], by_epoch["max"], color=colors(k % 10), alpha=0.2)
        values = pd.to_numeric(table[value], errors="coerce").to_numpy()
        if spans_decades(values):
            ax.set_yscale("log")
        ax.set_title(value, fontsize=10)
        ax.set_xlabel("epoch", fontsize=8)
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.tick_params(labelsize=7)
        ax.grid(True, alpha=0.4)
        if value != "Test accuracy" and len(readings) > 1:
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(DYNAMICS_VALUES) :]:
        ax.set_visible(False)
    replicates = table["Replicate"].nunique()
    band = f", mean and min–max over {replicates} seeds" if replicates > 1 else ""
    fig.suptitle(f"{title}: accuracy and constants along training{band}", fontsize=11)
    return fig


def plot_dynamics(table: pd.DataFrame, out_png: PathLike, title: str) -> Path:
    """:func:`dynamics_figure` written to ``out_png`` (``DYNAMICS_PANEL`` inches per panel)."""
    return _save(dynamics_figure(table, title), out_png)
