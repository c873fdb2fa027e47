"""Bad input to the analysis stages: a clear error naming the file, key or value, and no half-written output.

The files here are written in the real formats of docs/ARCHITECTURE.md and run through the same driver
functions the Snakemake entry points call (resdyn.stages).
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from resdyn import constants, distances, stages, tables
from resdyn.artifacts import Constants, DatasetFile, Lipschitz, Pairs, Shadowing, Trajectories
from resdyn.config import schema_defaults
from resdyn.io import InputError, atomic_output, read_json, write_json
from resdyn.readings import Reading
from resdyn.runs import Run

ANALYSIS = schema_defaults("analysis")  # chunk, curve_quantiles
LIPSCHITZ = schema_defaults("lipschitz")  # solver, eps
RUN = Run("synthetic", "none")
"""The run of the synthetic trajectories (the reading ``definition`` with true labels)."""


def pairwise_shard(trajectories: Path, out: Path, item: str, *, run: Run = RUN, chunk: int = 4) -> None:
    stages.pairwise_shard(trajectories, out, item, run=run, chunk=chunk, device="cpu")


def shadowing_shard(trajectories: Path, pairs: Path, out: Path, item: str, *, run: Run = RUN) -> None:
    stages.shadowing_shard(trajectories, pairs, out, item, run=run, chunk=ANALYSIS["chunk"])


def gather_shadowing(shards: list[Path], *outputs: Path, run: Run = RUN) -> dict:
    return stages.gather_shadowing(shards, *outputs, run=run, quantiles=ANALYSIS["curve_quantiles"])


def lipschitz_stage(trajectories: Path, out: Path) -> dict:
    return stages.lipschitz(trajectories, out, **LIPSCHITZ, device="cpu")


def write_trajectory_file(path: Path, probs: np.ndarray, labels: np.ndarray, n_classes: int) -> Path:
    """A trajectories.h5 in the method §6 layout for the given probabilities (head: a random linear map)."""
    n, depths, _ = probs.shape
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as handle:
        handle["probs"] = probs
        handle["logits"] = np.log(np.clip(probs, 1e-300, None)).astype(np.float32)
        handle["labels"] = labels.astype(np.int64)
        handle["pred"] = probs[:, -1].argmax(axis=1).astype(np.int64)
        handle["index"] = np.arange(n, dtype=np.int64)
        order = np.zeros(n, dtype=np.int64)
        for c in range(n_classes):
            members = np.flatnonzero(labels == c)
            order[members] = np.arange(1, members.size + 1)
        handle["order_in_class"] = order
        handle["head/weight"] = rng.normal(size=(n_classes, 16))
        handle["head/bias"] = rng.normal(size=n_classes)
        handle.attrs["class_names"] = [str(c) for c in range(n_classes)]
        handle.attrs.update(dataset="synthetic", model="none", T=depths - 1, n=16)
    return path


def random_probs(n: int, depths: int, n_classes: int, seed: int = 0) -> np.ndarray:
    logits = np.random.default_rng(seed).normal(size=(n, depths, n_classes))
    e = np.exp(logits - logits.max(axis=2, keepdims=True))
    return e / e.sum(axis=2, keepdims=True)


@pytest.fixture
def trajectories(tmp_path: Path) -> Path:
    labels = np.repeat(np.arange(3), 6)
    return write_trajectory_file(tmp_path / "trajectories.h5", random_probs(18, 4, 3), labels, 3)


def test_shards_and_gather_match_the_brute_force(trajectories, tmp_path):
    shards = []
    for k in range(1, 4):
        out = tmp_path / f"pairs_{k}-of-3.h5"
        pairwise_shard(trajectories, out, f"{k}-of-3")
        shards.append(out)
    stages.gather_pairwise(shards, tmp_path / "pairs.h5", run=RUN)
    merged = Pairs.load(tmp_path / "pairs.h5").result
    traj = Trajectories.load(trajectories)
    reference = distances.pairwise_bruteforce(traj.probs, traj.labels, len(traj.class_names))
    assert merged.expansive == reference.expansive
    assert list(merged.expansive_pair) == list(reference.expansive_pair)
    np.testing.assert_array_equal(merged.nn_index, reference.nn_index)


def test_predicted_labels_switch(trajectories, tmp_path):
    traj = Trajectories.load(trajectories)
    y = traj.class_labels("predicted")
    np.testing.assert_array_equal(y, traj.probs[:, -1].argmax(axis=1))
    with pytest.raises(InputError, match="analysis.labels = 'guessed'"):
        traj.class_labels("guessed")


@pytest.mark.parametrize("item", ["0-of-3", "4-of-3", "one-of-3", "3"])
def test_bad_scatter_item_is_named(item):
    with pytest.raises(InputError, match=repr(item).replace("-", r"\-")):
        stages.parse_scatteritem(item)


def test_truncated_trajectories_name_the_file_and_leave_no_output(trajectories, tmp_path):
    data = trajectories.read_bytes()
    trajectories.write_bytes(data[: len(data) // 3])
    out = tmp_path / "pairs_1-of-1.h5"
    with pytest.raises(InputError, match="trajectories.h5"):
        pairwise_shard(trajectories, out, "1-of-1")
    assert not out.exists() and not list(tmp_path.glob(".*tmp*"))


def test_nan_probabilities_are_refused(tmp_path):
    probs = random_probs(6, 3, 2)
    probs[4, 1, 0] = np.nan
    path = write_trajectory_file(tmp_path / "trajectories.h5", probs, np.array([0, 1] * 3), 2)
    with pytest.raises(InputError, match="NaN"):
        pairwise_shard(path, tmp_path / "out.h5", "1-of-1")
    assert not (tmp_path / "out.h5").exists()


def test_missing_key_is_named(trajectories, tmp_path):
    with h5py.File(trajectories, "a") as handle:
        del handle["labels"]
    with pytest.raises(InputError, match="labels"):
        pairwise_shard(trajectories, tmp_path / "out.h5", "1-of-1")
    assert not (tmp_path / "out.h5").exists()


def test_label_outside_the_class_range_is_named(tmp_path):
    path = write_trajectory_file(tmp_path / "trajectories.h5", random_probs(6, 3, 2), np.array([0, 1] * 3), 2)
    with h5py.File(path, "a") as handle:
        handle["labels"][3] = 7
    with pytest.raises(InputError, match="7"):
        pairwise_shard(path, tmp_path / "out.h5", "1-of-1")
    assert not (tmp_path / "out.h5").exists()


def run_analysis(trajectories: Path, tmp_path: Path, *, labels: str = "true", shards: int = 2) -> dict:
    """Every analysis stage on a trajectories file, as the workflow chains them; returns constants.json."""
    run = Run("synthetic", "none", reading=Reading(labels=labels))
    parts = []
    for k in range(1, shards + 1):
        parts.append(tmp_path / f"pairs_{k}-of-{shards}.h5")
        pairwise_shard(trajectories, parts[-1], f"{k}-of-{shards}", run=run)
    pairs = tmp_path / "pairs.h5"
    stages.gather_pairwise(parts, pairs, run=run)
    shadowing_shard(trajectories, pairs, tmp_path / "s.h5", "1-of-1", run=run)
    shadowing_h5 = tmp_path / "shadowing.h5"
    gather_shadowing([tmp_path / "s.h5"], shadowing_h5, tmp_path / "c.csv", tmp_path / "c.png", run=run)
    lipschitz_stage(trajectories, tmp_path / "lipschitz.json")
    return stages.constants(
        tmp_path / "constants.json",
        trajectories_path=trajectories,
        pairs_path=pairs,
        shadowing_path=shadowing_h5,
        lipschitz_path=tmp_path / "lipschitz.json",
        run=run,
    )


@pytest.mark.parametrize("labels", ["true", "predicted"])
def test_single_class_finishes_with_an_undefined_expansive_constant(tmp_path, labels):
    probs = random_probs(6, 3, 2)
    probs[:, -1] = [0.9, 0.1]  # every prediction is class 0 as well
    path = write_trajectory_file(tmp_path / "trajectories.h5", probs, np.zeros(6, int), 2)
    result = run_analysis(path, tmp_path, labels=labels)
    expansive = result["g_expansive"]
    assert expansive["value"] is None and expansive["pair"] is None and expansive["t_star"] is None
    assert "no different-class pair: all 6 test images" in expansive["undefined_reason"]
    assert f"{labels} label(s) ['0']" in expansive["undefined_reason"]
    # Nearest neighbours need no labels: shadowing is still defined.
    assert result["g_shadowing"]["curve"]["quantiles"] is not None
    table = tables.table2({("synthetic", "none"): Constants.load(tmp_path / "constants.json")})
    assert table.loc[0, "g-expansive"] == tables.UNDEFINED
    assert table.loc[0, "t*"] == tables.UNDEFINED
    # Table 3 and the figures accept a run without class pairs.
    loaded = (Pairs.load(tmp_path / "pairs.h5"), Trajectories.load(path))
    assert tables.table3({("synthetic", "none"): loaded}, 4).empty
    images = np.zeros((6, 3, 32, 32), np.uint8)
    data_h5 = tmp_path / "data.h5"
    DatasetFile(
        {"train": (images, np.array([0, 1] * 3)), "test": (images, np.zeros(6, np.int64))},
        ["0", "1"],
        dataset="synthetic",
        source="npz",
        origin="test",
    ).save(data_h5)
    pngs = {
        name: tmp_path / f"{name}.png" for name in ("figure2_png", "figure3_png", "pairs_png", "orbit_png")
    }
    stages.figures(
        Run("synthetic", "none", reading=Reading(labels=labels)),
        data_path=data_h5,
        trajectories_path=path,
        pairs_path=tmp_path / "pairs.h5",
        shadowing_path=tmp_path / "shadowing.h5",
        constants_path=tmp_path / "constants.json",
        orbit_table_stem=tmp_path / "orbit",
        k=4,
        **pngs,
    )
    assert all(png.stat().st_size > 0 for png in pngs.values())


def test_predicted_labels_report_the_predicted_and_the_true_classes(tmp_path):
    probs = random_probs(12, 3, 3, seed=3)
    true = np.repeat(np.arange(3), 4)
    path = write_trajectory_file(tmp_path / "trajectories.h5", probs, true, 3)
    predicted = probs[:, -1].argmax(axis=1)
    assert (predicted != true).any()  # the data must exercise a disagreement
    result = run_analysis(path, tmp_path, labels="predicted")["g_expansive"]
    reference = distances.pairwise_bruteforce(probs, predicted, 3)
    i, j = reference.expansive_pair
    assert result["value"] == reference.expansive and result["pair"] == [i, j]
    assert result["labels"] == "predicted"
    assert result["classes"] == [str(predicted[i]), str(predicted[j])]
    assert result["classes"][0] != result["classes"][1]
    assert result["true_classes"] == [str(true[i]), str(true[j])]
    # With true labels the classes are the true ones and no second list is written.
    (tmp_path / "true").mkdir()
    true_result = run_analysis(path, tmp_path / "true")
    assert "true_classes" not in true_result["g_expansive"]
    ti, tj = true_result["g_expansive"]["pair"]
    assert true_result["g_expansive"]["classes"] == [str(true[ti]), str(true[tj])]


def test_gathered_pairs_describe_the_whole_not_shard_0(trajectories, tmp_path):
    run_analysis(trajectories, tmp_path, shards=3)
    with h5py.File(tmp_path / "pairs.h5") as handle:
        attrs = dict(handle.attrs)
    assert not {"shard", "start", "stop"} & set(attrs)
    assert attrs["n_shards"] == 3 and attrs["N"] == 18 and attrs["labels"] == "true"
    with h5py.File(tmp_path / "pairs_2-of-3.h5") as handle:  # a shard still says which rows it holds
        assert {"shard", "start", "stop"} <= set(handle.attrs)


def test_uncertified_lipschitz_gives_no_theorem1_bound(trajectories, tmp_path, monkeypatch, caplog):
    """A multi-layer head whose LipSDP certificate fails: flagged, warned, marked, and no T_g bound."""
    from resdyn import lipschitz

    with h5py.File(trajectories, "a") as handle:
        rng = np.random.default_rng(1)
        del handle["head/weight"], handle["head/bias"]
        handle["head/layers/0/weight"] = rng.normal(size=(5, 16))
        handle["head/layers/0/bias"] = rng.normal(size=5)
        handle["head/layers/1/weight"] = rng.normal(size=(3, 5))
        handle["head/layers/1/bias"] = rng.normal(size=3)
    # The float64 check finds no ρ (as for a badly converged solve): the certificate cannot be formed.
    monkeypatch.setattr(lipschitz, "certify_rho", lambda weights, multipliers: float("inf"))
    with caplog.at_level("WARNING", logger="resdyn.lipschitz"):
        result = run_analysis(trajectories, tmp_path)
    assert "Lip_FC is NOT certified" in caplog.text
    lip = read_json(tmp_path / "lipschitz.json")
    assert lip["certified"] is False and "uncertified_reason" in lip["details"]
    assert result["lip"]["certified"] is False
    bounds = result["t_g_lower"]
    assert bounds["paper"] is None and bounds["curve_lip_g"] is None
    assert "not certified" in bounds["undefined_reason"]
    paper_sh = result["g_shadowing"]["paper"]["value"]
    if paper_sh is not None:
        assert bounds["uncertified_estimates"]["paper"] == pytest.approx(paper_sh / lip["fc"])
    table = tables.table2({("synthetic", "none"): Constants.load(tmp_path / "constants.json")})
    assert table.loc[0, "Lip_FC"].endswith(tables.UNCERTIFIED)
    assert table.loc[0, "T_g ≥ Sh/Lip_FC"] == tables.UNDEFINED


def test_certified_lipschitz_is_flagged_and_bounds_stay(trajectories, tmp_path):
    result = run_analysis(trajectories, tmp_path)
    assert result["lip"]["certified"] is True
    assert read_json(tmp_path / "lipschitz.json")["certified"] is True
    assert "undefined_reason" not in result["t_g_lower"]


def test_gather_refuses_incomplete_shards(trajectories, tmp_path):
    pairwise_shard(trajectories, tmp_path / "a.h5", "1-of-2")
    pairs = tmp_path / "pairs.h5"
    # shard_rows balances the i < j pairs, so the first of two shards of 18 rows holds rows 0..6.
    with pytest.raises(InputError, match="cover rows 0..6 only, expected 0..18"):
        stages.gather_pairwise([tmp_path / "a.h5"], pairs, run=RUN)
    assert not pairs.exists()


@pytest.mark.parametrize(
    "reading",
    [
        Reading(labels="predicted"),
        Reading("blocks", depths="blocks"),
        Reading("tau", temperature_expansive=1000.0, temperature_shadowing=1000.0),
    ],
    ids=lambda r: f"{r.name}-{r.labels}",
)
def test_gather_refuses_shards_of_another_reading(trajectories, tmp_path, reading):
    """A stale shard (computed for another label source, first depth or temperature than the run's reading)
    is named, and nothing is gathered."""
    pairwise_shard(trajectories, tmp_path / "a.h5", "1-of-2")
    pairwise_shard(trajectories, tmp_path / "b.h5", "2-of-2")
    pairs = tmp_path / "pairs.h5"
    with pytest.raises(
        InputError, match=r"a\.h5: shard of labels 'true', first depth 0, temperature 1.*stale"
    ):
        stages.gather_pairwise([tmp_path / "a.h5", tmp_path / "b.h5"], pairs, run=RUN.with_reading(reading))
    assert not pairs.exists()


def test_shadowing_gather_refuses_a_gap(trajectories, tmp_path):
    shards = []
    for k in (1, 2):
        out = tmp_path / f"pairs_{k}.h5"
        pairwise_shard(trajectories, out, f"{k}-of-2")
        shards.append(out)
    pairs = tmp_path / "pairs.h5"
    stages.gather_pairwise(shards, pairs, run=RUN)
    shadowing_shard(trajectories, pairs, tmp_path / "s1.h5", "1-of-3")
    shadowing_shard(trajectories, pairs, tmp_path / "s3.h5", "3-of-3")
    outputs = [tmp_path / name for name in ("shadowing.h5", "curve.csv", "curve.png")]
    with pytest.raises(InputError, match="do not tile"):
        gather_shadowing([tmp_path / "s1.h5", tmp_path / "s3.h5"], *outputs)
    assert not any(p.exists() for p in outputs)


def test_constants_name_a_missing_lipschitz_key(trajectories, tmp_path):
    shard = tmp_path / "pairs_1.h5"
    pairwise_shard(trajectories, shard, "1-of-1")
    pairs = tmp_path / "pairs.h5"
    stages.gather_pairwise([shard], pairs, run=RUN)
    shadowing_shard(trajectories, pairs, tmp_path / "s.h5", "1-of-1")
    shadowing_h5 = tmp_path / "shadowing.h5"
    gather_shadowing([tmp_path / "s.h5"], shadowing_h5, tmp_path / "c.csv", tmp_path / "c.png")
    lip = tmp_path / "lipschitz.json"
    write_json(lip, {"fc": 2.0})
    paths = dict(
        trajectories_path=trajectories, pairs_path=pairs, shadowing_path=shadowing_h5, lipschitz_path=lip
    )
    with pytest.raises(InputError, match="lipschitz.json: missing key 'g'"):
        stages.constants(tmp_path / "constants.json", **paths, run=RUN)
    assert not (tmp_path / "constants.json").exists()
    lipschitz_stage(trajectories, lip)
    # assemble_constants takes the loaded files and the reading, which must be the one pairs.h5 was made for.
    loaded = (
        Trajectories.load(trajectories),
        Pairs.load(pairs),
        Shadowing.load(shadowing_h5),
        Lipschitz.load(lip),
    )
    with pytest.raises(InputError, match=r"pairs\.h5: computed with labels 'true' from depth 0, but reading"):
        constants.assemble_constants(*loaded, Reading(labels="predicted"))
    assert constants.assemble_constants(*loaded, Reading())["g_expansive"]["labels"] == "true"
    result = stages.constants(tmp_path / "constants.json", **paths, run=RUN)
    with h5py.File(trajectories) as handle:
        norm = np.linalg.norm(handle["head/weight"][()], 2)
    assert result["lip"]["fc"] == pytest.approx(norm, rel=1e-12)
    assert result["lip"]["g"] == pytest.approx(norm / 2, rel=1e-12)
    paper = result["g_shadowing"]["paper"]["value"]
    assert result["t_g_lower"]["paper"] == pytest.approx(paper / norm)
    assert read_json(tmp_path / "constants.json") == json.loads(json.dumps(result))


def test_theorem1_bound():
    assert constants.theorem1_lower_bound(2.3583, 3.38) == pytest.approx(0.6977, abs=1e-4)  # paper Table 2
    assert constants.theorem1_lower_bound(None, 3.0) is None
    with pytest.raises(InputError):
        constants.theorem1_lower_bound(1.0, 0.0)


def test_atomic_output_keeps_the_previous_file_on_error(tmp_path):
    target = tmp_path / "result.json"
    write_json(target, {"value": 1})
    with pytest.raises(RuntimeError):
        with atomic_output(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert read_json(target) == {"value": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_json_refuses_nan(tmp_path):
    with pytest.raises(ValueError, match=r"\$.lip.fc"):
        write_json(tmp_path / "x.json", {"lip": {"fc": float("nan")}})
    assert not (tmp_path / "x.json").exists()


def test_results_record_the_software_versions(trajectories, tmp_path):
    from importlib import metadata

    result = run_analysis(trajectories, tmp_path)
    versions = read_json(tmp_path / "constants.json")["versions"]
    assert versions == result["versions"]
    assert set(versions) == {"python", "torch", "numpy", "cvxpy", "scs", "snakemake"}
    assert versions["numpy"] == np.__version__ == metadata.version("numpy")
    assert versions["torch"] == metadata.version("torch")


# ---------------------------------------------------------------------------------------------------------
# Issue 25: model.pt and probes.pt verified on load; atomic outputs leave no debris after a SIGKILL
# ---------------------------------------------------------------------------------------------------------
TINY_ENTRY = {"blocks": [1, 1, 1, 1], "width": 16}


def _tiny_model_file(path: Path) -> tuple[Path, dict]:
    import torch

    from resdyn.artifacts import save_model
    from resdyn.model import build_model

    torch.manual_seed(0)
    model = build_model(TINY_ENTRY, 3)
    save_model(path, model, TINY_ENTRY, 3, ["a", "b", "c"])
    return path, {k: v.clone() for k, v in model.state_dict().items()}


def _flip_a_bit_of(path: Path, tensor) -> None:
    """Flip one bit inside ``tensor``'s bytes as stored in the torch file (the zip entry stays readable)."""
    raw = bytearray(path.read_bytes())
    needle = tensor.contiguous().numpy().tobytes()
    offset = raw.find(needle)
    assert offset >= 0 and raw.find(needle, offset + 1) < 0
    raw[offset + len(needle) // 2] ^= 0x10
    path.write_bytes(bytes(raw))


def test_model_checksum_recorded_and_verified(tmp_path):
    import torch

    from resdyn.artifacts import CHECKSUM_KEY, load_model, tensors_checksum

    path, state = _tiny_model_file(tmp_path / "model.pt")
    payload = torch.load(path, weights_only=True)
    assert payload[CHECKSUM_KEY] == tensors_checksum({f"state_dict.{k}": v for k, v in state.items()})
    model, _ = load_model(path)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())


def test_flipped_bit_in_model_weights_names_the_file_and_the_rebuild(tmp_path):
    from resdyn.artifacts import load_model

    path, state = _tiny_model_file(tmp_path / "model.pt")
    name = max(state, key=lambda k: state[k].numel())
    _flip_a_bit_of(path, state[name])
    before = path.read_bytes()
    with pytest.raises(InputError, match=f"{path}: model file is corrupt.*sha256") as info:
        load_model(path)
    assert f"snakemake --forcerun {path}" in str(info.value)
    assert path.read_bytes() == before  # the evidence is kept, nothing is deleted


def test_truncated_and_foreign_model_files_name_the_rebuild(tmp_path):
    import torch

    from resdyn.artifacts import load_model

    path, _ = _tiny_model_file(tmp_path / "model.pt")
    whole = path.read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(whole[: len(whole) // 2])
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    checkpoint = tmp_path / "checkpoint.pt"  # the training checkpoint given by mistake
    torch.save({"format": 1, "model": {}, "epoch": 1}, checkpoint)
    for bad, message in (
        (truncated, "not a readable model file, truncated or corrupt"),
        (foreign, "not a resdyn model file, it lacks key"),
        (checkpoint, "not a resdyn model file, it lacks key"),
        (tmp_path, "a directory, not a model file"),
    ):
        with pytest.raises(InputError, match=message) as info:
            load_model(bad)
        assert str(bad) in str(info.value)
        if bad != tmp_path:
            assert "snakemake --forcerun" in str(info.value)


def test_model_file_without_checksum_loads_with_a_warning(tmp_path, caplog):
    """model.pt files written before the checksum existed stay usable (no retraining), unverified."""
    import torch

    from resdyn.artifacts import CHECKSUM_KEY, load_model

    path, state = _tiny_model_file(tmp_path / "model.pt")
    payload = torch.load(path, weights_only=True)
    del payload[CHECKSUM_KEY]
    torch.save(payload, path)
    with caplog.at_level("WARNING", logger="resdyn.artifacts"):
        model, _ = load_model(path)
    assert "written before resdyn recorded its checksum" in caplog.text and str(path) in caplog.text
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())


def test_flipped_bit_in_probes_is_refused(tmp_path):
    import torch

    from resdyn.artifacts import ProbeHeads

    weight = torch.randn(5, 3, 40, generator=torch.Generator().manual_seed(0))
    path = tmp_path / "probes.pt"
    ProbeHeads(weight, torch.zeros(5, 3), ["a", "b", "c"], {"epochs": 1}, []).save(path)
    assert torch.equal(ProbeHeads.load(path).weight, weight)
    _flip_a_bit_of(path, weight)
    with pytest.raises(InputError, match=f"{path}: probes file is corrupt"):
        ProbeHeads.load(path)


_KILLED_WRITER = """
import sys, time
import torch
from resdyn import artifacts
from resdyn.model import build_model

real_save = torch.save
def save_then_hang(obj, target):
    real_save(obj, target)      # the temporary is complete on disk ...
    print("written", flush=True)
    time.sleep(60)              # ... and the job is killed before the rename
torch.save = save_then_hang
torch.manual_seed(1)
model = build_model({"blocks": [1, 1, 1, 1], "width": 16}, 3)
artifacts.save_model(sys.argv[1], model, {"blocks": [1, 1, 1, 1], "width": 16}, 3, ["a", "b", "c"])
"""


def test_sigkill_mid_write_leaves_the_old_file_and_a_rerun_removes_the_debris(tmp_path):
    """A real writer (save_model) killed with SIGKILL between writing its temporary and the rename:
    the previous model.pt is intact, the temporary survives the kill, and the next write of the same
    target removes it."""
    import os
    import signal
    import subprocess
    import sys

    import torch

    from resdyn.artifacts import load_model

    path, state = _tiny_model_file(tmp_path / "model.pt")
    before = path.read_bytes()
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, str(path)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert proc.stdout.readline().strip() == "written"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    debris = [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name]
    assert debris == [f".model.pt.tmp-{proc.pid}"]
    assert path.read_bytes() == before  # the killed job did not touch the finished file
    # A temporary of another target in the same folder is not this writer's to remove.
    other = tmp_path / f".other.h5.tmp-{proc.pid}"
    other.write_bytes(b"x")
    # The rerun (the same writer, run to completion) leaves the new file and no debris of its target.
    _tiny_model_file(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [other.name, "model.pt"]
    model, _ = load_model(path)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())


def test_training_checkpoint_temporaries_are_removed_by_the_rerun(tmp_path):
    """The resumable training checkpoint (and the probes', written the same way) goes through
    atomic_output, so the temporaries of a job killed mid-checkpoint are removed by the rerun's first
    checkpoint write; the log's too."""
    import torch

    from resdyn.io import temporary_siblings
    from resdyn.model import build_model
    from resdyn.train import train

    checkpoint, log_csv = tmp_path / "checkpoint.pt", tmp_path / "train_log.csv"
    stale = [tmp_path / ".checkpoint.pt.tmp-12345", tmp_path / ".train_log.csv.tmp-4194303"]
    for path in stale:
        path.write_bytes(b"half written by a killed job")
    assert temporary_siblings(checkpoint) == stale[:1]
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (8, 3, 32, 32), dtype=np.uint8)
    train(
        build_model(TINY_ENTRY, 2),
        images,
        np.arange(8) % 2,
        epochs=1,
        lr=1e-3,
        batch_size=4,
        seed=0,
        device="cpu",
        checkpoint_path=checkpoint,
        log_path=log_csv,
    )
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]
