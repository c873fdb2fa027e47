"""The run (resdyn/runs.py): its path scheme, its params round trip and the runs a config asks for."""

from __future__ import annotations

import pytest
from test_readings import AUTHORS

from resdyn.config import canonical_config, schema_defaults
from resdyn.io import InputError
from resdyn.readings import Reading
from resdyn.runs import Run, config_reading, configured_runs, last_epoch_runs, trained_runs

PROBES = Reading("probes", head="probes")


def config(datasets, models, replicates=1, readings=None, labels="true", checkpoints=()) -> dict:
    """A config as the workflow holds it after validation: canonical, with the schema's analysis block."""
    return canonical_config(
        {
            "datasets": {name: {"source": "sklearn-digits"} for name in datasets},
            "models": {name: {"blocks": [1, 1, 1, 1], "width": 16} for name in models},
            "analysis": schema_defaults("analysis") | {"labels": labels},
            "replicates": replicates,
            "readings": {} if readings is None else readings,
            "checkpoints": list(checkpoints),
        }
    )


# ------------------------------------------------------------------------------------------ path scheme


@pytest.mark.parametrize(
    "run, folder",
    [
        (Run("digits", "resnet18"), "digits/resnet18"),
        (Run("digits", "resnet18", 2), "digits/resnet18/replicates/2"),
        (Run("digits", "resnet18", reading=AUTHORS), "digits/resnet18/readings/authors"),
        (Run("digits", "resnet18", 2, AUTHORS), "digits/resnet18/replicates/2/readings/authors"),
        (Run("digits", "resnet18", epoch=4), "digits/resnet18/epochs/4"),
        (Run("digits", "resnet18", 2, AUTHORS, 4), "digits/resnet18/replicates/2/epochs/4/readings/authors"),
    ],
)
def test_folders(run, folder):
    assert run.folder == folder
    assert run.file("pairs.h5") == f"{folder}/pairs.h5"
    training = "digits/resnet18" + ("/replicates/2" if run.replicate == 2 else "")
    assert run.training_job_folder == training
    if run.epoch is not None:
        training += f"/epochs/{run.epoch}"
    assert run.training_folder == training
    assert run.trained_file("model.pt") == f"{training}/model.pt"
    assert run.is_trained_run == (run.reading.name == "definition")
    # Without head: probes a reading reads the trained network's own trajectories and Lipschitz constant.
    assert run.source("trajectories.h5") == f"{training}/trajectories.h5"
    assert run.source("lipschitz.json") == f"{training}/lipschitz.json"


def test_a_probes_reading_reads_the_probes_files():
    run = Run("digits", "resnet18", reading=PROBES)
    assert run.folder == "digits/resnet18/readings/probes"
    assert run.source("trajectories.h5") == "digits/resnet18/probes/trajectories.h5"
    assert run.source("lipschitz.json") == "digits/resnet18/probes/lipschitz.json"
    replicate = Run("digits", "resnet18", 3, PROBES)
    assert replicate.source("trajectories.h5") == "digits/resnet18/replicates/3/probes/trajectories.h5"


def test_names_and_titles():
    assert Run("digits", "resnet18").network == "digits / resnet18"
    assert Run("digits", "resnet18").title == "digits / resnet18"
    assert Run("digits", "resnet18", 2).network == "digits / resnet18 / replicate 2"
    assert Run("digits", "resnet18", reading=AUTHORS).title == "digits / resnet18 / reading authors"
    assert Run("digits", "resnet18", 2, AUTHORS).title == "digits / resnet18 / replicate 2 / reading authors"
    assert Run("digits", "resnet18", 2, AUTHORS).network == "digits / resnet18 / replicate 2"
    assert Run("digits", "resnet18", 2, AUTHORS, 3).title == (
        "digits / resnet18 / replicate 2 / epoch 3 / reading authors"
    )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"dataset": "a/b", "model": "m"}, "dataset = 'a/b'"),
        ({"dataset": "", "model": "m"}, "dataset = ''"),
        ({"dataset": "d", "model": "x/y"}, "model = 'x/y'"),
        ({"dataset": "d", "model": "m", "replicate": 0}, "replicate = 0"),
        ({"dataset": "d", "model": "m", "replicate": True}, "replicate = True"),
        ({"dataset": "d", "model": "m", "replicate": 1.0}, "replicate = 1.0"),
        ({"dataset": "d", "model": "m", "epoch": 0}, "epoch = 0"),
        ({"dataset": "d", "model": "m", "epoch": "2"}, "epoch = '2'"),
    ],
)
def test_bad_names_are_refused(kwargs, message):
    with pytest.raises(InputError, match=message):
        Run(**kwargs)


# ------------------------------------------------------------------------------------------ params


