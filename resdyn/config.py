"""Resolving per-(dataset, model) settings from the validated workflow config.

The workflow validates the config against ``schemas/config.schema.yaml`` (which also fills defaults);
this module only merges the layers, so the package never depends on Snakemake.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from resdyn.io import InputError
from resdyn.readings import reading_settings
from resdyn.schema import _resolve, _schema, schema_defaults

__all__ = ["schema_defaults"]  # re-exported: the one reader of the schema's defaults is resdyn.schema

INPUT_SIZE = 32
"""Side of the square RGB input images (method §5 brings every dataset to 3×32×32)."""

STEM_REDUCTION = 4
"""The stem's stride-2 convolution and stride-2 max-pool shrink each side by 4."""

STEM_SIDE = INPUT_SIZE // STEM_REDUCTION
"""Side of the stem's output map (8): every patching must cut it into equal tiles."""


OPT_IN_TRAINING = ("channels_last", "bf16_autocast")
"""Training switches that are off by default; they appear in the settings only when on."""


def training_settings(
    config: Mapping[str, Any], dataset: str, model: str, replicate: int = 1
) -> dict[str, Any]:
    """Training settings for one (dataset, model): global defaults < dataset override < model override.

    ``replicate`` k (method §3.6, config ``replicates``) trains with ``seed + k − 1`` and the same settings
    otherwise, so replicate 1 is the configured run and the replicates differ only in the seed.
    The switches of :data:`OPT_IN_TRAINING` are left out while off: the settings (the train rule's params)
    of a run that does not use them are those of versions without them, so no model is retrained.
    """
    _require(config, "datasets", dataset)
    _require(config, "models", model)
    if isinstance(replicate, bool) or not isinstance(replicate, int) or replicate < 1:
        raise InputError(f"replicate must be an integer >= 1, got {replicate!r}")
    settings = dict(config.get("training", {}))
    settings.update(config["datasets"][dataset].get("training", {}) or {})
    settings.update(config["models"][model].get("training", {}) or {})
    if replicate > 1:
        settings["seed"] = int(settings["seed"]) + replicate - 1
    for key in OPT_IN_TRAINING:
        if not settings.get(key, False):
            settings.pop(key, None)
    return settings


ROBUSTNESS_TABLE_KEYS = ("trained_accuracy",)
"""Keys of the config's ``robustness`` block that the correlation table reads, not the attacks."""


def attack_settings(robustness: Mapping[str, Any]) -> dict[str, Any]:
    """The config's ``robustness`` block without :data:`ROBUSTNESS_TABLE_KEYS`: the settings of one
    network's attacks (:func:`resdyn.robustness.check_settings`), so that changing a table key reruns no
    attack."""
    return {key: value for key, value in robustness.items() if key not in ROBUSTNESS_TABLE_KEYS}


SAMPLE_SIZE_KEYS = ("sizes", "count", "min_size", "subsets", "seed", "reference")


