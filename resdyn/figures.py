"""The paper's figures: Figures 2–3 (class-wise g-expansive values), the image pairs of Table 3 and the
best-traced pseudo-orbit strips of Tables 4–5 (DESIGN §3.1–3.2, §7). The g-shadowing curve is drawn by
:func:`resdyn.shadowing.plot_shadowing_curve`.

Every figure is drawn with matplotlib's Agg backend at a fixed size (documented per function, at
``DPI`` dots per inch) and written atomically through :func:`resdyn.io.atomic_output`.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Optional, Sequence, Union

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from resdyn.io import InputError, atomic_output, open_h5  # noqa: E402
from resdyn.tables import (BestOrbit, ClosestPair, format_value, load_test_images,  # noqa: E402
                           load_trajectory_meta)

PathLike = Union[str, os.PathLike]
DPI = 100
# Values spanning at least this ratio are drawn on a log axis (Figures 2–3 span 1e-6..1e-1 in the paper).
LOG_SCALE_RATIO = 100.0
CLASS_EXPANSIVE_SIZE = (10.0, 5.0)  # inches


def _save(fig: plt.Figure, out_png: PathLike) -> Path:
    out_png = Path(out_png)
    with atomic_output(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
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


def plot_class_expansive(E: np.ndarray, class_names: Sequence[str], out_png: PathLike, title: str,
                         value_label: str = "E[a, b]") -> Path:
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
            ax.scatter(x[zero], np.full(zero.sum(), floor), color=colors[b], marker="v", s=48,
                       edgecolors="black", linewidths=0.4, zorder=3)
    handles = [Line2D([], [], marker="o", linestyle="", color=colors[b], markeredgecolor="black",
                      markeredgewidth=0.4, markersize=7, label=class_names[b]) for b in range(C)]
    if values.size:
        smallest = values.min()
        line_at = floor if (log_scale and smallest == 0) else smallest
        ax.axhline(line_at, color="0.4", linestyle="--", linewidth=1, zorder=1)
        handles.append(Line2D([], [], color="0.4", linestyle="--",
                              label=f"minimum = {format_value(float(smallest))}"))
    if log_scale:
        ax.set_yscale("log")
        if (values == 0).any():
            ax.set_ylim(bottom=floor / 2)
            handles.append(Line2D([], [], marker="v", linestyle="", color="0.5", markeredgecolor="black",
                                  markersize=7, label="= 0 (drawn at floor)"))
    else:
        # Headroom above the largest dot, which would otherwise sit on the frame.
        ax.set_ylim(0, 1.08 * values.max() if values.size and values.max() > 0 else 1.0)
    ax.set_xticks(range(C))
    ax.set_xticklabels(class_names, rotation=30 if max(map(len, class_names)) > 3 else 0, ha="right"
                       if max(map(len, class_names)) > 3 else "center")
    ax.set_xlim(-0.6, C - 0.4)
    for edge in np.arange(0.5, C - 1, 1.0):
        ax.axvline(edge, color="0.9", linewidth=0.8, zorder=0)
    ax.set_xlabel("class a")
    ax.set_ylabel(f"{value_label} (distance of probabilities)")
    ax.grid(axis="y", which="major", color="0.85", linewidth=0.6)
    ax.set_title(title)
    fig.legend(handles=handles, title="class b", loc="outside right upper", ncol=1 if C <= 20 else 2,
               fontsize="small", frameon=False)
    return _save(fig, out_png)


def figure_class_expansive(pairs_path: PathLike, trajectories_path: PathLike, out_png: PathLike,
                           which: str, title: str) -> Path:
    """Figure 3 (``which="E"``, max over depths) or Figure 2 (``which="E_mean"``, mean over depths)
    for one (dataset, model), from ``pairs.h5`` and the class names of ``trajectories.h5``."""
    labels = {"E": r"$E[a,b] = \min\ \max_t\ d_t$", "E_mean": r"$\bar{E}[a,b] = \min\ \mathrm{mean}_t\ d_t$"}
    if which not in labels:
        raise ValueError(f"which must be 'E' or 'E_mean', got {which!r}")
    with open_h5(pairs_path, required=[f"{which}/value"]) as handle:
        E = np.asarray(handle[f"{which}/value"][()], dtype=np.float64)
    names = load_trajectory_meta(trajectories_path).class_names
    if E.shape != (len(names), len(names)):
        raise InputError(f"{pairs_path}: /{which}/value has shape {E.shape}, but {trajectories_path} "
                         f"names {len(names)} classes")
    return plot_class_expansive(E, names, out_png, title, value_label=labels[which])


def _show_image(ax: plt.Axes, image: np.ndarray) -> None:
    ax.imshow(image, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def plot_closest_pairs(pairs: Sequence[ClosestPair], data_path: PathLike, out_png: PathLike, title: str) -> Path:
    """The images of Table 3: each of the K closest different-class pairs side by side, with class,
    order within class and test index above each image and E[a, b] and t* beneath the pair.
    Size: (2.6 K + 0.4) × 2.9 in at ``DPI``."""
    if not pairs:
        # Every test image carries one label (a degenerate run): say so instead of failing the stage.
        fig, ax = plt.subplots(figsize=(4.0, 1.5))
        ax.axis("off")
        ax.text(0.5, 0.5, "no different-class pair:\nthe g-expansive constant is undefined", ha="center",
                va="center", fontsize=10)
        fig.suptitle(title, fontsize=9)
        return _save(fig, out_png)
    K = len(pairs)
    images = load_test_images(data_path, [i for p in pairs for i in (p.index_a, p.index_b)])
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
        for ax, image, cls, order, index in ((left, images[2 * k], pair.class_a, pair.order_a, pair.index_a),
                                             (right, images[2 * k + 1], pair.class_b, pair.order_b, pair.index_b)):
            _show_image(ax, image)
            ax.set_title(f"{cls}\n#{order} in class\n(test {index})", fontsize=9)
        if k < K - 1:
            axes[3 * k + 2].axis("off")
        middle = (left.get_position().x1 + right.get_position().x0) / 2
        fig.text(middle, left.get_position().y0 - 0.03, f"d = {format_value(pair.distance)}\n"
                 f"farthest at t* = {pair.t_star}", ha="center", va="top", fontsize=9)
    fig.suptitle(title, y=0.98)
    return _save(fig, out_png)


def plot_best_orbit(orbit: BestOrbit, data_path: PathLike, out_png: PathLike, title: str) -> Path:
    """Tables 4–5 (§4) as an image strip: the best-traced pseudo-orbit a_0..a_T on top, each image with
    its depth t, class and order within class, the class g gives at depth t (argmax q_t) and the hop
    δ_{t−1} = d_t(a_{t−1}, a_t) that led to it; beneath a_0 the shadowing image b*, and beneath every a_t
    the class g gives b* at depth t and the error ‖p_t(b*) − q_t‖₂ (its maximum is ε).
    Size: (1.3 (T+1) + 0.6) × 4.4 in at ``DPI``."""
    T = orbit.T
    images = load_test_images(data_path, list(orbit.test_index) + [orbit.shadow_index])
    fig, axes = plt.subplots(2, T + 1, figsize=(1.3 * (T + 1) + 0.6, 4.4), layout="constrained",
                             squeeze=False)
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
            bottom.set_xlabel(f"g: {orbit.shadow_g_classes[0]}\n{error}", fontsize=8,
                              color="firebrick" if worst == 0 else "black")
        else:
            bottom.axis("off")
            bottom.text(0.5, 0.5, f"b* at t = {t}\ng: {orbit.shadow_g_classes[t]}\n{error}", ha="center",
                        va="center", fontsize=8, transform=bottom.transAxes,
                        color="firebrick" if worst == t else "black")
    axes[0, 0].set_ylabel("orbit $a_t$", fontsize=9)
    axes[1, 0].set_ylabel("shadow $b^*$", fontsize=9)
    sh = orbit.delta / orbit.epsilon if orbit.epsilon > 0 else math.inf
    fig.suptitle(f"{title}\nδ = {format_value(orbit.delta)}, ε = {format_value(orbit.epsilon)}, "
                 f"Sh = δ/ε = {format_value(sh)} (largest error in red)", fontsize=10)
    return _save(fig, out_png)


def write_run_figures(
    *,
    data_path: PathLike,
    trajectories_path: PathLike,
    pairs_path: PathLike,
    shadowing_path: PathLike,
    constants_path: PathLike,
    figure2_png: PathLike,
    figure3_png: PathLike,
    pairs_png: PathLike,
    orbit_png: PathLike,
    orbit_table_stem: PathLike,
    k: int,
    dataset: str,
    model: str,
) -> None:
    """Every per-(dataset, model) figure of the paper: Figures 2 and 3, the image pairs of Table 3 and the
    best-traced pseudo-orbit of Tables 4–5 (as a strip and as a CSV/Markdown/LaTeX table)."""
    from resdyn.tables import best_orbit, best_orbit_table, closest_pairs, write_table

    run = f"{dataset} / {model}"
    figure_class_expansive(pairs_path, trajectories_path, figure2_png, "E_mean",
                           f"Figure 2 ({run}): closest pairs by mean distance over depths")
    figure_class_expansive(pairs_path, trajectories_path, figure3_png, "E",
                           f"Figure 3 ({run}): closest pairs by max distance over depths")
    plot_closest_pairs(closest_pairs(pairs_path, trajectories_path, k), data_path, pairs_png,
                       f"Table 3 ({run}): closest different-class pairs")
    orbit = best_orbit(shadowing_path, constants_path, trajectories_path)
    plot_best_orbit(orbit, data_path, orbit_png, f"Tables 4-5 ({run}): best-traced pseudo-orbit")
    write_table(best_orbit_table(orbit, dataset, model), orbit_table_stem)
