"""The run: one analysis of one trained network, and the one path scheme of its files.

A run is named by its *axes*: the dataset, the model, the training replicate k (method §3.6: seed + k − 1),
the epoch whose weights it analyses (the config's ``checkpoints``; none: the last epoch, the main run) and
the reading (method §3.4: the estimator choices applied to the network's trajectories). The first four
name a *trained network*: its training folder holds every file that does not depend on the reading
(model.pt, metrics.json, trajectories.h5, lipschitz.json, robustness.csv, probes/; train_log.csv only in
the last epoch's, which the training job writes). The reading's analysis (pairs.h5, shadowing.h5,
constants.json, sample_size.*, figures/, tables/) lives in the run folder: the training folder itself for
the reading ``definition``, else ``<training folder>/readings/<reading>``::

    <dataset>/<model>[/replicates/<k>][/epochs/<e>][/readings/<reading>]

Replicate 1, the last epoch and the reading ``definition`` add no component, so the main run keeps the
per-run folder ``<dataset>/<model>`` of method §7. Names are single path components (the schema allows
letters, digits, ``_`` and ``-``), and the fixed words ``replicates``, ``epochs`` and ``readings`` sit
between them, so two different runs never share a folder, whatever their names. Paths here are relative
to the results folder.

The workflow resolves every run once (:func:`configured_runs`), passes :meth:`Run.params` to its jobs and
rebuilds the run from them (:meth:`Run.from_params`); stage functions take the :class:`Run`.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from resdyn.io import InputError
from resdyn.readings import DEFINITION, Reading, reading_settings

PROBES_FOLDER = "probes"
"""Sub-folder of a training folder holding the per-depth probes' files (method §3.5)."""


@dataclass(frozen=True)
class Run:
    """One run: a trained network (dataset, model, replicate, epoch) under one reading. ``epoch`` None is
    the network after its last training epoch (the main run); an integer e, its weights after epoch e of
    the same training job."""

    dataset: str
    model: str
    replicate: int = 1
    reading: Reading = field(default_factory=Reading)
    epoch: int | None = None

    def __post_init__(self) -> None:
        for key in ("dataset", "model"):
            value = getattr(self, key)
            if not isinstance(value, str) or not value or "/" in value:
                raise InputError(f"run: {key} = {value!r}; expected a non-empty name without '/'")
        if isinstance(self.replicate, bool) or not isinstance(self.replicate, int) or self.replicate < 1:
            raise InputError(f"run: replicate = {self.replicate!r}; expected an integer >= 1")
        if self.epoch is not None and (
            isinstance(self.epoch, bool) or not isinstance(self.epoch, int) or self.epoch < 1
        ):
            raise InputError(f"run: epoch = {self.epoch!r}; expected an integer >= 1 or None (the last)")

    # ---- the path scheme ----------------------------------------------------------------------------
    @property
    def training_folder(self) -> str:
        """``<dataset>/<model>[/replicates/<k>][/epochs/<e>]``: the trained network's files."""
        if self.epoch is None:
            return self.training_job_folder
        return snapshot_folder(self.training_job_folder, self.epoch)

    @property
    def training_job_folder(self) -> str:
        """``<dataset>/<model>[/replicates/<k>]``: the folder of the training job that produced the
        network's weights, whatever the epoch (its model.pt is the last epoch's)."""
        parts = [self.dataset, self.model]
        if self.replicate > 1:
            parts += ["replicates", str(self.replicate)]
        return posixpath.join(*parts)

    @property
    def folder(self) -> str:
        """The run folder: the training folder for the reading ``definition``, else
        ``<training folder>/readings/<reading>``."""
        if self.reading.name == DEFINITION:
            return self.training_folder
        return posixpath.join(self.training_folder, "readings", self.reading.name)

    def file(self, name: str) -> str:
        """A file of the run's own analysis: ``<run folder>/<name>``."""
        return posixpath.join(self.folder, name)

    def trained_file(self, name: str) -> str:
        """A file of the trained network: ``<training folder>/<name>``."""
        return posixpath.join(self.training_folder, name)

    def source(self, name: str) -> str:
        """The trajectories.h5 or lipschitz.json the reading reads: the probes' own (under probes/) for a
        reading with ``head: probes`` (method §3.5), else the trained network's."""
        if self.reading.head == "probes":
            return posixpath.join(self.training_folder, PROBES_FOLDER, name)
        return self.trained_file(name)

    @property
    def is_trained_run(self) -> bool:
        """Whether the run folder is the training folder (the reading ``definition``)."""
        return self.reading.name == DEFINITION

    # ---- names and parameters -----------------------------------------------------------------------
    @property
    def network(self) -> str:
        """``dataset / model``, for k >= 2 ``replicate k`` and for an earlier epoch ``epoch e``: the
        trained network, for titles."""
        parts = [self.dataset, self.model]
        if self.replicate > 1:
            parts.append(f"replicate {self.replicate}")
        if self.epoch is not None:
            parts.append(f"epoch {self.epoch}")
        return " / ".join(parts)

    @property
    def title(self) -> str:
        """The network's name and, for a reading other than ``definition``, ``reading <name>``."""
        return self.network if self.is_trained_run else f"{self.network} / reading {self.reading.name}"

    def params(self) -> dict[str, Any]:
        """The canonical params of the run (Snakemake compares params by repr: equal meanings give equal
        values, so only a change of meaning reruns a job)."""
        params: dict[str, Any] = {
            "dataset": self.dataset,
            "model": self.model,
            "replicate": self.replicate,
            "reading": {"name": self.reading.name, **self.reading.settings()},
        }
        # the last epoch adds no key, so a main run's params (and what it reruns) are what they were
        # before the epoch axis existed
        if self.epoch is not None:
            params["epoch"] = self.epoch
        return params

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Run:
        """The run of :meth:`params` (as a job receives them)."""
        unknown = set(params) - {"dataset", "model", "replicate", "epoch", "reading"}
        if unknown:
            raise InputError(f"run params: unknown key(s) {sorted(unknown)}")
        reading = dict(params["reading"])
        name = reading.pop("name")
        epoch = params.get("epoch")
        return cls(
            str(params["dataset"]),
            str(params["model"]),
            int(params["replicate"]),
            Reading.from_settings(name, reading) if reading else Reading(name),
            None if epoch is None else int(epoch),
        )

    def with_reading(self, reading: Reading) -> Run:
        return replace(self, reading=reading)

    @property
    def is_last_epoch(self) -> bool:
        """Whether the run analyses the network after its last epoch (the main run of its replicate)."""
        return self.epoch is None


