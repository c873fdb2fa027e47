"""The paper's tables: Table 1 (performance), Table 2 (constants), Table 3 (closest class pairs) and the
best-traced pseudo-orbit of Tables 4–5, each as a DataFrame and written as CSV, Markdown and LaTeX.

Inputs are the stage outputs fixed in docs/ARCHITECTURE.md and method §6–7: ``metrics.json``,
``constants.json``, ``pairs.h5``, ``trajectories.h5`` and ``shadowing.h5``. Every table keeps raw values
in its cells (Python ints and floats, ``None`` for a missing value); only :func:`write_table` formats
them, so the CSV keeps full precision while Markdown and LaTeX read like the paper (4 decimals, and
scientific notation with 3 significant digits below 10⁻³). A missing value is written "n/a" everywhere.

Row conventions: ``pairs.h5`` /E/pair and ``shadowing.h5`` /orbits and /shadow_image hold *rows* of
``trajectories.h5`` (the order of ``/probs``), while ``constants.json`` holds test indices (its
``g_expansive.pair``, ``g_shadowing.paper.orbit_start`` and ``shadow_image``, as resdyn.constants writes
them); ``trajectories.h5`` /index maps a row to its test index and /order_in_class to its 1-based order
within its class (method §5), which is what the tables show.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from resdyn.artifacts import Constants, Metrics, Pairs, SampleSizeSummary, Shadowing, Trajectories
from resdyn.io import InputError, atomic_output
from resdyn.paper_reference import PAPER_TABLE1, PAPER_TABLE2

PathLike = str | os.PathLike
ResultKey = tuple[str, str]  # (dataset, model) as in the config

PAPER_SUFFIX = " [paper]"
NOT_AVAILABLE = "n/a"
# Below this magnitude the paper switches to scientific notation (Table 2: 0.0031 but 4.14×10^-5).
SCIENTIFIC_BELOW = 1e-3
SCIENTIFIC_FROM = 1e5


# ----------------------------------------------------------------------------------------------------
# Formatting and writing


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, (float, np.floating)) and math.isnan(value))


@dataclass(frozen=True)
class Band:
    """A band [low, high] in one cell (method §3.6: the 5–95 % band over subsets): "[0.1234, 0.2345]" in
    Markdown and LaTeX (each end as :func:`format_value`), each end at full precision in the CSV."""

    low: float
    high: float


@dataclass(frozen=True)
class MeanSd:
    """One value over ``total`` training replicates, of which ``count`` define it: the mean ± the sample
    standard deviation (ddof = 1; None for a single value) and the range [low, high] (method §3.6: the
    seed band). Written "0.9822 ± 0.0031 (0.9790–0.9853)", the range left out for a single value, with
    "(count of total)" appended when count < total; the CSV keeps full precision."""

    mean: float
    sd: float | None
    count: int
    total: int
    low: float | None = None
    high: float | None = None

    @classmethod
    def of(cls, values: Sequence[Any]) -> MeanSd | None:
        """Mean ± sd and min–max of the numbers among ``values`` (None and NaN skipped); None when there
        is none."""
        numbers = [float(v) for v in values if _is_number(v) and not _is_missing(v)]
        if not numbers:
            return None
        sd = float(np.std(numbers, ddof=1)) if len(numbers) > 1 else None
        return cls(float(np.mean(numbers)), sd, len(numbers), len(values), min(numbers), max(numbers))

    def text(self, number: Any) -> str:
        sd = NOT_AVAILABLE if self.sd is None else number(self.sd)
        out = f"{number(self.mean)} ± {sd}"
        if self.count > 1 and self.low is not None and self.high is not None:
            out += f" ({number(self.low)}–{number(self.high)})"
        return out if self.count == self.total else f"{out} ({self.count} of {self.total})"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    )


def _exact_cell(value: Any) -> str | None:
    """The text of a cell that every format writes alike (missing, bool, int); None for anything else."""
    if _is_missing(value):
        return NOT_AVAILABLE
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return None


def format_value(value: Any, latex: bool = False) -> str:
    """Human-readable cell text, as the paper prints numbers.

    None/NaN → "n/a"; integers as they are; a float x with 10⁻³ ≤ |x| < 10⁵ with 4 decimals (2.3583);
    0 as "0"; any other float in scientific notation with 3 significant digits ("4.14e-05", or
    ``$4.14\\times10^{-5}$`` when ``latex``); ±inf as "inf". Strings pass through (LaTeX-escaped when
    ``latex``).
    """
    exact = _exact_cell(value)
    if exact is not None:
        return exact
    if isinstance(value, Band):
        return f"[{format_value(value.low, latex)}, {format_value(value.high, latex)}]"
    if isinstance(value, MeanSd):
        text = value.text(lambda x: format_value(x, latex))
        return text.replace("±", r"$\pm$") if latex else text
    if isinstance(value, (float, np.floating)):
        x = float(value)
        if math.isinf(x):
            text = "inf" if x > 0 else "-inf"
            return (r"$\infty$" if x > 0 else r"$-\infty$") if latex else text
        if x == 0.0:
            return "0"
        if SCIENTIFIC_BELOW <= abs(x) < SCIENTIFIC_FROM:
            return f"{x:.4f}"
        mantissa, exponent = f"{x:.2e}".split("e")
        if latex:
            return f"${mantissa}\\times10^{{{int(exponent)}}}$"
        return f"{mantissa}e{exponent}"
    return latex_escape(str(value)) if latex else str(value)


def _csv_value(value: Any) -> str:
    """Full-precision cell text for the CSV (shortest repr that round-trips), "n/a" when missing."""
    exact = _exact_cell(value)
    if exact is not None:
        return exact
    if isinstance(value, Band):
        return f"[{_csv_value(value.low)}, {_csv_value(value.high)}]"
    if isinstance(value, MeanSd):
        return value.text(_csv_value)
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    return str(value)


_LATEX_SPECIALS = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}
_LATEX_UNICODE = {
    "ε": r"$\varepsilon$",
    "δ": r"$\delta$",
    "≥": r"$\geq$",
    "≤": r"$\leq$",
    "×": r"$\times$",
    "−": r"$-$",
    "‖": r"$\|$",
    "Ē": r"$\bar{E}$",
    "∞": r"$\infty$",
}


def latex_escape(text: str) -> str:
    """Escape LaTeX specials and write the Greek letters and symbols used in our headers as math."""
    return "".join(_LATEX_SPECIALS.get(ch, _LATEX_UNICODE.get(ch, ch)) for ch in text)


# Hand-written LaTeX for headers whose plain-text form would escape badly.
_LATEX_HEADERS = {
    "Lip_FC": r"$\mathrm{Lip}_{FC}$",
    "Lip_FC" + PAPER_SUFFIX: r"$\mathrm{Lip}_{FC}$ [paper]",
    "Lip(g) with softmax": r"$\mathrm{Lip}(g)$ with softmax",
    "Sh best-tracing": r"$Sh$ best-tracing",
    "Sh" + PAPER_SUFFIX: r"$Sh$ [paper]",
    "Sh curve": r"$Sh$ curve",
    "T_g ≥ Sh/Lip_FC": r"$T_g \geq Sh/\mathrm{Lip}_{FC}$",
    "T_g" + PAPER_SUFFIX: r"$T_g$ [paper]",
    "T_g ≥ Sh_curve/Lip_FC": r"$T_g \geq Sh_{curve}/\mathrm{Lip}_{FC}$",
    "T_g ≥ Sh/Lip(g)": r"$T_g \geq Sh/\mathrm{Lip}(g)$",
    "T_g ≥ Sh_curve/Lip(g)": r"$T_g \geq Sh_{curve}/\mathrm{Lip}(g)$",
    "t*": r"$t^*$",
    "Hop δ_{t−1}": r"Hop $\delta_{t-1}$",
    "‖p_t(b*) − q_t‖": r"$\|p_t(b^*) - q_t\|$",
}


def write_table(df: pd.DataFrame, stem: PathLike) -> list[Path]:
    """Write ``{stem}.csv`` (full precision), ``{stem}.md`` (pandas ``to_markdown``) and ``{stem}.tex``
    (pandas ``to_latex``, booktabs), each atomically through :func:`resdyn.io.atomic_output`.

    Numbers in Markdown and LaTeX follow :func:`format_value`; missing values are "n/a" in all three.
    Returns the three paths.
    """
    stem = Path(stem)
    paths = [stem.with_name(stem.name + ext) for ext in (".csv", ".md", ".tex")]
    csv_frame = df.map(_csv_value)
    md_frame = df.map(format_value)
    tex_frame = df.map(lambda v: format_value(v, latex=True))
    tex_frame.columns = [_LATEX_HEADERS.get(str(c), latex_escape(str(c))) for c in df.columns]
    with atomic_output(paths[0]) as tmp:
        csv_frame.to_csv(tmp, index=False)
    numeric = [_numeric_column(df[c]) for c in df.columns]
    with atomic_output(paths[1]) as tmp:
        # disable_numparse keeps our number strings verbatim (tabulate would drop "0.9870"'s last zero).
        align = tuple("right" if is_number else "left" for is_number in numeric)
        tmp.write_text(md_frame.to_markdown(index=False, disable_numparse=True, colalign=align) + "\n")
    with atomic_output(paths[2]) as tmp:
        column_format = "".join("r" if is_number else "l" for is_number in numeric)
        tmp.write_text(tex_frame.to_latex(index=False, escape=False, column_format=column_format))
    return paths


def _numeric_column(column: pd.Series) -> bool:
    values = [v for v in column if not _is_missing(v)]
    return bool(values) and all(
        isinstance(v, (int, float, np.integer, np.floating, Band, MeanSd)) for v in values
    )


def _frame(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> pd.DataFrame:
    # object dtype keeps ints as ints and None as None (a float column would turn t* = 3 into 3.0).
    return pd.DataFrame([[row.get(c) for c in columns] for row in rows], columns=list(columns), dtype=object)


# ----------------------------------------------------------------------------------------------------
# Reading stage outputs


# ----------------------------------------------------------------------------------------------------
# Table 1


TABLE1_METRICS = [
    ("precision", "Precision"),
    ("recall", "Recall"),
    ("f1", "F1 (macro)"),
    ("accuracy", "Accuracy"),
    ("loss", "Test loss"),
]


Source = Mapping[str, Any]
"""A result file's contents, loaded by the stage layer (an artifact or a plain mapping)."""

