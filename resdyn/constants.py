"""Assembling ``constants.json``: the paper's dynamical-systems constants for one (dataset, model).

Keys (method §7):

- ``g_expansive``: e = min over different-class pairs i < j of max_t d_t(i, j) (Definition 1, Table 2),
  with the pair as test indices, its 1-based order within each (true) class (Table 3), the classes the
  estimator compared (and ``true_classes`` beside them with predicted labels) and the block
  t* = argmax_t d_t(i*, j*); ``null`` with an ``undefined_reason`` when all images carry one label. A
  reading may collapse the depths by the mean or the min instead (``over_depths``).
- ``reading``: the reading's name and choices (method §3.4; ``definition`` for the main results).
- ``g_shadowing``: ``paper`` (the best-traced pseudo-orbit, Sh = δ/ε, Tables 2, 4, 5, with
  ``shadow_is_start`` flagging the method §3.2 caveat), ``independent`` (ε and δ minimised separately, the
  authors' pairing), ``curve`` (min over the quantile window of δ*(ε)/ε, and r at the window's lower end)
  and ``pairing`` (which of ``paper`` / ``independent`` is the reading's headline Sh), see
  :mod:`resdyn.shadowing`.
- ``lip``: ``fc`` = Lip of the fully connected head (‖W‖₂ for a linear head) and ``g`` = Lip(g) with the
  softmax (≤ fc / 2, divided by the reading's shadowing temperature τ, since softmax(z/τ) has Jacobian
  J/τ), ``temperature`` (that τ) and ``certified`` (whether fc is a certified upper bound), see
  :mod:`resdyn.lipschitz`.
- ``t_g_lower``: Theorem 1 gives Sh_g(φ) ≤ Lip(g) · T_g(φ), so T_g(φ) ≥ Sh / Lip. ``paper``, ``curve`` and
  ``independent`` divide by Lip_FC (what the paper reports); ``*_lip_g`` by the sharper Lip(g).
  A bound is ``null`` when its Sh estimate is undefined, and every bound is ``null`` (with an
  ``undefined_reason``) when Lip is not certified.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from resdyn.artifacts import Lipschitz, Pairs, Shadowing, Trajectories
from resdyn.distances import expansive_constant
from resdyn.io import InputError
from resdyn.readings import Reading

PathLike = str | os.PathLike


LIP_KEYS = (
    "fc",
    "g",
    "softmax_factor",
    "lipsdp_neuron",
    "lipsdp_layer",
    "spectral_product",
    "jacobian_lower",
)


def theorem1_lower_bound(sh: float | None, lip: float | None) -> float | None:
    """T_g(φ) ≥ Sh_g(φ) / Lip(g) (Theorem 1, Appendix A); None when either side is undefined."""
    if sh is None or lip is None:
        return None
    if not lip > 0:
        raise InputError(f"Lipschitz constant {lip!r} must be positive for the Theorem 1 bound")
    return float(sh) / float(lip)


def expansive_summary(pairs_file: Pairs, traj: Trajectories, over_depths: str = "max") -> dict[str, Any]:
    """``g_expansive`` of constants.json: e with its pair (test indices), depth, order and classes.

    e is the reading's statistic (:func:`resdyn.distances.expansive_constant`: the max over depths of
    Definition 1 by default). ``t_star`` is the model depth that attains it: argmax_t for ``max``, argmin_t
    for ``min``, null for ``mean`` (no single depth); under ``depths: blocks`` depths count from 1.
    ``classes`` are the classes the estimator compared (``labels``: the true test labels, or the model's
    predictions at depth T); with predicted labels ``true_classes`` gives the pair's true classes beside
    them. ``pair_order`` is each image's 1-based order among the test images of its *true* class, which
    identifies the image as in the paper's Table 3. When no different-class pair exists (every image
    carries one label) e is undefined: ``value`` is null with an ``undefined_reason``.
    """
    label_source = pairs_file.labels
    used_labels, names = traj.class_labels(label_source), traj.class_names
    summary: dict[str, Any] = {
        "value": None,
        "pair": None,
        "t_star": None,
        "pair_order": None,
        "classes": None,
        "labels": label_source,
    }
    if label_source == "predicted":
        summary["true_classes"] = None
    if over_depths != "max":
        summary["over_depths"] = over_depths
    value, pair, depth = expansive_constant(pairs_file.result, over_depths)
    if not np.isfinite(value):
        present = sorted({names[int(c)] for c in np.unique(used_labels)})
        summary["undefined_reason"] = (
            f"no different-class pair: all {used_labels.size} test images carry the {label_source} "
            f"label(s) {present}"
        )
        return summary
    i, j = (int(k) for k in pair)
    summary.update(
        value=value,
        pair=[int(traj.index[i]), int(traj.index[j])],
        t_star=None if depth is None else depth + pairs_file.first_depth,
        pair_order=[int(traj.order_in_class[i]), int(traj.order_in_class[j])],
        classes=[names[int(used_labels[i])], names[int(used_labels[j])]],
    )
    if "true_classes" in summary:
        summary["true_classes"] = [names[int(traj.labels[i])], names[int(traj.labels[j])]]
    return summary


def assemble_constants(
    traj: Trajectories, pairs_file: Pairs, shadowing: Shadowing, lip_file: Lipschitz, reading: Reading
) -> dict[str, Any]:
    """Collect every constant of one run under ``reading`` from its loaded trajectories.h5, pairs.h5,
    shadowing.h5 and lipschitz.json into the ``constants.json`` dictionary; pairs.h5 must have been
    computed with the reading's label source and first depth."""
    test_index, class_names = traj.index, traj.class_names
    meta = {key: traj.attrs[key] for key in ("dataset", "model", "T") if key in traj.attrs}
    if (pairs_file.labels, pairs_file.first_depth) != (reading.labels, reading.first_depth):
        raise InputError(
            f"{pairs_file.path}: computed with labels {pairs_file.labels!r} from depth "
            f"{pairs_file.first_depth}, but reading '{reading.name}' asks for {reading.labels!r} "
            f"from depth {reading.first_depth}"
        )
    best, independent, curve = shadowing.summaries()
    lip, certified = lip_file.data, lip_file.certified
    as_test = lambda k: None if k is None else int(test_index[k])  # noqa: E731
    paper_summary = {
        "value": best["value"],
        "epsilon": best["epsilon"],
        "delta": best["delta"],
        "orbit_start": as_test(best["orbit_start"]),
        "orbit": [as_test(a) for a in best["orbit"]],
        "shadow_image": as_test(best["shadow_image"]),
        "shadow_is_start": best["shadow_is_start"],
        "n_exactly_shadowed": best["n_exactly_shadowed"],
        "undefined_reason": best["undefined_reason"],
    }
    independent_summary = {
        **independent,
        "epsilon_orbit": as_test(independent["epsilon_orbit"]),
        "delta_orbit": as_test(independent["delta_orbit"]),
    }
    # Lip(g) of the reading's shadowing head softmax(h(x)/τ): the softmax's Jacobian is J_softmax / τ.
    lip_values = {key: lip.get(key) for key in LIP_KEYS}
    tau = reading.temperature_shadowing
    if tau != 1.0 and lip_values["g"] is not None:
        lip_values["g"] = lip_values["g"] / tau
    sh = {"paper": best["value"], "curve": curve["value"], "independent": independent["value"]}
    if "per_depth" in lip:  # per-depth probes (method §3.5): Lip of each g_t
        lip_values["per_depth"] = [row | {"g": row["g"] / tau} for row in lip["per_depth"]]
    return {
        **{k: (v.item() if isinstance(v, np.generic) else v) for k, v in meta.items()},
        "N": int(test_index.size),
        "class_names": class_names,
        "reading": {"name": reading.name, **reading.settings()},
        "g_expansive": expansive_summary(pairs_file, traj, reading.over_depths),
        "g_shadowing": {
            "paper": paper_summary,
            "independent": independent_summary,
            "curve": curve,
            "pairing": reading.pairing,
        },
        # Only the values: lipschitz.json also records solver wall times, and constants.json must be
        # byte-identical across reruns.
        "lip": lip_values | {"certified": certified, "temperature": tau},
        "t_g_lower": theorem1_bounds(sh, lip_values["fc"], lip_values["g"], certified),
    }


def theorem1_bounds(
    sh: dict[str, float | None], lip_fc: float, lip_g: float, certified: bool
) -> dict[str, Any]:
    """``t_g_lower`` of constants.json: T_g ≥ Sh / Lip for each Sh estimate (``sh``: name → value, e.g.
    paper, curve, independent) and each Lipschitz constant: ``<name>`` divides by Lip_FC (what the paper
    reports), ``<name>_lip_g`` by the sharper Lip(g).

    The quotient is a lower bound only when Lip is a certified *upper* bound of the true constant. An
    uncertified Lip (the LipSDP solver's own value, which can undershoot) gives no bound: the values are
    null with an ``undefined_reason``, and the quotients go to ``uncertified_estimates`` instead.
    """
    quotients = {name: theorem1_lower_bound(value, lip_fc) for name, value in sh.items()}
    quotients |= {f"{name}_lip_g": theorem1_lower_bound(value, lip_g) for name, value in sh.items()}
    if certified:
        return quotients
    return {
        **{key: None for key in quotients},
        "uncertified_estimates": quotients,
        "undefined_reason": "Lip_FC is not certified (see lipschitz.json details.uncertified_reason), "
        "so Sh / Lip is no lower bound on T_g",
    }