def sample_size_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The config's ``sample_size`` block (method §3.6, :mod:`resdyn.sample_size`) with equal meanings
    made equal (Snakemake compares params by repr): explicit ``sizes`` sorted and deduplicated, and
    ``count``/``min_size`` dropped when ``sizes`` is given (they are then unused). Raises InputError naming
    a bad key or value."""
    unknown = set(settings) - set(SAMPLE_SIZE_KEYS)
    if unknown:
        raise InputError(f"config: sample_size: unknown key(s) {sorted(unknown)}")
    out: dict[str, Any] = {}
    for key, minimum in (("subsets", 1), ("seed", 0), ("reference", 2), ("count", 1), ("min_size", 2)):
        value = settings.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise InputError(f"config: sample_size.{key} = {value!r}; expected an integer >= {minimum}")
        out[key] = value
    sizes = settings.get("sizes") or []
    for size in sizes:
        if isinstance(size, bool) or not isinstance(size, int) or size < 2:
            raise InputError(f"config: sample_size.sizes holds {size!r}; expected integers >= 2")
    if sizes:
        del out["count"], out["min_size"]
        out["sizes"] = sorted(set(int(s) for s in sizes))
    return {key: out[key] for key in SAMPLE_SIZE_KEYS if key in out}


ENTRY_ANNOTATIONS = ("training", "paper_row")
"""Keys of a dataset or model entry that do not change its data or architecture."""


def model_settings(config: Mapping[str, Any], model: str) -> dict[str, Any]:
    """The architecture entry of ``model`` without its training overrides and paper row."""
    _require(config, "models", model)
    return {k: v for k, v in config["models"][model].items() if k not in ENTRY_ANNOTATIONS}


def dataset_settings(config: Mapping[str, Any], dataset: str) -> dict[str, Any]:
    """The data settings of ``dataset`` without its training overrides and paper row (they do not change
    the data)."""
    _require(config, "datasets", dataset)
    return {k: v for k, v in config["datasets"][dataset].items() if k not in ENTRY_ANNOTATIONS}


def check_architecture(
    blocks: Sequence[int], tiles: Sequence[Sequence[int]], width: int, head_hidden: Sequence[int] = ()
) -> None:
    """Raise ValueError when a revised ResNet with these settings cannot be built (pure Python, no torch).

    The stages' tiles must cut the 8×8 stem map into equal tiles (Π rows and Π cols divide 8), each stage
    needs ≥ 1 block, and the bottleneck's c → c/4 needs width to be a multiple of 4. The model's
    constructor and the workflow's parse-time check both call this, so a bad entry fails before anything
    is scheduled, with the same message.
    """
    blocks = [int(b) for b in blocks]
    tiles = [(int(r), int(c)) for r, c in tiles]
    if len(blocks) != len(tiles) or not blocks:
        raise ValueError(f"blocks {blocks} and tiles {tiles} must list the same (non-zero) number of stages")
    if any(b < 1 for b in blocks):
        raise ValueError(f"every stage needs at least one block, got blocks {blocks}")
    if any(r < 1 or c < 1 for r, c in tiles):
        raise ValueError(f"patching tiles must be positive, got {tiles}")
    rows_total = math.prod(r for r, _ in tiles)
    cols_total = math.prod(c for _, c in tiles)
    if STEM_SIDE % rows_total or STEM_SIDE % cols_total:
        raise ValueError(
            f"tiles {tiles} cut the {STEM_SIDE}×{STEM_SIDE} stem output into "
            f"{rows_total}×{cols_total} parts; both must divide {STEM_SIDE}"
        )
    if width < 4 or width % 4:
        raise ValueError(f"width must be a positive multiple of 4 (bottleneck c/4 per group), got {width}")
    if any(int(h) < 1 for h in head_hidden):
        raise ValueError(f"head widths {list(head_hidden)} must be positive")


# Dataset keys that only one source (and, for a torchvision option, one dataset class) reads: anywhere
# else they would be silently ignored, so they fail instead. Keys with schema defaults (seed, resize,
# download) are filled into every entry and cannot be checked this way.
_OWNED_KEYS: dict[str, tuple[tuple[str, ...], str | None]] = {
    "name": (("torchvision",), None),
    "path": (("npz", "idx"), None),
    "emnist_split": (("torchvision",), "EMNIST"),
}


FILE_SOURCES = ("torchvision", "npz", "idx")
"""Dataset sources read from files the user supplies (or torchvision downloads): their content, not their
location, is an input of ``prepare_data`` (:func:`resdyn.data.source_content`). The other sources are
bundled with installed packages."""
LOCATION_KEYS = ("path",)
"""Dataset keys that say where the data is, not what it is: left out of ``prepare_data``'s params
(:func:`data_settings`), so moving the data reruns nothing; its content stands in for them."""


def data_settings(config: Mapping[str, Any], dataset: str) -> dict[str, Any]:
    """:func:`dataset_settings` without the :data:`LOCATION_KEYS`: what the data stage's output depends
    on besides the content of the user's files."""
    return {k: v for k, v in dataset_settings(config, dataset).items() if k not in LOCATION_KEYS}


