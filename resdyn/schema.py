"""The config schema, ``schemas/config.schema.yaml``: the single place every config default is written.

The workflow's ``validate`` fills the defaults from it; library callers read the same ones through
:func:`schema_defaults`.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "config.schema.yaml"
"""The config schema: the single source of every default (the workflow's ``validate`` fills them from it)."""


@functools.cache
def _schema() -> dict[str, Any]:
    import yaml

    return yaml.safe_load(SCHEMA_PATH.read_text())


def _defaults(node: Mapping[str, Any]) -> dict[str, Any]:
    """The defaults an object schema declares, nested objects filled recursively (as ``validate`` does);
    ``$ref`` and ``allOf`` are resolved by :func:`_resolve`, the walker :func:`canonical_config` uses."""
    out = {}
    for key, prop in _resolve(node, _schema()).get("properties", {}).items():
        prop = _resolve(prop, _schema())
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


def _resolve(node: Mapping[str, Any], root: Mapping[str, Any]) -> dict[str, Any]:
    """The schema node with ``$ref`` and ``allOf`` merged in (properties: referenced ones first)."""
    merged: dict[str, Any] = {}
    parts = []
    if "$ref" in node:
        target: Any = root
        for part in str(node["$ref"]).lstrip("#/").split("/"):
            target = target[part]
        parts.append(_resolve(target, root))
    parts.extend(_resolve(member, root) for member in node.get("allOf", ()))
    parts.append({k: v for k, v in node.items() if k not in ("$ref", "allOf")})
    for part in parts:
        for key, value in part.items():
            if key == "properties":
                properties = merged.setdefault("properties", {})
                for name, sub in value.items():
                    properties[name] = {**properties.get(name, {}), **sub}
            else:
                merged[key] = value
    return merged
