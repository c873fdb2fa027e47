"""Assembling ``constants.json``: the paper's dynamical-systems constants for one (dataset, model).

Keys (DESIGN §7):

- ``g_expansive``: e = min over different-class pairs i < j of max_t d_t(i, j) (Definition 1, Table 2),
  with the pair as test indices, its 1-based order within each class (Table 3), its classes and the block
  t* = argmax_t d_t(i*, j*).
- ``g_shadowing``: ``paper`` (the best-traced pseudo-orbit, Sh = δ/ε, Tables 2, 4, 5) and ``curve``
  (min over the quantile window of δ*(ε)/ε), see :mod:`resdyn.shadowing`.
- ``lip``: ``fc`` = Lip of the fully connected head (‖W‖₂ for a linear head) and ``g`` = Lip(g) with the
  softmax (≤ fc / 2), see :mod:`resdyn.lipschitz`.
- ``t_g_lower``: Theorem 1 gives Sh_g(φ) ≤ Lip(g) · T_g(φ), so T_g(φ) ≥ Sh / Lip. ``paper`` and ``curve``
  divide by Lip_FC (what the paper reports); ``paper_lip_g`` and ``curve_lip_g`` by the sharper Lip(g).
  A bound is ``null`` when its Sh estimate is undefined.
"""
from __future__ import annotations

import os
from typing import Any, Union

import numpy as np

from resdyn.artifacts import Lipschitz, Pairs, Shadowing, Trajectories
from resdyn.io import InputError

PathLike = Union[str, os.PathLike]


LIP_KEYS = ("fc", "g", "softmax_factor", "lipsdp_neuron", "lipsdp_layer", "spectral_product", "jacobian_lower")


def theorem1_lower_bound(sh: float | None, lip: float | None) -> float | None:
    """T_g(φ) ≥ Sh_g(φ) / Lip(g) (Theorem 1, Appendix A); None when either side is undefined."""
    if sh is None or lip is None:
        return None
    if not lip > 0:
        raise InputError(f"Lipschitz constant {lip!r} must be positive for the Theorem 1 bound")
    return float(sh) / float(lip)


def assemble_constants(
    trajectories: Trajectories | PathLike,
    pairs: Pairs | PathLike,
    shadowing: Shadowing | PathLike,
    lipschitz: Lipschitz | PathLike,
) -> dict[str, Any]:
    """Collect every constant of one (dataset, model) into the ``constants.json`` dictionary."""
    traj = Trajectories.of(trajectories)
    test_index, order_in_class, true_labels = traj.index, traj.order_in_class, traj.labels
    class_names = traj.class_names
    meta = {key: traj.attrs[key] for key in ("dataset", "model", "T") if key in traj.attrs}
    pairs_file = Pairs.of(pairs)
    pairs, label_source = pairs_file.result, pairs_file.labels
    paper, curve = Shadowing.of(shadowing).summaries()
    lip = Lipschitz.of(lipschitz).data

    i, j = (int(k) for k in pairs.expansive_pair)
    expansive = {
        "value": float(pairs.expansive),
        "pair": [int(test_index[i]), int(test_index[j])],
        "t_star": int(pairs.expansive_t_star),
        "pair_order": [int(order_in_class[i]), int(order_in_class[j])],
        "classes": [class_names[int(true_labels[i])], class_names[int(true_labels[j])]],
        "labels": label_source,
    }
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
        "lip": {key: lip.get(key) for key in LIP_KEYS},
        "t_g_lower": {
            "paper": theorem1_lower_bound(paper["value"], lip["fc"]),
            "curve": theorem1_lower_bound(curve["value"], lip["fc"]),
            "paper_lip_g": theorem1_lower_bound(paper["value"], lip["g"]),
            "curve_lip_g": theorem1_lower_bound(curve["value"], lip["g"]),
        },
    }