NAME_MAX = 64
"""Longest dataset, model or reading name (the schema's ``$defs.name.maxLength``). The names are ASCII
(the schema's pattern), so characters are bytes. Each name is one folder of a run's path
(:class:`resdyn.runs.Run`), never joined with another into one file name, so a name of 64 bytes leaves
ample room under a file system's 255 bytes per path component."""

FILE_NAME_MAX = 255
"""Bytes a file name (one path component) may have on Linux and macOS file systems."""

RESERVED_DATASET_NAMES = ("data", "tables", "figures", "logs", "benchmarks")
"""Top-level folders of results_dir: a dataset's run folder results/{dataset} must not be one of them
(compared without case, for case-insensitive file systems)."""

SEED_MAX = 2**64 - 1
"""Largest seed ``torch.manual_seed`` accepts (the schema's maximum for training and probe seeds)."""


def check_names(config: Mapping[str, Any]) -> None:
    """Dataset, model and reading names give valid, distinct output paths: the schema's pattern and
    length (repeated here for callers without the schema), no dataset named like a top-level results
    folder, and no two names of one kind that differ only in case (one folder on macOS)."""
    import re

    pattern = re.compile(_schema()["$defs"]["name"]["pattern"])
    for section in ("datasets", "models", "readings"):
        seen: dict[str, str] = {}
        for name in config.get(section, {}) or {}:
            if not isinstance(name, str) or not pattern.match(name) or len(name) > NAME_MAX:
                raise InputError(
                    f"config: {section}: name {name!r} must be 1..{NAME_MAX} letters, digits, '_' or '-', "
                    "starting with a letter or digit (it becomes a folder and part of file names)"
                )
            if name.lower() in seen:
                raise InputError(
                    f"config: {section}: names {seen[name.lower()]!r} and {name!r} differ only in case; "
                    "they would share one folder on a case-insensitive file system"
                )
            seen[name.lower()] = name
            if section == "datasets" and name.lower() in RESERVED_DATASET_NAMES:
                raise InputError(
                    f"config: datasets: name {name!r} is taken by the results folder "
                    f"{config.get('results_dir', 'results')}/{name.lower()}/ (reserved: "
                    f"{', '.join(RESERVED_DATASET_NAMES)}); rename the dataset"
                )


def check_numbers(config: Any, where: str = "config") -> None:
    """Every number in the config is finite (YAML's ``.nan`` and ``.inf`` pass the schema's bounds)."""
    if isinstance(config, Mapping):
        for key, value in config.items():
            check_numbers(value, f"{where}.{key}" if where != "config" else f"config: {key}")
    elif isinstance(config, (list, tuple)):
        for index, value in enumerate(config):
            check_numbers(value, f"{where}[{index}]")
    elif isinstance(config, float) and not math.isfinite(config):
        raise InputError(f"{where} = {config!r}; numbers must be finite")


def check_analysis(config: Mapping[str, Any]) -> None:
    """Settings whose relations the schema cannot state: the curve quantiles ordered, every effective
    training seed (seed + replicates − 1) in torch's range, every ``checkpoints`` epoch before the last
    epoch of every (dataset, model)."""
    quantiles = (config.get("analysis", {}) or {}).get("curve_quantiles")
    if quantiles is not None and (len(quantiles) != 2 or not quantiles[0] <= quantiles[1]):
        raise InputError(
            f"config: analysis.curve_quantiles = {list(quantiles)}; expected [low, high] with low <= high "
            "(e.g. [0.05, 0.95])"
        )
    replicates = int(config.get("replicates", 1) or 1)
    for dataset in config.get("datasets", {}) or {}:
        for model in config.get("models", {}) or {}:
            seed = training_settings(config, dataset, model).get("seed", 0)
            if isinstance(seed, int) and not isinstance(seed, bool) and seed + replicates - 1 > SEED_MAX:
                raise InputError(
                    f"config: training seed {seed} of datasets.{dataset} / models.{model} with replicates: "
                    f"{replicates} reaches {seed + replicates - 1}, beyond torch.manual_seed's 0..{SEED_MAX}"
                )
            epochs = training_settings(config, dataset, model).get("epochs")
            late = [e for e in config.get("checkpoints", []) or [] if isinstance(epochs, int) and e >= epochs]
            if late:
                raise InputError(
                    f"config: checkpoints {late} of datasets.{dataset} / models.{model}: not before its last "
                    f"epoch ({epochs} epochs; the last epoch is the main run, list only earlier ones)"
                )