PaperRows = Mapping[ResultKey, tuple[str, str] | None]
"""(dataset, model) → the paper's (dataset, model) that run stands for, or None (config ``paper_row``,
:func:`resdyn.paper_reference.paper_key`)."""


def _paper_row(table: Mapping[tuple[str, str], Mapping[str, Any]], rows: PaperRows | None, key: Any) -> dict:
    """The paper's published row for the run ``key`` (dataset, model, …), or {} when it has none."""
    paper = None if rows is None else rows.get(tuple(key[:2]))
    return dict(table[paper]) if paper is not None else {}


REPLICATES = "Replicates"
"""Column of Tables 1–2 giving the number of training replicates K when some run has K > 1."""


def _replicates(source: Source | Sequence[Source]) -> list[Source]:
    """One run's sources, one per training replicate (a list or tuple), or a single source."""
    return list(source) if isinstance(source, (list, tuple)) else [source]


def _run_name(what: str, key: Sequence[str], k: int, total: int) -> str:
    return f"{what} of {'/'.join(map(str, key))}" + (f" replicate {k}" if total > 1 else "")


def _combine_replicates(cells: Sequence[Mapping[str, Any]], listed: Sequence[str] = ()) -> dict[str, Any]:
    """One table row from the rows of a run's K training replicates (method §3.6): numbers become
    :class:`MeanSd` over the replicates that define them; bands the envelope [min low, max high];
    identifiers (``listed`` columns: a pair, a depth) every replicate's value joined by "; "; the run's
    names, the paper's columns and cells no replicate defines as a number keep the first replicate's."""
    if len(cells) == 1:
        return dict(cells[0])
    out: dict[str, Any] = {}
    for column in cells[0]:
        values = [cell.get(column) for cell in cells]
        bands = [v for v in values if isinstance(v, Band)]
        if column in listed:
            out[column] = "; ".join(format_value(v) for v in values)
        elif column in ("Dataset", "Model") or column.endswith(PAPER_SUFFIX):
            out[column] = values[0]
        elif bands:
            out[column] = Band(min(b.low for b in bands), max(b.high for b in bands))
        elif any(_is_number(v) for v in values):
            out[column] = MeanSd.of(values)
        else:
            out[column] = values[0]
    return out


def table1(
    metrics: Mapping[ResultKey, Source | Sequence[Source]], paper_rows: PaperRows | None = None
) -> pd.DataFrame:
    """Table 1 of the paper (§3 "Training ResNets"): macro precision, recall and F1 (scikit-learn),
    accuracy and mean test cross-entropy per (dataset, model), from each ``metrics.json``.

    ``metrics`` maps (dataset, model) to a loaded ``metrics.json``, or to a list of them,
    one per training replicate (method §3.6); rows keep that order. With more than one replicate a
    "Replicates" column gives K and each metric is the mean ± sd over the replicates (:class:`MeanSd`);
    with one the table is exactly the single-run table.
    With ``paper_rows`` (config ``paper_reference``) each metric the paper reports gets a "<metric> [paper]"
    column beside ours, from the paper's row each run stands for (:mod:`resdyn.paper_reference`; the
    paper reports no accuracy, and runs that stand for no row get n/a).
    """
    paper_reference = paper_rows is not None
    runs = {key: _replicates(source) for key, source in metrics.items()}
    replicated = any(len(sources) > 1 for sources in runs.values())
    rows, columns = [], ["Dataset", "Model", *([REPLICATES] if replicated else [])]
    for _, label in TABLE1_METRICS:
        columns.append(label)
        if paper_reference and label != "Accuracy":
            columns.append(label + PAPER_SUFFIX)
    for key, sources in runs.items():
        paper = _paper_row(PAPER_TABLE1, paper_rows, key)
        cells = []
        for k, source in enumerate(sources, 1):
            data = Metrics.from_source(source, _run_name("metrics", key, k, len(sources)))
            cell: dict[str, Any] = {"Dataset": key[0], "Model": key[1]}
            for metric, label in TABLE1_METRICS:
                cell[label] = data.number(metric)
                cell[label + PAPER_SUFFIX] = paper.get(metric)
            cells.append(cell)
        rows.append(_combine_replicates(cells) | {REPLICATES: len(sources)})
    return _frame(rows, columns)


