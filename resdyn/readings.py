"""Readings: a named set of estimator choices applied to the same trajectories (method §3.4).

The main results use the reading ``definition`` (method §3.1–3.3: τ = 1, depths 0..T, the max over depths,
orbits that may revisit an image, the best-tracing pairing). A reading changes any of:

- ``temperature`` τ: p_t = softmax(z_t / τ) from the stored logits z_t, in float64; one number for every
  stage, or separate values for the expansive stage and the shadowing stage;
- ``depths``: ``all`` (t = 0..T) or ``blocks`` (t = 1..T: the stem's depth is dropped from every
  computation, orbits start at depth 1);
- ``over_depths``: how the g-expansive statistic of a pair collapses the depths: ``max``
  (Definition 1), ``mean`` or ``min`` (the authors' code);
- ``orbits``: ``revisit`` (method §3.2) or ``distinct`` (no image twice along a pseudo-orbit);
- ``pairing``: which g-shadowing estimate the reading's headline Sh (and its T_g bound) uses:
  ``best_tracing`` (the orbit with the smallest ε, Sh = δ/ε) or ``independent`` (ε and δ minimised
  separately over orbits, the authors' code). Both are always computed and reported;
- ``labels``: the label source of the g-expansive constant (``true`` or ``predicted``; default
  ``analysis.labels``);
- ``head``: ``final`` (the trained final head g at every depth) or ``probes`` (p_t = softmax(W_t x_t + b_t)
  with one linear probe per depth, method §3.5: the reading then reads the probes' trajectory file and
  Lipschitz constants instead of the main ones).

A reading's probabilities are its *view* of the trajectory file: an (N, D, C) float64 array with D = T+1
(``all``) or T (``blocks``) depths; view depth k is model depth k + :attr:`Reading.first_depth`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from resdyn.io import InputError
from resdyn.schema import schema_defaults

DEFINITION = "definition"
"""Name of the main reading (method §3.1–3.3); its results keep the per-run paths of method §7."""

DEPTHS = ("all", "blocks")
OVER_DEPTHS = ("max", "mean", "min")
ORBITS = ("revisit", "distinct")
PAIRINGS = ("best_tracing", "independent")
LABELS = ("true", "predicted")
HEADS = ("final", "probes")

_DEFAULTS = schema_defaults("reading")
"""The definition's choices, written once in the schema's ``reading`` entry (labels: ``analysis.labels``,
whose own default is ``"true"``)."""
_LABELS_DEFAULT = schema_defaults("analysis")["labels"]


@dataclass(frozen=True)
class Reading:
    """One reading's choices (method §3.4), with the temperature resolved per stage."""

    name: str = DEFINITION
    temperature_expansive: float = float(_DEFAULTS["temperature"])
    temperature_shadowing: float = float(_DEFAULTS["temperature"])
    depths: str = _DEFAULTS["depths"]
    over_depths: str = _DEFAULTS["over_depths"]
    orbits: str = _DEFAULTS["orbits"]
    pairing: str = _DEFAULTS["pairing"]
    labels: str = _LABELS_DEFAULT
    head: str = _DEFAULTS["head"]

    def __post_init__(self) -> None:
        for key, allowed in (
            ("depths", DEPTHS),
            ("over_depths", OVER_DEPTHS),
            ("orbits", ORBITS),
            ("pairing", PAIRINGS),
            ("labels", LABELS),
            ("head", HEADS),
        ):
            if getattr(self, key) not in allowed:
                raise InputError(
                    f"reading '{self.name}': {key} = {getattr(self, key)!r}; expected one of {allowed}"
                )
        for key in ("temperature_expansive", "temperature_shadowing"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise InputError(f"reading '{self.name}': {key} = {value!r}; expected a number > 0")
            if not math.isfinite(value):
                raise InputError(f"reading '{self.name}': {key} = {value!r}; expected a finite number")

    @classmethod
    def from_settings(cls, name: str, settings: Mapping[str, Any]) -> Reading:
        """A reading from its canonical settings (:meth:`settings`, as the workflow passes them)."""
        settings = dict(settings)
        default = float(_DEFAULTS["temperature"])
        temperature = settings.pop("temperature", {"expansive": default, "shadowing": default})
        unknown = set(settings) - {"depths", "over_depths", "orbits", "pairing", "labels", "head"}
        if unknown:
            raise InputError(f"reading '{name}': unknown setting(s) {sorted(unknown)}")
        return cls(
            name,
            temperature_expansive=float(temperature["expansive"]),
            temperature_shadowing=float(temperature["shadowing"]),
            **settings,
        )

    def settings(self) -> dict[str, Any]:
        """The canonical settings, in a fixed key order: equal meanings give equal ``repr`` (Snakemake
        compares params by repr, so only a change of meaning reruns the reading's jobs)."""
        out = asdict(self)
        del out["name"]
        return {
            "temperature": {
                "expansive": float(out.pop("temperature_expansive")),
                "shadowing": float(out.pop("temperature_shadowing")),
            },
            **out,
        }

    @property
    def first_depth(self) -> int:
        """The model depth of view depth 0: 0 with ``depths: all``, 1 with ``blocks``."""
        return 1 if self.depths == "blocks" else 0

    @property
    def same_view(self) -> bool:
        """Whether the expansive and the shadowing stages see the same probabilities (one temperature), so
        the pairwise stage's nearest-neighbour tables are the shadowing stage's too."""
        return self.temperature_expansive == self.temperature_shadowing

    def expansive_probs(self, logits: np.ndarray, probs: np.ndarray) -> np.ndarray:
        """The view of the g-expansive stage (see :func:`view_probs`)."""
        return view_probs(logits, probs, self.temperature_expansive, self.first_depth)

    def shadowing_probs(self, logits: np.ndarray, probs: np.ndarray) -> np.ndarray:
        """The view of the g-shadowing stage (see :func:`view_probs`)."""
        return view_probs(logits, probs, self.temperature_shadowing, self.first_depth)


def reading_settings(
    readings: Mapping[str, Mapping[str, Any] | None], name: str, default_labels: str = _LABELS_DEFAULT
) -> dict[str, Any]:
    """The canonical settings of reading ``name`` of the config's ``readings`` block.

    A missing key takes the definition's value, the schema's default (``labels``: ``default_labels``, i.e.
    ``analysis.labels``);
    ``temperature: τ`` means ``{expansive: τ, shadowing: τ}``. ``definition`` is the main analysis and
    cannot be redefined: it may be listed only with no settings (or exactly the default ones).
    """
    if name == DEFINITION:
        entry = readings.get(DEFINITION) or {}
        fixed = Reading(labels=default_labels).settings()
        given = reading_settings({"_": entry}, "_", default_labels) if entry else fixed
        if given != fixed:
            raise InputError(
                f"config: readings.{DEFINITION}: the reading '{DEFINITION}' is the main analysis "
                "(method §3.1–3.3) and its choices are fixed; give your reading another name"
            )
        return fixed
    if name not in readings:
        known = ", ".join([DEFINITION, *sorted(readings)])
        raise InputError(f"config: no reading '{name}' under 'readings' (known: {known})")
    entry = {**_DEFAULTS, **(readings[name] or {})}
    temperature = entry.pop("temperature")
    if isinstance(temperature, Mapping):
        unknown = set(temperature) - {"expansive", "shadowing"}
        if unknown:
            raise InputError(
                f"config: readings.{name}.temperature: unknown key(s) {sorted(unknown)} "
                "(expected 'expansive' and/or 'shadowing')"
            )
        default = _DEFAULTS["temperature"]
        temperature = {
            "expansive": temperature.get("expansive", default),
            "shadowing": temperature.get("shadowing", default),
        }
    else:
        temperature = {"expansive": temperature, "shadowing": temperature}
    entry.setdefault("labels", default_labels)
    try:
        temps = {k: float(v) for k, v in temperature.items()}
    except (TypeError, ValueError):
        raise InputError(
            f"config: readings.{name}.temperature = {temperature!r}; expected numbers > 0"
        ) from None
    try:
        return Reading.from_settings(name, {"temperature": temps, **entry}).settings()
    except InputError as err:
        raise InputError(f"config: readings.{name}: {err}") from None


def view_probs(logits: np.ndarray, probs: np.ndarray, temperature: float, first_depth: int) -> np.ndarray:
    """p_t = softmax(z_t / τ) for t = first_depth..T, as an (N, D, C) float64 array.

    τ = 1 returns the stored ``probs`` (softmax of the float64 head, method §2) so that the definition's
    numbers are exactly those of the trajectory file; any other τ recomputes the softmax in float64 from the
    stored logits, shifted by their maximum (exact in exact arithmetic, and no overflow at τ ≪ 1).
    """
    probs = np.asarray(probs)
    if temperature == 1.0:
        return np.ascontiguousarray(probs[:, first_depth:], dtype=np.float64)
    scaled = np.asarray(logits[:, first_depth:], dtype=np.float64) / float(temperature)
    scaled -= scaled.max(axis=-1, keepdims=True)
    weights = np.exp(scaled)
    return weights / weights.sum(axis=-1, keepdims=True)