def check_entries(config: Mapping[str, Any]) -> None:
    """Check what the schema cannot: names give valid output paths (:func:`check_names`), numbers are
    finite (:func:`check_numbers`), quantiles ordered and seeds in range (:func:`check_analysis`), every
    model entry builds, no dataset key belongs to another source, every npz dataset file exists, every idx
    folder holds its four files, every reading resolves (:func:`check_readings`).

    Called when the workflow is parsed (after schema validation, defaults filled), so a bad entry fails
    the dry run with an :class:`InputError` naming the entry and the value instead of failing its first
    job hours later.
    """
    check_names(config)
    check_numbers(config)
    check_analysis(config)
    for name, entry in config.get("models", {}).items():
        try:
            check_architecture(entry["blocks"], entry["tiles"], entry["width"], entry["head"]["hidden"])
        except ValueError as err:
            raise InputError(f"config: models.{name}: {err}") from None
    for name, entry in config.get("datasets", {}).items():
        source = entry.get("source")
        for key, (owners, tv_name) in _OWNED_KEYS.items():
            if key not in entry:
                continue
            if source not in owners:
                owner = " or ".join(f"'{o}'" for o in owners)
                raise InputError(
                    f"config: datasets.{name}: key '{key}' belongs to source {owner}, not '{source}'"
                )
            if tv_name is not None and entry.get("name") != tv_name:
                raise InputError(
                    f"config: datasets.{name}: key '{key}' belongs to torchvision name '{tv_name}', "
                    f"not {entry.get('name')!r}"
                )
        if source == "npz" and os.path.isdir(entry["path"]):
            raise InputError(
                f"config: datasets.{name}.path: {entry['path']!r} is a directory, not an .npz file"
            )
        if source == "npz" and not os.path.isfile(entry["path"]):
            raise InputError(
                f"config: datasets.{name}.path: npz file {entry['path']!r} not found "
                f"(relative paths start at the working directory {os.getcwd()})"
            )
        if source == "idx":
            from resdyn.data import find_idx_files  # resdyn.data imports this module

            try:
                find_idx_files(entry["path"])
            except InputError as err:
                raise InputError(
                    f"config: datasets.{name}.path: {err} (relative paths start at the working directory "
                    f"{os.getcwd()})"
                ) from None
    check_readings(config)


def check_config_files(paths: Sequence[str | os.PathLike]) -> None:
    """Read each YAML (or JSON) config file again, strictly: a syntax error names the file, line and
    column, and a key given twice in one mapping fails (YAML and Snakemake's loader keep the last one
    silently). Raises InputError; a missing file is left to Snakemake's own message."""
    import yaml

    duplicates: list[str] = []

    class _StrictLoader(yaml.SafeLoader):
        pass

    def construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=deep)
            try:
                repeated = key in seen
            except TypeError:
                continue  # an unhashable key: SafeLoader's own constructor reports it
            if repeated:
                duplicates.append(
                    f"line {key_node.start_mark.line + 1}: key {key!r} given twice in one mapping (first on "
                    f"line {seen[key].start_mark.line + 1}); YAML would keep only the last"
                )
            seen.setdefault(key, key_node)
        return loader.construct_mapping(node, deep=deep)

    _StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    for path in paths:
        path = Path(path)
        if not path.is_file():
            continue
        problem = None
        with open(path, encoding="utf-8") as handle:
            try:
                yaml.load(handle, Loader=_StrictLoader)  # noqa: S506 -- a SafeLoader subclass
            except yaml.MarkedYAMLError as err:
                mark = err.problem_mark or err.context_mark
                where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
                reason = " ".join(str(part) for part in (err.context, err.problem) if part)
                problem = f"{where}: not valid YAML ({reason})"
            except yaml.YAMLError as err:
                problem = f": not valid YAML ({err})"
        if problem is None and duplicates:
            problem = f", {duplicates[0]}"
        if problem is not None:
            raise InputError(f"{path}{problem}")