# ----------------------------------------------------------------------------------------------------
# Table 2

TABLE2_COLUMNS = [
    # (column, constants.json key or None for a derived cell, paper key or None)
    ("g-expansive", "g_expansive.value", "g_expansive"),
    ("pair (i, j)", None, None),
    ("t*", "g_expansive.t_star", None),
    ("Sh best-tracing", "g_shadowing.paper.value", "g_shadowing"),
    ("ε", "g_shadowing.paper.epsilon", "epsilon"),
    ("δ", "g_shadowing.paper.delta", "delta"),
    ("Sh curve", "g_shadowing.curve.value", None),
    ("Lip_FC", "lip.fc", "lip_fc"),
    ("Lip(g) with softmax", "lip.g", None),
    ("T_g ≥ Sh/Lip_FC", "t_g_lower.paper", "t_g_lower"),
    ("T_g ≥ Sh_curve/Lip_FC", "t_g_lower.curve", None),
    ("T_g ≥ Sh/Lip(g)", "t_g_lower.paper_lip_g", None),
    ("T_g ≥ Sh_curve/Lip(g)", "t_g_lower.curve_lip_g", None),
]
# The paper's Table 2 names for the columns that carry a "[paper]" twin.
_TABLE2_PAPER_LABELS = {
    "g-expansive": "g-expansive",
    "Sh best-tracing": "Sh",
    "ε": "ε",
    "δ": "δ",
    "Lip_FC": "Lip_FC",
    "T_g ≥ Sh/Lip_FC": "T_g",
}


def _pair_cell(data: Constants) -> str | None:
    """'i (class_i), j (class_j)' for the g-expansive pair (test indices), '(i, j)' without classes."""
    pair = data.get("g_expansive.pair")
    if pair is None:
        return None
    if not isinstance(pair, (list, tuple)) or len(pair) != 2:
        raise InputError(f"{data.name}: key 'g_expansive.pair' must be [i, j] or null, got {pair!r}")
    classes = data.data["g_expansive"].get("classes")
    if isinstance(classes, (list, tuple)) and len(classes) == 2 and None not in classes:
        return f"{pair[0]} ({classes[0]}), {pair[1]} ({classes[1]})"
    return f"({pair[0]}, {pair[1]})"


# Columns at the common reference size (method §3.6): (label, sample_size.json estimate).
TABLE2_REFERENCE = [
    ("g-expansive", "g_expansive"),
    ("Sh best-tracing", "sh_paper"),
    ("Sh curve", "sh_curve"),
]


def reference_size(summaries: Iterable[SampleSizeSummary]) -> tuple[int, tuple[float, float]]:
    """The reference size n_ref and the band quantiles the summaries share; InputError when they differ
    (every run of one table must be compared at the same size)."""
    found = {
        (s.number("reference.n", integer=True), tuple(float(q) for q in s.get("band"))): s.name
        for s in summaries
    }
    if len(found) != 1:
        raise InputError(f"sample-size summaries disagree on the reference size or band: {sorted(found)}")
    return next(iter(found))


def reference_columns(estimates: Sequence[tuple[str, str]], n_ref: int, band: Sequence[float]) -> list[str]:
    """Headers of the reference-size columns: "<label> @<n_ref>" (the median) and "<label> @<n_ref>
    5–95%" (the band) for each estimate."""
    band_text = f"{100 * band[0]:g}–{100 * band[1]:g}%"
    return [name for label, _ in estimates for name in (f"{label} @{n_ref}", f"{label} @{n_ref} {band_text}")]


def reference_cells(
    summary: SampleSizeSummary, estimates: Sequence[tuple[str, str]], n_ref: int, band: Sequence[float]
) -> dict[str, Any]:
    """The reference-size cells of one run (method §3.6): per estimate its median over the B subsets of
    n_ref images and the band as a :class:`Band`; "undefined" when no subset defines it; when the test set
    is smaller than n_ref, "n/a (N = … < n_ref)" and n/a, never an extrapolation."""
    headers = reference_columns(estimates, n_ref, band)
    cells: dict[str, Any] = {}
    n_images = summary.number("N", integer=True)
    for (_, estimate), median_column, band_column in zip(estimates, headers[::2], headers[1::2]):
        found = summary.at_reference(estimate)
        if found is None:
            cells[median_column] = f"{NOT_AVAILABLE} (N = {n_images} < {n_ref})"
            cells[band_column] = None
        elif found["median"] is None:
            cells[median_column] = UNDEFINED
            cells[band_column] = None
        else:
            cells[median_column] = float(found["median"])
            cells[band_column] = Band(float(found["low"]), float(found["high"]))
    return cells


def _summaries(
    sample_size: Mapping[Any, Source | Sequence[Source]] | None, keys: Iterable[Any]
) -> dict[Any, list[SampleSizeSummary]]:
    """Every run's sample_size.json, loaded (one per replicate); a run missing from the mapping is an
    InputError naming it."""
    if sample_size is None:
        return {}
    out = {}
    for key in keys:
        if key not in sample_size:
            raise InputError(f"no sample-size summary for {'/'.join(key)}")
        sources = _replicates(sample_size[key])
        out[key] = [
            SampleSizeSummary.from_source(source, _run_name("sample size", key, k, len(sources)))
            for k, source in enumerate(sources, 1)
        ]
    return out


def _table2_cells(data: Constants, paper: Mapping[str, Any]) -> dict[str, Any]:
    """One replicate's Table 2 cells (raw values, Lip not yet marked)."""
    row: dict[str, Any] = {"pair (i, j)": _pair_cell(data)}
    for column, json_key, paper_key in TABLE2_COLUMNS:
        if json_key is not None:
            row[column] = data.number(json_key, integer=(column == "t*"))
            if row[column] is None and data.undefined_reason(json_key):
                row[column] = UNDEFINED
        if paper_key is not None:
            row[_TABLE2_PAPER_LABELS[column] + PAPER_SUFFIX] = paper.get(paper_key)
    return row


