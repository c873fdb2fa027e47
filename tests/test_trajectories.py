"""Trajectory files (method §6, ARCHITECTURE "Trajectories"): schema, float64 probabilities, batching."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from resdyn.artifacts import DatasetFile, Trajectories, load_model, save_model
from resdyn.data import images_to_tensor
from resdyn.io import InputError, file_checksum
from resdyn.model import build_model
from resdyn.runs import Run
from resdyn.stages import record_trajectories as write_trajectories
from resdyn.trajectories import order_in_class

load_split = DatasetFile.load_split


def load_probs(path):
    trajectories = Trajectories.load(path)
    return trajectories.probs, trajectories.labels, trajectories.class_names


def load_head(path):
    return Trajectories.load(path).head


ENTRY = {"blocks": [1, 2, 1, 1], "width": 16}
CLASS_NAMES = ["zero", "one", "two"]
TEST_LABELS = np.array([2, 0, 2, 1, 0, 2, 2, 1, 0, 2, 1], dtype=np.int64)


def randomize_batchnorm(model: torch.nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            c = module.num_features
            module.running_mean.copy_(torch.randn(c, generator=gen) * 0.3)
            module.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
            module.weight.data.copy_(1 + 0.3 * torch.randn(c, generator=gen))
            module.bias.data.copy_(0.3 * torch.randn(c, generator=gen))


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("traj")
    rng = np.random.default_rng(0)
    test_images = rng.integers(0, 256, size=(len(TEST_LABELS), 3, 32, 32)).astype(np.uint8)
    test_images[3] = test_images[1]  # an exact duplicate image: identical trajectories
    train = (
        rng.integers(0, 256, size=(4, 3, 32, 32)).astype(np.uint8),
        np.array([0, 1, 2, 0], dtype=np.int64),
    )
    DatasetFile(
        {"train": train, "test": (test_images, TEST_LABELS)},
        CLASS_NAMES,
        dataset="toy",
        source="npz",
        origin="test",
    ).save(folder / "data.h5")
    paths = {"data": folder / "data.h5"}
    for name, entry in (("linear", ENTRY), ("mlp", {**ENTRY, "head": {"hidden": [20, 9]}})):
        torch.manual_seed(1)
        model = build_model(entry, len(CLASS_NAMES))
        randomize_batchnorm(model, seed=2)
        save_model(folder / f"{name}.pt", model, entry, len(CLASS_NAMES), CLASS_NAMES)
        paths[name] = folder / f"{name}.pt"
    return paths


def dump(files, tmp_path, *, model="linear", batch_size=4, store_states=True, name="trajectories.h5") -> Path:
    out = tmp_path / name
    write_trajectories(
        files[model],
        files["data"],
        out,
        run=Run("toy", model),
        batch_size=batch_size,
        store_states=store_states,
        device="cpu",
    )
    return out


def test_order_in_class_by_hand():
    np.testing.assert_array_equal(order_in_class(np.array([2, 0, 2, 1, 0, 2])), [1, 1, 2, 1, 2, 3])
    np.testing.assert_array_equal(order_in_class(np.array([5, 5, 5])), [1, 2, 3])
    np.testing.assert_array_equal(order_in_class(np.array([1])), [1])
    np.testing.assert_array_equal(order_in_class(np.array([3, 1])), [1, 1])
    assert order_in_class(np.array([], dtype=np.int64)).shape == (0,)
    labels = np.random.default_rng(3).integers(0, 4, size=200)
    expected = [1 + int(np.sum(labels[:i] == labels[i])) for i in range(len(labels))]
    np.testing.assert_array_equal(order_in_class(labels), expected)


def test_schema_and_dtypes(files, tmp_path):
    path = dump(files, tmp_path)
    model, _ = load_model(files["linear"])
    N, T, n, C = len(TEST_LABELS), model.num_blocks, model.state_dim, len(CLASS_NAMES)
    with h5py.File(path, "r") as h5:
        expected = {
            "logits": ((N, T + 1, C), np.float64),
            "probs": ((N, T + 1, C), np.float64),
            "labels": ((N,), np.int64),
            "pred": ((N,), np.int64),
            "index": ((N,), np.int64),
            "order_in_class": ((N,), np.int64),
            "states": ((N, T + 1, n), np.float32),
            "head/weight": ((C, n), np.float64),
            "head/bias": ((C,), np.float64),
        }
        for key, (shape, dtype) in expected.items():
            assert h5[key].shape == shape and h5[key].dtype == dtype, key
        assert h5["states"].chunks == (1, T + 1, n) and h5["states"].compression == "gzip"
        np.testing.assert_array_equal(h5["labels"][()], TEST_LABELS)
        np.testing.assert_array_equal(h5["index"][()], np.arange(N))
        np.testing.assert_array_equal(h5["order_in_class"][()], order_in_class(TEST_LABELS))
        attrs = dict(h5.attrs)
    assert attrs["dataset"] == "toy" and attrs["model"] == "linear"
    assert attrs["T"] == T == 5 and attrs["n"] == n == 1024
    assert [str(c) for c in attrs["class_names"]] == CLASS_NAMES
    assert attrs["model_checksum"] == file_checksum(files["linear"])
    assert attrs["data_checksum"] == file_checksum(files["data"])
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]
    without = dump(files, tmp_path, store_states=False, name="no_states.h5")
    with h5py.File(without, "r") as h5:
        assert "states" not in h5


def test_probabilities_match_a_float64_bruteforce(files, tmp_path):
    path = dump(files, tmp_path)
    model, _ = load_model(files["linear"])
    images, _, _ = load_split(files["data"], "test")
    with torch.no_grad():
        forward_logits = model(images_to_tensor(images)).double().numpy()
    with h5py.File(path, "r") as h5:
        states = torch.from_numpy(h5["states"][()])
    probs, labels, class_names = load_probs(path)
    assert class_names == CLASS_NAMES
    np.testing.assert_array_equal(labels, TEST_LABELS)
    np.testing.assert_allclose(probs.sum(axis=2), 1.0, rtol=0, atol=1e-14)
    # g(x_t) in plain float64 numpy from the float32 states and the stored float64 head
    [(weight, bias)] = load_head(path)
    np.testing.assert_array_equal(weight, model.head.weight.detach().double().numpy())
    z = states.double().numpy() @ weight.T + bias
    expected = np.exp(z - z.max(axis=2, keepdims=True))
    expected /= expected.sum(axis=2, keepdims=True)
    np.testing.assert_allclose(probs, expected, rtol=1e-12, atol=1e-15)
    # the last depth is the model's own prediction
    soft = np.exp(forward_logits - forward_logits.max(axis=1, keepdims=True))
    soft /= soft.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(probs[:, -1], soft, rtol=1e-5, atol=1e-7)
    with torch.no_grad():  # the stored states are the model's, up to float32 rounding of other batch shapes
        reference_states, _ = model.trajectory(images_to_tensor(images))
    np.testing.assert_allclose(states.numpy(), reference_states.numpy(), rtol=1e-5, atol=1e-5)
    with h5py.File(path, "r") as h5:
        # float64 logits from the float32 states: the same numbers the probabilities come from
        np.testing.assert_allclose(h5["logits"][()], z, rtol=1e-12, atol=1e-12)
        stored = h5["logits"][()]
        recomputed = np.exp(stored - stored.max(axis=2, keepdims=True))
        np.testing.assert_allclose(probs, recomputed / recomputed.sum(axis=2, keepdims=True), rtol=1e-13)
        np.testing.assert_array_equal(h5["pred"][()], h5["logits"][:, -1].argmax(axis=1))
        assert h5["pred"][()].tolist() == forward_logits.argmax(axis=1).tolist()
    # the duplicated test image has an identical trajectory
    np.testing.assert_array_equal(probs[1], probs[3])


def test_written_file_does_not_depend_on_the_batch_size(files, tmp_path):
    paths = [dump(files, tmp_path, batch_size=b, name=f"b{b}.h5") for b in (1, 4, 7, 64)]
    with h5py.File(paths[0], "r") as ref:
        keys = [
            "logits",
            "probs",
            "labels",
            "pred",
            "index",
            "order_in_class",
            "states",
            "head/weight",
            "head/bias",
        ]
        for other in paths[1:]:
            with h5py.File(other, "r") as h5:
                for key in keys:
                    np.testing.assert_array_equal(h5[key][()], ref[key][()], err_msg=f"{other.name}: {key}")


def test_multilayer_head_is_stored_layer_by_layer(files, tmp_path):
    path = dump(files, tmp_path, model="mlp", store_states=True)
    layers = load_head(path)
    assert [w.shape for w, _ in layers] == [(20, 1024), (9, 20), (3, 9)]
    with h5py.File(path, "r") as h5:
        assert "head/weight" not in h5 and sorted(h5["head/layers"]) == ["0", "1", "2"]
        z = h5["states"][()].astype(np.float64)
    for k, (weight, bias) in enumerate(layers):
        z = z @ weight.T + bias
        if k < len(layers) - 1:
            z = np.maximum(z, 0.0)
    expected = np.exp(z - z.max(axis=2, keepdims=True))
    expected /= expected.sum(axis=2, keepdims=True)
    probs, _, _ = load_probs(path)
    np.testing.assert_allclose(probs, expected, rtol=1e-12, atol=1e-15)


def test_non_finite_logits_raise_naming_the_model(files, tmp_path):
    model, meta = load_model(files["linear"])
    model.head.bias.data[1] = float("nan")
    bad = tmp_path / "diverged.pt"
    save_model(bad, model, meta["model_entry"], 3, CLASS_NAMES)
    out = tmp_path / "t.h5"
    with pytest.raises(InputError, match="diverged.pt.*non-finite logits for test image 0"):
        write_trajectories(
            bad,
            files["data"],
            out,
            run=Run("toy", "m"),
            batch_size=4,
            store_states=False,
            device="cpu",
        )
    assert not out.exists() and not list(tmp_path.glob(".*tmp*"))


def test_mismatched_class_names_raise(files, tmp_path):
    model, meta = load_model(files["linear"])
    other = tmp_path / "other.pt"
    save_model(other, model, meta["model_entry"], 3, ["x", "y", "z"])
    with pytest.raises(InputError, match="class names"):
        write_trajectories(
            other,
            files["data"],
            tmp_path / "t.h5",
            run=Run("toy", "m"),
            batch_size=4,
            store_states=False,
            device="cpu",
        )


def test_loaders_name_the_bad_file(files, tmp_path):
    path = dump(files, tmp_path, store_states=False)
    broken = tmp_path / "broken.h5"
    with h5py.File(path, "r") as src, h5py.File(broken, "w") as dst:
        for key in ("logits", "labels", "pred", "index", "order_in_class"):
            src.copy(key, dst)
        dst.attrs["class_names"] = src.attrs["class_names"]
    with pytest.raises(InputError, match="broken.h5.*'probs'"):
        load_probs(broken)
    with h5py.File(path, "r") as src, h5py.File(broken, "a") as dst:
        src.copy("probs", dst)
    with pytest.raises(InputError, match="broken.h5.*'head'"):
        load_head(broken)
    nan = tmp_path / "nan.h5"
    with h5py.File(path, "r") as src, h5py.File(nan, "w") as dst:
        for key in ("logits", "labels", "pred", "index", "order_in_class", "head"):
            src.copy(key, dst)
        probs = src["probs"][()]
        probs[2, 1, 0] = np.nan
        dst["probs"] = probs
        dst.attrs["class_names"] = src.attrs["class_names"]
    with pytest.raises(InputError, match="nan.h5.*NaN"):
        load_probs(nan)