def snapshot_folder(training_job_folder: str, epoch: int) -> str:
    """``<training job folder>/epochs/<e>``: where the network after epoch ``e`` of that training job lives
    (the training job writes its model.pt; every other file of that network follows it there)."""
    return posixpath.join(training_job_folder, "epochs", str(epoch))


def config_reading(config: Mapping[str, Any], name: str) -> Reading:
    """The reading ``name`` of the validated config (the definition's labels: ``analysis.labels``)."""
    return Reading.from_settings(
        name, reading_settings(config["readings"], name, config["analysis"]["labels"])
    )


def configured_runs(config: Mapping[str, Any]) -> list[Run]:
    """Every run the validated config asks for, in config order: datasets × models × replicates 1..K ×
    epochs (the ``checkpoints`` in increasing order, then the last) × readings (``definition`` first,
    then the ``readings`` block's in their order)."""
    names = [DEFINITION, *(name for name in config["readings"] if name != DEFINITION)]
    readings = [config_reading(config, name) for name in names]
    epochs: list[int | None] = [*sorted(config.get("checkpoints") or []), None]
    return [
        Run(dataset, model, replicate, reading, epoch)
        for dataset in config["datasets"]
        for model in config["models"]
        for replicate in range(1, config["replicates"] + 1)
        for epoch in epochs
        for reading in readings
    ]


def trained_runs(runs: list[Run]) -> list[Run]:
    """The runs of the reading ``definition``: one per trained network, in order."""
    return [run for run in runs if run.is_trained_run]


def last_epoch_runs(runs: list[Run]) -> list[Run]:
    """The runs of the last epoch (the main runs of Tables 1–3 and the readings table), in order."""
    return [run for run in runs if run.is_last_epoch]
