"""Resolving per-(dataset, model) settings from the validated workflow config.

The workflow validates the config against ``schemas/config.schema.yaml`` (which also fills defaults);
this module only merges the layers, so the package never depends on Snakemake.
"""
from __future__ import annotations

from typing import Any, Mapping

from resdyn.io import InputError

DEFAULT_TILES = ((2, 2), (2, 1), (1, 2), (2, 1))


def training_settings(config: Mapping[str, Any], dataset: str, model: str) -> dict[str, Any]:
    """Training settings for one (dataset, model): global defaults < dataset override < model override."""
    _require(config, "datasets", dataset)
    _require(config, "models", model)
    settings = dict(config.get("training", {}))
    settings.update(config["datasets"][dataset].get("training", {}) or {})
    settings.update(config["models"][model].get("training", {}) or {})
    return settings


def model_settings(config: Mapping[str, Any], model: str) -> dict[str, Any]:
    """The architecture entry of ``model`` without its training overrides."""
    _require(config, "models", model)
    return {k: v for k, v in config["models"][model].items() if k != "training"}


def _require(config: Mapping[str, Any], section: str, key: str) -> None:
    if key not in config.get(section, {}):
        known = ", ".join(sorted(config.get(section, {}))) or "none"
        raise InputError(f"config: no entry '{key}' under '{section}' (known: {known})")