def table2(
    constants: Mapping[ResultKey, Source | Sequence[Source]],
    paper_rows: PaperRows | None = None,
    sample_size: Mapping[ResultKey, Source | Sequence[Source]] | None = None,
) -> pd.DataFrame:
    """Table 2 of the paper (§3 "The constants of properties of dynamical systems") from each
    ``constants.json`` (method §3, §7).

    Columns: the g-expansive constant e = min over different-class pairs of max_t d_t (with its pair of
    test indices and t*); the best-tracing g-shadowing estimate Sh = δ/ε with its ε and δ; the curve
    estimate Sh_curve; Lip_FC = ‖W‖₂ and Lip(g) = ‖W‖₂/2 with the softmax; the Theorem 1 lower bounds
    T_g ≥ Sh/Lip for both Sh estimates and both Lipschitz constants. With ``paper_rows`` the paper's
    numbers stand in "[paper]" columns beside ours (its "Lip(g)" is our Lip_FC, see
    :mod:`resdyn.paper_reference`). JSON nulls become n/a; a missing key is an InputError naming the file.

    ``sample_size`` (each run's ``sample_size.json``, method §3.6) adds, after these, e, Sh best-tracing
    and Sh curve at the common reference size n_ref: the median over the B stratified subsets of n_ref
    test images ("<constant> @n_ref") and the 5–95 % band ("<constant> @n_ref 5–95%", a :class:`Band`),
    so that runs on test sets of different sizes compare; a run whose test set is smaller says so in the
    cell (:func:`reference_cells`).

    Training replicates (method §3.6): a run may map to a list of sources, one per replicate (both
    mappings alike). With more than one, a "Replicates" column gives K, every number is the mean ± sd
    over the replicates (:class:`MeanSd`), the pair and t* list each replicate's, a reference band is
    the envelope of the replicates' bands, and Lip is marked uncertified when any replicate's is. With one
    replicate each the table is exactly the single-run table.
    """
    paper_reference = paper_rows is not None
    runs = {key: _replicates(source) for key, source in constants.items()}
    replicated = any(len(sources) > 1 for sources in runs.values())
    summaries = _summaries(sample_size, runs)
    columns = ["Dataset", "Model", *([REPLICATES] if replicated else [])]
    for column, _, paper_key in TABLE2_COLUMNS:
        columns.append(column)
        if paper_reference and paper_key is not None:
            columns.append(_TABLE2_PAPER_LABELS[column] + PAPER_SUFFIX)
    if summaries:
        n_ref, band = reference_size(s for found in summaries.values() for s in found)
        columns += reference_columns(TABLE2_REFERENCE, n_ref, band)
    rows = []
    for key, sources in runs.items():
        paper = _paper_row(PAPER_TABLE2, paper_rows, key)
        datas = [
            Constants.from_source(source, _run_name("constants", key, k, len(sources)))
            for k, source in enumerate(sources, 1)
        ]
        if summaries and len(summaries[key]) != len(datas):
            raise InputError(
                f"{'/'.join(key)}: {len(datas)} constants.json files but "
                f"{len(summaries[key])} sample-size summaries"
            )
        cells = []
        for k, data in enumerate(datas):
            cell = {"Dataset": key[0], "Model": key[1]} | _table2_cells(data, paper)
            if summaries:
                cell |= reference_cells(summaries[key][k], TABLE2_REFERENCE, n_ref, band)
            cells.append(cell)
        row = _combine_replicates(cells, listed=("pair (i, j)", "t*")) | {REPLICATES: len(datas)}
        if not all(data.lip_certified for data in datas):
            for column in ("Lip_FC", "Lip(g) with softmax"):
                row[column] = f"{format_value(row[column])} {UNCERTIFIED}"
        rows.append(row)
    return _frame(rows, columns)


# ----------------------------------------------------------------------------------------------------
# Readings table (method §3.4)

READINGS_COLUMNS = [
    # (column, constants.json key or None for a derived cell)
    ("g-expansive", "g_expansive.value"),
    ("pair (i, j)", None),
    ("depth", "g_expansive.t_star"),
    ("Sh", None),
    ("ε", None),
    ("δ", None),
    ("Sh best-tracing", "g_shadowing.paper.value"),
    ("shadow = start", "g_shadowing.paper.shadow_is_start"),
    ("Sh independent", "g_shadowing.independent.value"),
    ("Sh curve", "g_shadowing.curve.value"),
    ("r(Q_low)", None),
    ("Lip_FC", "lip.fc"),
    ("Lip(g) with softmax", "lip.g"),
    ("T_g ≥ Sh/Lip_FC", None),
]
PUBLISHED = "published"
"""The Reading cell of the paper's own Table 2 row in the readings table."""

_PAIRING_KEY = {"best_tracing": "paper", "independent": "independent"}


def reading_choices(reading: Mapping[str, Any]) -> str:
    """A reading's choices in one cell: 'τ 1000/1, blocks, min, distinct, independent, true labels'."""
    temperature = reading.get("temperature", {})
    tau_e, tau_s = temperature.get("expansive", 1.0), temperature.get("shadowing", 1.0)
    tau = f"τ {tau_e:g}" if tau_e == tau_s else f"τ {tau_e:g}/{tau_s:g}"
    parts = [reading.get(k) for k in ("depths", "over_depths", "orbits", "pairing")]
    return ", ".join([tau, *map(str, parts), f"{reading.get('labels')} labels"])


_SAMPLE_SIZE_HEADLINE = {"best_tracing": "sh_paper", "independent": "sh_independent"}


