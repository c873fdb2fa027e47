"""Assembling ``constants.json``: the paper's dynamical-systems constants for one (dataset, model).

Keys (method §7):

- ``g_expansive``: e = min over different-class pairs i < j of max_t d_t(i, j) (Definition 1, Table 2),
  with the pair as test indices, its 1-based order within each (true) class (Table 3), the classes the
  estimator compared (and ``true_classes`` beside them with predicted labels) and the block
  t* = argmax_t d_t(i*, j*); ``null`` with an ``undefined_reason`` when all images carry one label.
- ``g_shadowing``: ``paper`` (the best-traced pseudo-orbit, Sh = δ/ε, Tables 2, 4, 5) and ``curve``
  (min over the quantile window of δ*(ε)/ε), see :mod:`resdyn.shadowing`.
- ``lip``: ``fc`` = Lip of the fully connected head (‖W‖₂ for a linear head) and ``g`` = Lip(g) with the
  softmax (≤ fc / 2), and ``certified`` (whether fc is a certified upper bound), see
  :mod:`resdyn.lipschitz`.
- ``t_g_lower``: Theorem 1 gives Sh_g(φ) ≤ Lip(g) · T_g(φ), so T_g(φ) ≥ Sh / Lip. ``paper`` and ``curve``
  divide by Lip_FC (what the paper reports); ``paper_lip_g`` and ``curve_lip_g`` by the sharper Lip(g).
  A bound is ``null`` when its Sh estimate is undefined, and every bound is ``null`` (with an
  ``undefined_reason``) when Lip is not certified.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from resdyn.artifacts import Lipschitz, Pairs, Shadowing, Trajectories
from resdyn.distances import PairwiseResult
from resdyn.io import InputError

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


def expansive_summary(pairs: PairwiseResult, label_source: str, traj: Trajectories) -> dict[str, Any]:
    """``g_expansive`` of constants.json: e with its pair (test indices), t*, order and classes.

    ``classes`` are the classes the estimator compared (``label_source``: the true test labels, or the
    model's predictions at depth T); with predicted labels ``true_classes`` gives the pair's true classes
    beside them. ``pair_order`` is each image's 1-based order among the test images of its *true* class,
    which identifies the image as in the paper's Table 3. When no different-class pair exists (every image
    carries one label) e is undefined: ``value`` is null with an ``undefined_reason``.
    """
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
    if not np.isfinite(pairs.expansive):
        present = sorted({names[int(c)] for c in np.unique(used_labels)})
        summary["undefined_reason"] = (
            f"no different-class pair: all {used_labels.size} test images carry the {label_source} "
            f"label(s) {present}"
        )
        return summary
    i, j = (int(k) for k in pairs.expansive_pair)
    summary.update(
        value=float(pairs.expansive),
        pair=[int(traj.index[i]), int(traj.index[j])],
        t_star=int(pairs.expansive_t_star),
        pair_order=[int(traj.order_in_class[i]), int(traj.order_in_class[j])],
        classes=[names[int(used_labels[i])], names[int(used_labels[j])]],
    )
    if "true_classes" in summary:
        summary["true_classes"] = [names[int(traj.labels[i])], names[int(traj.labels[j])]]
    return summary


def assemble_constants(
    trajectories: Trajectories | PathLike,
    pairs: Pairs | PathLike,
    shadowing: Shadowing | PathLike,
    lipschitz: Lipschitz | PathLike,
) -> dict[str, Any]:
    """Collect every constant of one (dataset, model) into the ``constants.json`` dictionary."""
    traj = Trajectories.of(trajectories)
    test_index, class_names = traj.index, traj.class_names
    meta = {key: traj.attrs[key] for key in ("dataset", "model", "T") if key in traj.attrs}
    pairs_file = Pairs.of(pairs)
    pairs, label_source = pairs_file.result, pairs_file.labels
    paper, curve = Shadowing.of(shadowing).summaries()
    lip_file = Lipschitz.of(lipschitz)
    lip, certified = lip_file.data, lip_file.certified
    expansive = expansive_summary(pairs, label_source, traj)
    paper_summary = {
        "value": paper["value"],
        "epsilon": paper["epsilon"],
        "delta": paper["delta"],
        "orbit_start": int(test_index[paper["orbit_start"]]),
        "orbit": [int(test_index[a]) for a in paper["orbit"]],
        "shadow_image": int(test_index[paper["shadow_image"]]),
        "n_exactly_shadowed": paper["n_exactly_shadowed"],
        "undefined_reason": paper["undefined_reason"],
    }
    return {
        **{k: (v.item() if isinstance(v, np.generic) else v) for k, v in meta.items()},
        "N": int(test_index.size),
        "class_names": class_names,
        "g_expansive": expansive,
        "g_shadowing": {"paper": paper_summary, "curve": curve},
        # Only the values: lipschitz.json also records solver wall times, and constants.json must be
        # byte-identical across reruns.
        "lip": {key: lip.get(key) for key in LIP_KEYS} | {"certified": certified},
        "t_g_lower": theorem1_bounds(paper["value"], curve["value"], lip["fc"], lip["g"], certified),
    }


def theorem1_bounds(
    sh_paper: float | None, sh_curve: float | None, lip_fc: float, lip_g: float, certified: bool
) -> dict[str, Any]:
    """``t_g_lower`` of constants.json: T_g ≥ Sh / Lip for each Sh estimate and each Lipschitz constant.

    The quotient is a lower bound only when Lip is a certified *upper* bound of the true constant. An
    uncertified Lip (the LipSDP solver's own value, which can undershoot) gives no bound: the values are
    null with an ``undefined_reason``, and the quotients go to ``uncertified_estimates`` instead.
    """
    quotients = {
        "paper": theorem1_lower_bound(sh_paper, lip_fc),
        "curve": theorem1_lower_bound(sh_curve, lip_fc),
        "paper_lip_g": theorem1_lower_bound(sh_paper, lip_g),
        "curve_lip_g": theorem1_lower_bound(sh_curve, lip_g),
    }
    if certified:
        return quotients
    return {
        **{key: None for key in quotients},
        "uncertified_estimates": quotients,
        "undefined_reason": "Lip_FC is not certified (see lipschitz.json details.uncertified_reason), "
        "so Sh / Lip is no lower bound on T_g",
    }
