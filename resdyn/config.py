"""Resolving per-(dataset, model) settings from the validated workflow config.

The workflow validates the config against ``schemas/config.schema.yaml`` (which also fills defaults);
this module only merges the layers, so the package never depends on Snakemake.
"""
from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any, Mapping

from resdyn.io import InputError

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "config.schema.yaml"
"""The config schema: the single source of every default (the workflow's ``validate`` fills them from it)."""


@functools.lru_cache(maxsize=None)
def _schema() -> dict[str, Any]:
    import yaml

    return yaml.safe_load(SCHEMA_PATH.read_text())


def _defaults(node: Mapping[str, Any]) -> dict[str, Any]:
    """The defaults an object schema declares, nested objects filled recursively (as ``validate`` does)."""
    out = {}
    for key, prop in node.get("properties", {}).items():
        if "default" in prop:
            value = copy.deepcopy(prop["default"])
            if isinstance(value, dict) and "properties" in prop:
                value = {**_defaults(prop), **value}
            out[key] = value
    return out


def schema_defaults(section: str) -> dict[str, Any]:
    """The defaults ``schemas/config.schema.yaml`` declares for one section: a top-level key (``analysis``,
    ``lipschitz``, ``training``) or an entry type (``model``, ``dataset``). Library callers that run without
    the workflow get exactly the defaults the workflow's ``validate`` fills in, from the same file."""
    schema = _schema()
    node = schema["properties"].get(section) or schema["$defs"].get(section)
    if node is None:
        raise KeyError(f"{SCHEMA_PATH}: no section '{section}'")
    return _defaults(node)


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