def readings_table(
    constants: Mapping[tuple[Any, ...], Source],
    paper_rows: PaperRows | None = None,
    sample_size: Mapping[tuple[Any, ...], Source] | None = None,
) -> pd.DataFrame:
    """The readings table: one row per run from each loaded ``constants.json``, keyed (dataset, model,
    reading) or, with training replicates, (dataset, model, reading, replicate): a "Replicate" column
    then gives k and the rows of one (dataset, model) are ordered as the mapping lists them.

    Columns: the reading's choices; its g-expansive constant (the reading's statistic over depths) with the
    pair and the depth that attains it; its headline Sh with ε and δ (the reading's ``pairing``), then
    both pairings' Sh side by side, whether the best-traced orbit's shadow is its own start (method §3.2
    caveat), Sh_curve and r at the window's lower end; Lip_FC, Lip(g) (with the reading's τ) and T_g ≥
    Sh/Lip_FC for the headline Sh. With ``paper_rows`` a row "published" after the runs of each (dataset,
    model) that stands for a row of the paper gives its Table 2 numbers (:mod:`resdyn.paper_reference`)
    in the matching columns.

    ``sample_size`` (each run's ``sample_size.json``, keyed alike; method §3.6) adds e, the headline Sh
    and Sh curve at the common reference size: median and 5–95 % band over the stratified subsets, as
    in :func:`table2` (the published rows: n/a).
    """
    replicated = any(len(key) > 3 for key in constants)
    columns = ["Dataset", "Model", "Reading", *(["Replicate"] if replicated else [])]
    columns += ["Choices", *(c for c, _ in READINGS_COLUMNS)]
    summaries = {key: found[0] for key, found in _summaries(sample_size, constants).items()}
    if summaries:
        n_ref, band = reference_size(summaries.values())
        columns += reference_columns(_readings_reference("best_tracing"), n_ref, band)
    rows: list[dict[str, Any]] = []
    published_after: dict[tuple[str, str], int] = {}
    for key, source in constants.items():
        dataset, model, reading = key[:3]
        data = Constants.from_source(source, f"constants of {'/'.join(map(str, key))}")
        choices = data.get("reading")
        pairing = _PAIRING_KEY[data.get("g_shadowing.pairing")]
        row: dict[str, Any] = {
            "Dataset": dataset,
            "Model": model,
            "Reading": reading,
            **({"Replicate": key[3]} if replicated else {}),
            "Choices": reading_choices(choices),
            "pair (i, j)": _pair_cell(data),
            "Sh": data.number(f"g_shadowing.{pairing}.value"),
            "ε": data.number(f"g_shadowing.{pairing}.epsilon"),
            "δ": data.number(f"g_shadowing.{pairing}.delta"),
            "r(Q_low)": (data.get("g_shadowing.curve.at_lower_quantile") or {}).get("value"),
            "T_g ≥ Sh/Lip_FC": data.number(f"t_g_lower.{pairing}"),
        }
        for column, json_key in READINGS_COLUMNS:
            if json_key is None:
                continue
            value = data.get(json_key)
            row[column] = (
                value if isinstance(value, bool) else data.number(json_key, integer=column == "depth")
            )
        for column, json_key in (
            ("g-expansive", "g_expansive.value"),
            ("Sh", f"g_shadowing.{pairing}.value"),
        ):
            if row[column] is None and data.undefined_reason(json_key):
                row[column] = UNDEFINED
        if not data.lip_certified:
            for column in ("Lip_FC", "Lip(g) with softmax"):
                row[column] = f"{format_value(row[column])} {UNCERTIFIED}"
        if summaries:
            estimates = _readings_reference(data.get("g_shadowing.pairing"))
            row |= reference_cells(summaries[key], estimates, n_ref, band)
        rows.append(row)
        published_after[(dataset, model)] = len(rows)
    if paper_rows is not None:
        for (dataset, model), position in sorted(published_after.items(), key=lambda kv: -kv[1]):
            paper = _paper_row(PAPER_TABLE2, paper_rows, (dataset, model))
            if not paper:
                continue
            rows.insert(
                position,
                {
                    "Dataset": dataset,
                    "Model": model,
                    "Reading": PUBLISHED,
                    "Choices": "the paper's Table 2",
                    "g-expansive": paper["g_expansive"],
                    "Sh": paper["g_shadowing"],
                    "ε": paper["epsilon"],
                    "δ": paper["delta"],
                    "Lip_FC": paper["lip_fc"],
                    "T_g ≥ Sh/Lip_FC": paper["t_g_lower"],
                },
            )
    return _frame(rows, columns)


def _readings_reference(pairing: str) -> list[tuple[str, str]]:
    """The readings table's reference-size estimates: e, the reading's headline Sh, Sh curve."""
    return [("g-expansive", "g_expansive"), ("Sh", _SAMPLE_SIZE_HEADLINE[pairing]), ("Sh curve", "sh_curve")]


UNDEFINED = "undefined"
"""Cell text of a constant that is undefined for the data (JSON null with an ``undefined_reason``)."""

UNCERTIFIED = "(uncertified)"
"""Mark after a Lipschitz value whose upper-bound certificate failed (``lip.certified`` false)."""


# ----------------------------------------------------------------------------------------------------
# Table 3


def smallest_class_pairs(E: np.ndarray, k: int) -> list[tuple[int, int]]:
    """The ``k`` class pairs (a, b), a < b, with the smallest E[a, b], smallest first.

    E is the symmetric C×C matrix of method §3.1 (E[a, b] = min over pairs with y_i = a, y_j = b of
    max_t d_t(i, j)); NaN entries (no such pair) are skipped, the diagonal is never used, and ties go to
    the smaller (a, b). Fewer than ``k`` pairs come back when fewer are finite.
    """
    E = np.asarray(E, dtype=np.float64)
    if E.ndim != 2 or E.shape[0] != E.shape[1]:
        raise ValueError(f"E must be a square C×C matrix, got shape {E.shape}")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    a, b = np.triu_indices(E.shape[0], k=1)
    values = E[a, b]
    keep = ~np.isnan(values)
    a, b, values = a[keep], b[keep], values[keep]
    order = np.lexsort((b, a, values))[:k]  # last key is primary: value, then a, then b
    return [(int(a[o]), int(b[o])) for o in order]


@dataclass
class ClosestPair:
    """One Table 3 entry: the different-class pair realising E[a, b], oriented so image a is of class a."""

    class_a: str
    class_b: str
    row_a: int  # rows of trajectories.h5
    row_b: int
    index_a: int  # test indices
    index_b: int
    order_a: int  # 1-based order within its class
    order_b: int
    t_star: int  # depth where the pair is farthest apart (0 = stem output, t = after block t)
    distance: float  # E[a, b]


def closest_pairs(pairs: Pairs, trajectories: Trajectories, k: int) -> list[ClosestPair]:
    """The K closest different-class pairs of one (dataset, model) (Table 3, §4): the ``k`` smallest
    E[a, b] of ``pairs.h5`` (/E/value, /E/pair, /E/t_star) with the rows' test index and order within
    class from ``trajectories.h5``.

    The classes of the pair's rows (true or predicted, as the ``labels`` attr of pairs.h5 says) must be
    {a, b}; otherwise the two files do not belong together and an InputError says so.
    """
    meta = trajectories
    pairs_path, trajectories_path = pairs.path, meta.path
    E = np.asarray(pairs.result.E, dtype=np.float64)
    E_pair = np.asarray(pairs.result.E_pair, dtype=np.int64)
    E_t_star = np.asarray(pairs.result.E_t_star, dtype=np.int64)
    C = E.shape[0]
    if len(meta.class_names) != C:
        raise InputError(
            f"{trajectories_path}: {len(meta.class_names)} class_names but {pairs_path} has C = {C}"
        )
    labels = meta.class_labels(pairs.labels)
    out = []
    for a, b in smallest_class_pairs(E, k):
        i, j = (int(v) for v in E_pair[a, b])
        n_rows = labels.shape[0]
        if not (0 <= i < n_rows and 0 <= j < n_rows):
            raise InputError(f"{pairs_path}: /E/pair[{a}, {b}] = ({i}, {j}) outside 0..{n_rows - 1}")
        if (labels[i], labels[j]) == (b, a):
            i, j = j, i
        elif (labels[i], labels[j]) != (a, b):
            raise InputError(
                f"{pairs_path}: /E/pair[{a}, {b}] = ({i}, {j}) has classes ({labels[i]}, "
                f"{labels[j]}) in {trajectories_path}, expected {{{a}, {b}}}"
            )
        out.append(
            ClosestPair(
                meta.class_names[a],
                meta.class_names[b],
                i,
                j,
                int(meta.index[i]),
                int(meta.index[j]),
                int(meta.order_in_class[i]),
                int(meta.order_in_class[j]),
                int(E_t_star[a, b]),
                float(E[a, b]),
            )
        )
    return out


TABLE3_COLUMNS = [
    "Dataset",
    "Model",
    "Rank",
    "Class a",
    "Class b",
    "Order a",
    "Order b",
    "Test index a",
    "Test index b",
    "n-th block (t*)",
    "Distance",
]