@pytest.mark.parametrize(
    "run",
    [
        Run("digits", "resnet18"),
        Run("digits", "resnet18", 2),
        Run("digits", "resnet18", reading=AUTHORS),
        Run("mnist", "resnet50", 4, PROBES),
        Run("mnist", "resnet50", 4, PROBES, 2),
        Run("d", "m", reading=Reading(labels="predicted")),
        Run("d", "m", reading=Reading("tau", temperature_expansive=1000.0, temperature_shadowing=1000.0)),
    ],
    ids=lambda run: run.folder,
)
def test_params_round_trip(run):
    params = run.params()
    assert Run.from_params(params) == run
    assert repr(Run.from_params(params).params()) == repr(params)
    assert params["reading"]["name"] == run.reading.name


def test_the_last_epoch_keeps_the_params_it_had_before_the_epoch_axis():
    assert "epoch" not in Run("d", "m").params()
    assert Run("d", "m", epoch=2).params()["epoch"] == 2


def test_params_with_an_unknown_key_are_refused():
    with pytest.raises(InputError, match="unknown key.*'wildcards'"):
        Run.from_params(Run("d", "m").params() | {"wildcards": {}})


# ------------------------------------------------------------------------------------------ configured runs


def test_configured_runs_order_and_count():
    cfg = config(["d1", "d2"], ["m1", "m2"], replicates=2, readings={"authors": AUTHORS.settings()})
    runs = configured_runs(cfg)
    assert len(runs) == 2 * 2 * 2 * 2
    expected = [
        (dataset, model, replicate, reading)
        for dataset in ("d1", "d2")
        for model in ("m1", "m2")
        for replicate in (1, 2)
        for reading in ("definition", "authors")
    ]
    assert [(r.dataset, r.model, r.replicate, r.reading.name) for r in runs] == expected
    assert runs[1].reading == AUTHORS and runs[0].reading == Reading()
    assert len({run.folder for run in runs}) == len(runs)
    trained = trained_runs(runs)
    assert [(r.dataset, r.model, r.replicate) for r in trained] == [e[:3] for e in expected[::2]]
    assert all(run.is_trained_run for run in trained)


def test_epochs_are_an_axis_between_replicates_and_readings():
    cfg = config(["d"], ["m"], replicates=2, readings={"authors": AUTHORS.settings()}, checkpoints=[4, 2])
    runs = configured_runs(cfg)
    expected = [
        (replicate, epoch, reading)
        for replicate in (1, 2)
        for epoch in (2, 4, None)
        for reading in ("definition", "authors")
    ]
    assert [(r.replicate, r.epoch, r.reading.name) for r in runs] == expected
    assert len({run.folder for run in runs}) == len(runs) == 12
    last = last_epoch_runs(runs)
    assert [(r.replicate, r.reading.name) for r in last] == [
        (1, "definition"),
        (1, "authors"),
        (2, "definition"),
        (2, "authors"),
    ]
    # every epoch's network is trained by its replicate's one training job
    assert {r.training_job_folder for r in runs} == {"d/m", "d/m/replicates/2"}
    assert len({r.training_folder for r in trained_runs(runs)}) == 6


def test_the_definition_takes_the_configured_labels():
    cfg = config(["d"], ["m"], labels="predicted", readings={"hot": {"temperature": 1000}})
    runs = configured_runs(cfg)
    assert [run.reading.labels for run in runs] == ["predicted", "predicted"]
    assert config_reading(cfg, "definition") == Reading(labels="predicted")
    assert runs[1].reading.temperature_expansive == runs[1].reading.temperature_shadowing == 1000.0


def test_names_that_join_alike_get_different_folders():
    """datasets d, d_x and models x_m, m: "d" + "x_m" and "d_x" + "m" join to the same d_x_m, but every run
    keeps its own folder and files, and no run's files land inside another trained network's folder."""
    cfg = config(["d", "d_x"], ["x_m", "m"])
    runs = configured_runs(cfg)
    assert [(r.dataset, r.model) for r in runs] == [("d", "x_m"), ("d", "m"), ("d_x", "x_m"), ("d_x", "m")]
    folders = [run.folder for run in runs]
    assert folders == ["d/x_m", "d/m", "d_x/x_m", "d_x/m"]
    files = [run.file("figures/figure2.png") for run in runs]
    assert len(set(files)) == 4
    for run in runs:
        for other in runs:
            if other != run:
                assert not run.file("figures/figure2.png").startswith(other.folder + "/")
                assert not run.trained_file("model.pt").startswith(other.training_folder + "/")
    # With replicates and a reading as well, every run's files are still its own.
    cfg = config(["d", "d_x"], ["x_m", "m"], replicates=2, readings={"x": {"over_depths": "min"}})
    runs = configured_runs(cfg)
    assert len(runs) == 16
    assert len({run.file("figures/figure2.png") for run in runs}) == 16
    assert len({run.trained_file("model.pt") for run in trained_runs(runs)}) == 8