def check_readings(config: Mapping[str, Any]) -> None:
    """Every reading of the ``readings`` block resolves (:func:`resdyn.readings.reading_settings`):
    ``definition`` is not redefined and every value is valid; raises InputError naming the reading."""
    labels = config["analysis"]["labels"]
    for name in config.get("readings", {}) or {}:
        reading_settings(config["readings"], name, labels)


def _require(config: Mapping[str, Any], section: str, key: str) -> None:
    if key not in config.get(section, {}):
        known = ", ".join(sorted(config.get(section, {}))) or "none"
        raise InputError(f"config: no entry '{key}' under '{section}' (known: {known})")


# ----------------------------------------------------------------------------------------------------
# Canonical config: the same meaning gives the same values, so Snakemake's params (compared by repr)
# change only when the meaning does.

_BOOLEAN_WORDS = {"true": True, "false": False}


def canonical_config(config: Any, schema: Mapping[str, Any] | None = None) -> Any:
    """``config`` rewritten so that equal meanings have equal ``repr``, guided by the JSON schema.

    - mapping keys follow the schema's ``properties`` order, then any other keys (names of datasets and
      models) in the user's order, which the tables keep;
    - a value the schema types as ``number`` becomes a float (``1e-3``, ``0.001`` and ``1.0e-3`` agree:
      YAML 1.1 reads ``1e-3`` as a string), ``integer`` an int (``8``, ``8.0``, ``"8"``), ``boolean`` a
      bool (``"true"``); strings that look like these arrive from ``--config`` (read with YAML's
      BaseLoader) and from YAML's number rules. Values that do not convert are left for the schema
      validation to reject with its message.

    Applied before validation (so a valid value is not refused for its spelling) and after it (so the
    defaults it filled in take their place in the order). Idempotent. ``schema`` defaults to
    ``schemas/config.schema.yaml``, the one the workflow validates against.
    """
    schema = _schema() if schema is None else schema
    return _canonical(config, schema, schema)


def _canonical(value: Any, node: Mapping[str, Any] | None, root: Mapping[str, Any]) -> Any:
    schema = _resolve(node, root) if isinstance(node, Mapping) else {}
    kind = schema.get("type")
    if isinstance(value, Mapping):
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        extra = extra if isinstance(extra, Mapping) else None
        ordered = [k for k in properties if k in value] + [k for k in value if k not in properties]
        return {k: _canonical(value[k], properties.get(k, extra), root) for k in ordered}
    if isinstance(value, (list, tuple)):
        items = schema.get("items")
        return [_canonical(v, items if isinstance(items, Mapping) else None, root) for v in value]
    if kind == "string" and isinstance(value, bool) and str(value).lower() in schema.get("enum", ()):
        return str(value).lower()  # `labels: true` unquoted means the label source "true"
    if kind == "boolean" and isinstance(value, str) and value.lower() in _BOOLEAN_WORDS:
        return _BOOLEAN_WORDS[value.lower()]
    if kind in ("number", "integer") and not isinstance(value, bool):
        number = _as_number(value)
        if number is None:
            return value
        if kind == "integer":
            return int(number) if float(number).is_integer() else value
        return float(number)
    return value


def _as_number(value: Any) -> float | int | None:
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            try:
                return float(value)
            except ValueError:
                return None
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m resdyn.config FILE...``: check config files strictly (:func:`check_config_files`);
    prints the file and line of the first problem (Snakemake's loader says only "not valid JSON or YAML")."""
    import sys

    paths = list(sys.argv[1:] if argv is None else argv)
    try:
        check_config_files(paths)
    except InputError as err:
        print(err, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