def table3(sources: Mapping[ResultKey, tuple[Pairs, Trajectories]], k: int) -> pd.DataFrame:
    """Table 3 of the paper (§4): per (dataset, model), the ``k`` class pairs with the smallest E[a, b],
    with each image's order within its class (and test index), t* (the depth, 0 = stem output, where the
    pair's distance is largest) and the distance E[a, b].

    ``sources`` maps (dataset, model) to its loaded (pairs.h5, trajectories.h5).
    """
    rows = []
    for key, (pairs, trajectories) in sources.items():
        for rank, pair in enumerate(closest_pairs(pairs, trajectories, k), start=1):
            rows.append(
                {
                    "Dataset": key[0],
                    "Model": key[1],
                    "Rank": rank,
                    "Class a": pair.class_a,
                    "Class b": pair.class_b,
                    "Order a": pair.order_a,
                    "Order b": pair.order_b,
                    "Test index a": pair.index_a,
                    "Test index b": pair.index_b,
                    "n-th block (t*)": pair.t_star,
                    "Distance": pair.distance,
                }
            )
    return _frame(rows, TABLE3_COLUMNS)


# ----------------------------------------------------------------------------------------------------
# Tables 4–5: the best-traced pseudo-orbit


@dataclass
class BestOrbit:
    """The best-tracing pseudo-orbit ξ = (a_0..a_T) and its shadowing image b* (method §3.2, Tables 4–5)."""

    rows: np.ndarray  # (T+1,) trajectories.h5 rows a_t
    test_index: np.ndarray  # (T+1,)
    classes: list[str]  # true class of a_t
    orders: np.ndarray  # (T+1,) order within class of a_t
    g_classes: list[str]  # argmax q_t = argmax p_t(a_t): the class g assigns at depth t
    hops: np.ndarray  # (T,) δ_t = d_{t+1}(a_t, a_{t+1})
    shadow_row: int
    shadow_index: int
    shadow_class: str
    shadow_order: int
    shadow_g_classes: list[str]  # argmax p_t(b*)
    errors: np.ndarray  # (T+1,) ‖p_t(b*) − q_t‖₂; ε = max_t
    epsilon: float
    delta: float

    @property
    def T(self) -> int:
        return int(self.hops.shape[0])


def best_orbit(shadowing: Shadowing, constants: Constants, trajectories: Trajectories) -> BestOrbit:
    """The best-traced pseudo-orbit of one (dataset, model): the orbit that starts at the test image
    ``g_shadowing.paper.orbit_start`` of ``constants.json``, read from ``shadowing.h5`` (/orbits, /hops,
    /delta, /epsilon, /shadow_image, indexed by trajectory row), with labels, orders and probabilities
    from ``trajectories.h5``.

    Per depth it also recomputes ‖p_t(b*) − q_t‖₂ with q_t = p_t(a_t) in float64, whose maximum over t
    is the shadowing error ε(ξ) of method §3.2. The files must agree: the orbit starts at its own row
    and the ``shadow_image`` of constants.json (when not null) is the test index of /shadow_image.
    """
    meta = trajectories
    constants_path, trajectories_path = constants.name, meta.path
    start_index = constants.number("g_shadowing.paper.orbit_start", integer=True)
    if start_index is None:
        raise InputError(f"{constants_path}: key 'g_shadowing.paper.orbit_start' is null: no best orbit")
    matches = np.flatnonzero(meta.index == start_index)
    if matches.size != 1:
        raise InputError(
            f"{constants_path}: orbit_start {start_index} is not a test index of {trajectories_path} "
            f"(found {matches.size} times in /index)"
        )
    start = int(matches[0])
    shadowing_path = shadowing.path
    n_orbits, depths = shadowing.orbits.shape
    if n_orbits != meta.labels.shape[0]:
        raise InputError(
            f"{shadowing_path}: {n_orbits} orbits, but {trajectories_path} has {meta.labels.shape[0]} rows"
        )
    rows = shadowing.orbits[start]
    hops = shadowing.hops[start]
    delta = float(shadowing.delta[start])
    epsilon = float(shadowing.epsilon[start])
    shadow_row = int(shadowing.shadow_image[start])
    if rows[0] != start:
        raise InputError(
            f"{shadowing_path}: /orbits[{start}, 0] = {rows[0]}, but an orbit starts at its own row"
        )
    if meta.T != depths - 1:
        raise InputError(
            f"{trajectories_path}: T = {meta.T}, but {shadowing_path} has orbits of T = {depths - 1}"
        )
    n_rows = meta.labels.shape[0]
    for row in list(rows) + [shadow_row]:
        if not 0 <= row < n_rows:
            raise InputError(f"{shadowing_path}: row {row} outside 0..{n_rows - 1} of {trajectories_path}")
    stated_shadow = constants.number("g_shadowing.paper.shadow_image", integer=True)
    if stated_shadow is not None and stated_shadow != int(meta.index[shadow_row]):
        raise InputError(
            f"{constants_path}: shadow_image {stated_shadow}, but {shadowing_path} gives test "
            f"index {int(meta.index[shadow_row])} for the orbit starting at {start_index}"
        )
    q = meta.probs[rows, np.arange(depths)]
    shadow = meta.probs[shadow_row]
    names = meta.class_names
    return BestOrbit(
        rows=rows,
        test_index=meta.index[rows],
        classes=[names[c] for c in meta.labels[rows]],
        orders=meta.order_in_class[rows],
        g_classes=[names[c] for c in q.argmax(axis=1)],
        hops=hops,
        shadow_row=shadow_row,
        shadow_index=int(meta.index[shadow_row]),
        shadow_class=names[meta.labels[shadow_row]],
        shadow_order=int(meta.order_in_class[shadow_row]),
        shadow_g_classes=[names[c] for c in shadow.argmax(axis=1)],
        errors=np.linalg.norm(shadow - q, axis=1),
        epsilon=epsilon,
        delta=delta,
    )


BEST_ORBIT_COLUMNS = [
    "Dataset",
    "Model",
    "Image",
    "Test index",
    "Class",
    "Order in class",
    "g class at t",
    "Hop δ_{t−1}",
    "g class of b* at t",
    "‖p_t(b*) − q_t‖",
]


def best_orbit_table(orbit: BestOrbit, dataset: str, model: str) -> pd.DataFrame:
    """Tables 4–5 as numbers: one row per orbit image a_t (t = 0..T) with its test index, class, order
    within class, the class g assigns at depth t, the hop δ_{t−1} = d_t(a_{t−1}, a_t) that led to it,
    b*'s class at depth t and the error ‖p_t(b*) − q_t‖₂; a last row for b* whose error cell is ε(ξ)."""
    rows = []
    for t in range(orbit.T + 1):
        rows.append(
            {
                "Dataset": dataset,
                "Model": model,
                "Image": f"a_{t}",
                "Test index": int(orbit.test_index[t]),
                "Class": orbit.classes[t],
                "Order in class": int(orbit.orders[t]),
                "g class at t": orbit.g_classes[t],
                "Hop δ_{t−1}": float(orbit.hops[t - 1]) if t > 0 else None,
                "g class of b* at t": orbit.shadow_g_classes[t],
                "‖p_t(b*) − q_t‖": float(orbit.errors[t]),
            }
        )
    rows.append(
        {
            "Dataset": dataset,
            "Model": model,
            "Image": "b*",
            "Test index": orbit.shadow_index,
            "Class": orbit.shadow_class,
            "Order in class": orbit.shadow_order,
            "‖p_t(b*) − q_t‖": orbit.epsilon,
        }
    )
    return _frame(rows, BEST_ORBIT_COLUMNS)


def concat_tables(frames: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """Stack per-(dataset, model) tables of the same columns, keeping raw values (object dtype)."""
    frames = list(frames)
    if not frames:
        raise ValueError("no tables to stack")
    return pd.concat(frames, ignore_index=True).astype(object)


# ----------------------------------------------------------------------------------------------------
# Rank correlation of the constants with measured robustness across runs (issue 27 item 3)

CORRELATION_COLUMNS = ["Constant", "Measure", "ρ", "CI low", "CI high", "Runs", "Bootstrap used", "Reason"]

MIN_RUNS_FOR_INTERVAL = 6
"""The fewest runs that get a bootstrap interval. A resample of n runs holds about 0.63·n distinct runs, so
below 6 the resampled ρ takes a handful of values and the percentile interval collapses (4 runs of
configs/mnist5k.yaml gave [1, 1] for a ρ of 1): ρ is still given, the interval is not."""


def _rank_correlation(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman's ρ along the last axis: Pearson's correlation of the average ranks (scipy's definition);
    NaN where either row's ranks are all equal."""
    from scipy.stats import rankdata

    rx = rankdata(x, axis=-1)
    ry = rankdata(y, axis=-1)
    rx = rx - rx.mean(axis=-1, keepdims=True)
    ry = ry - ry.mean(axis=-1, keepdims=True)
    sxx, syy = (rx * rx).sum(axis=-1), (ry * ry).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (rx * ry).sum(axis=-1) / np.sqrt(sxx * syy)
    return np.where((sxx > 0) & (syy > 0), np.clip(rho, -1.0, 1.0), np.nan)


def robustness_correlations(
    runs: pd.DataFrame,
    constants: Sequence[str],
    measures: Sequence[str],
    *,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> pd.DataFrame:
    """Spearman's ρ between every constant and every robustness measure across runs, with a bootstrap
    interval.

    Args:
        runs: one row per run (models × epochs × replicates × datasets); columns include ``constants``
            (e.g. e, Sh paper, Sh curve, Lip_FC, T_g under each reading) and ``measures`` (e.g. clean
            accuracy, PGD accuracy at an ε, the median minimal perturbation). Missing values (None/NaN)
            drop that run from that pair only.
        n_boot: bootstrap resamples of the runs (with replacement). seed: ``numpy.random.default_rng(seed)``
            draws them, the same resamples for every pair of the same runs. level: the interval's coverage.

    Returns:
        One row per (constant, measure): ρ (average ranks for ties, as scipy.stats.spearmanr), the
        percentile bootstrap interval (resamples in which either column is constant have no ρ and are left
        out; "Bootstrap used" counts the rest), the number of runs, and a reason where ρ is NaN: fewer than
        3 runs, or a column whose values are all tied (its ranks carry no order). The interval is NaN too,
        with a reason, below :data:`MIN_RUNS_FOR_INTERVAL` runs and when fewer than half the resamples give
        a ρ.
    """
    if not 0 < level < 1:
        raise InputError(f"level={level} must be in (0, 1)")
    missing = [c for c in (*constants, *measures) if c not in runs.columns]
    if missing:
        raise InputError(f"robustness correlations: columns {missing} not in {list(runs.columns)}")
    rows = []
    for constant in constants:
        for measure in measures:
            pair = runs[[constant, measure]].apply(pd.to_numeric, errors="coerce").dropna()
            x, y = pair[constant].to_numpy(float), pair[measure].to_numpy(float)
            n = len(pair)
            row = {"Constant": constant, "Measure": measure, "ρ": math.nan, "CI low": math.nan}
            row |= {"CI high": math.nan, "Runs": n, "Bootstrap used": 0, "Reason": None}
            if n < 3:
                row["Reason"] = f"only {n} run(s) with both values; ρ needs at least 3"
            elif np.ptp(x) == 0 or np.ptp(y) == 0:
                tied = constant if np.ptp(x) == 0 else measure
                row["Reason"] = f"all {n} runs tie on {tied}: no ranking to correlate"
            else:
                row["ρ"] = float(_rank_correlation(x, y))
                row |= _bootstrap_interval(x, y, n_boot=n_boot, seed=seed, level=level)
            rows.append(row)
    return pd.DataFrame(rows, columns=CORRELATION_COLUMNS)


def _bootstrap_interval(
    x: np.ndarray, y: np.ndarray, *, n_boot: int, seed: int, level: float
) -> dict[str, Any]:
    """The percentile bootstrap interval of Spearman's ρ(x, y) over ``n_boot`` resamples of the runs drawn by
    ``default_rng(seed)``, as the cells {CI low, CI high, Bootstrap used} of a correlation row; or, with
    fewer than :data:`MIN_RUNS_FOR_INTERVAL` runs or fewer than half the resamples giving a ρ, no interval
    and a ``Reason``."""
    n = x.size
    if n < MIN_RUNS_FOR_INTERVAL:
        return {"Reason": f"{n} runs: too few for a bootstrap interval (needs {MIN_RUNS_FOR_INTERVAL})"}
    draw = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    boot = _rank_correlation(x[draw], y[draw])
    boot = boot[np.isfinite(boot)]
    if boot.size < n_boot / 2:
        return {
            "Bootstrap used": int(boot.size),
            "Reason": f"only {boot.size} of {n_boot} resamples have a ρ; no interval",
        }
    tail = (1 - level) / 2
    low, high = np.quantile(boot, [tail, 1 - tail])
    return {"Bootstrap used": int(boot.size), "CI low": float(low), "CI high": float(high)}


ROBUSTNESS_CONSTANTS = {
    "e": "g_expansive.value",
    "Sh paper": "g_shadowing.paper.value",
    "Sh curve": "g_shadowing.curve.value",
    "Lip_FC": "lip.fc",
    "T_g": "t_g_lower.paper",
}
"""The constants correlated with robustness: name → its key in constants.json (``T_g`` is the paper's
bound Sh paper / Lip_FC; null when Lip_FC is uncertified, and then left out of that pair)."""


@dataclass
class RobustnessRuns:
    """One row per trained network: ``frame`` holds its name (``Run``), the constant columns
    ``"<constant> [<reading>]"`` (:data:`ROBUSTNESS_CONSTANTS` under every reading) and the robustness
    measure columns (:meth:`resdyn.artifacts.RobustnessTable.measures`)."""

    frame: pd.DataFrame
    constants: list[str]
    measures: list[str]


def robustness_runs(
    networks: Mapping[str, tuple[Mapping[str, Constants], Mapping[str, float]]],
) -> RobustnessRuns:
    """The per-network values the correlation reads. ``networks``: network name → ({reading name: its
    constants.json}, its robustness measures). Every network must have the same readings and measures
    (one config made them all); a missing one is an InputError naming the network."""
    if not networks:
        raise InputError("robustness table: no runs")
    first_readings, first_measures = next(iter(networks.values()))
    readings, measures = list(first_readings), list(first_measures)
    constants = [f"{name} [{reading}]" for reading in readings for name in ROBUSTNESS_CONSTANTS]
    rows = []
    for network, (by_reading, values) in networks.items():
        if list(by_reading) != readings or list(values) != measures:
            raise InputError(
                f"robustness table: {network} has readings {list(by_reading)} and measures {list(values)}; "
                f"expected {readings} and {measures} as for the other runs"
            )
        row: dict[str, Any] = {"Run": network}
        for reading, found in by_reading.items():
            for name, key in ROBUSTNESS_CONSTANTS.items():
                row[f"{name} [{reading}]"] = found.number(key)
        rows.append(row | dict(values))
    frame = pd.DataFrame(rows, columns=["Run", *constants, *measures])
    return RobustnessRuns(frame, constants, measures)


ALL_NETWORKS = "all"
"""The ``Networks`` value of the correlation over every run."""


def trained_networks_label(trained_accuracy: float) -> str:
    """The ``Networks`` value of the correlation over the trained networks only."""
    return f"clean accuracy ≥ {trained_accuracy:g}"


def trained_networks(runs: RobustnessRuns, trained_accuracy: float) -> np.ndarray:
    """Per row of ``runs.frame``: is its network's clean accuracy ≥ ``trained_accuracy`` (a missing one is
    not)."""
    if not 0 <= trained_accuracy <= 1:
        raise InputError(f"robustness table: trained_accuracy={trained_accuracy} must be in [0, 1]")
    if "clean_accuracy" not in runs.measures:
        raise InputError(f"robustness table: no clean_accuracy among the measures {runs.measures}")
    return pd.to_numeric(runs.frame["clean_accuracy"]).to_numpy(dtype=float) >= trained_accuracy


def correlations_of(table: pd.DataFrame, networks: str) -> dict[tuple[str, str], float]:
    """ρ by (constant, measure) of one ``Networks`` block of :func:`robustness_table`."""
    block = table[table["Networks"] == networks]
    return dict(zip(zip(block["Constant"], block["Measure"]), block["ρ"]))


def robustness_table(
    runs: RobustnessRuns, *, trained_accuracy: float = 0.5, n_boot: int = 2000, seed: int = 0
) -> pd.DataFrame:
    """``results/tables/robustness``: Spearman's ρ of every constant (under every reading) with every
    robustness measure, its bootstrap 95 % interval and the number of runs (:func:`robustness_correlations`;
    with fewer than 3 runs ρ is empty and ``Reason`` says so), twice: across every run (``Networks`` =
    :data:`ALL_NETWORKS`), and across the runs whose network's clean accuracy (measure
    ``clean_accuracy``) is ≥ ``trained_accuracy`` (:func:`trained_networks_label`).

    Why both: a network analysed early in training is near chance, its median minimal perturbation is 0
    and every attack breaks it, so across epochs every constant that moves with training correlates with
    robustness whether or not it tells equally trained networks apart; the second block asks the latter.
    """
    trained = runs.frame[trained_networks(runs, trained_accuracy)]
    blocks = []
    for label, frame in ((ALL_NETWORKS, runs.frame), (trained_networks_label(trained_accuracy), trained)):
        block = robustness_correlations(frame, runs.constants, runs.measures, n_boot=n_boot, seed=seed)
        blocks.append(block.assign(Networks=label)[["Networks", *CORRELATION_COLUMNS]])
    return pd.concat(blocks, ignore_index=True)


# ----------------------------------------------------------------------------------------------------
# Training dynamics: the constants of every run against the epoch


@dataclass(frozen=True)
class DynamicsKey:
    """One run of the dynamics table: its trained network (dataset, model, replicate, epoch: the
    1-based training epoch whose weights it analyses, the last included) and its reading."""

    dataset: str
    model: str
    replicate: int
    epoch: int
    reading: str


DYNAMICS_KEYS = ["Dataset", "Model", "Replicate", "Epoch", "Reading"]
DYNAMICS_VALUES = ["Test accuracy", "g-expansive", "Sh", "Sh curve", "Lip_FC", "T_g ≥ Sh/Lip_FC"]
"""The dynamics table's values: the network's test accuracy (metrics.json), and from constants.json e,
the reading's headline Sh (its pairing), Sh_curve, Lip_FC and T_g ≥ Sh/Lip_FC for the headline Sh."""


def dynamics_table(
    keys: Sequence[DynamicsKey], metrics: Sequence[Source], constants: Sequence[Source]
) -> pd.DataFrame:
    """``results/tables/dynamics``: one row per run (``keys[k]``, its network's loaded ``metrics[k]`` and
    its ``constants[k]``), ordered by dataset, model, reading, epoch and replicate as first seen, with the
    columns :data:`DYNAMICS_KEYS` + :data:`DYNAMICS_VALUES`. An undefined constant is None."""
    if not len(keys) == len(metrics) == len(constants):
        raise InputError(
            f"dynamics table: {len(keys)} runs, {len(metrics)} metrics.json, {len(constants)} constants.json"
        )
    if not keys:
        raise InputError("dynamics table: no runs")
    rows = []
    for key, found_metrics, found_constants in zip(keys, metrics, constants):
        name = f"{key.dataset}/{key.model} replicate {key.replicate} epoch {key.epoch} reading {key.reading}"
        data = Constants.from_source(found_constants, f"constants of {name}")
        pairing = _PAIRING_KEY[data.get("g_shadowing.pairing")]
        rows.append(
            {
                "Dataset": key.dataset,
                "Model": key.model,
                "Replicate": key.replicate,
                "Epoch": key.epoch,
                "Reading": key.reading,
                "Test accuracy": Metrics.from_source(found_metrics, f"metrics of {name}").number("accuracy"),
                "g-expansive": data.number("g_expansive.value"),
                "Sh": data.number(f"g_shadowing.{pairing}.value"),
                "Sh curve": data.number("g_shadowing.curve.value"),
                "Lip_FC": data.number("lip.fc"),
                "T_g ≥ Sh/Lip_FC": data.number(f"t_g_lower.{pairing}"),
            }
        )
    first_seen = {}
    for row in rows:
        for part in ("Dataset", "Model", "Reading"):
            first_seen.setdefault((part, row[part]), len(first_seen))
    rows.sort(
        key=lambda row: (
            first_seen[("Dataset", row["Dataset"])],
            first_seen[("Model", row["Model"])],
            first_seen[("Reading", row["Reading"])],
            row["Epoch"],
            row["Replicate"],
        )
    )
    return _frame(rows, DYNAMICS_KEYS + DYNAMICS_VALUES)
