"""Trajectory dumps: how every test image moves through the residual blocks (DESIGN §2, §6).

For test image i the states x_0(i) = s(image_i), x_t(i) = φ_t(x_{t-1}(i)) are taken in canonical
coordinates (:meth:`resdyn.model.RevisedResNet.trajectory`), and the probability trajectory
p_t(i) = g(x_t(i)) = softmax(head(x_t(i))) is stored for t = 0..T. The later stages need distances
between probability vectors down to ~1e-6, so p_t is computed in float64 throughout: the float32 state is
cast to float64 and pushed through a float64 copy of the head before the float64 softmax.

File layout (``trajectories.h5``, ARCHITECTURE "Trajectories"): ``/logits`` (N, T+1, C) float32 = head(x_t)
in float32; ``/probs`` (N, T+1, C) float64; ``/labels``, ``/pred`` (argmax of the float32 logits at t = T),
``/index`` (test index), ``/order_in_class`` (1-based rank among test images of the same true class, in
source order), all int64 (N,); the head as ``/head/weight`` (C, n), ``/head/bias`` (C,) float64 for a linear
head, or ``/head/layers/<k>/weight|bias`` (ReLU between layers, none after the last); optional ``/states``
(N, T+1, n) float32 chunked (1, T+1, n) with gzip; attrs ``dataset``, ``model``, ``T``, ``n``,
``class_names``, ``model_checksum``, ``data_checksum`` (sha256 of the files' bytes).
"""
from __future__ import annotations

import copy
import os

import h5py
import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from resdyn.data import images_to_tensor, load_split
from resdyn.io import InputError, atomic_output, file_checksum, open_h5
from resdyn.model import RevisedResNet, load_model
from resdyn.train import resolve_device

REQUIRED_KEYS = ("logits", "probs", "labels", "pred", "index", "order_in_class")
_STATES_GZIP = 4
MIN_ROWS = 16
"""Smallest batch the model is run on. On the CPU, oneDNN picks other convolution kernels for batches of
fewer than 16 images, which changes the float32 rounding of the states (measured up to 2e-6); padding
smaller batches with blank images keeps every image's numbers bitwise independent of ``batch_size``."""


def order_in_class(labels: np.ndarray) -> np.ndarray:
    """1-based rank of each image among the images of its class, in array order (DESIGN §5, Table 3).

    order[i] = 1 + #{j < i : labels[j] = labels[i]}.
    """
    labels = np.asarray(labels)
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    starts = np.flatnonzero(np.r_[True, sorted_labels[1:] != sorted_labels[:-1]])
    group_start = np.repeat(starts, np.diff(np.r_[starts, len(labels)]))
    ranks = np.empty(len(labels), dtype=np.int64)
    ranks[order] = np.arange(len(labels)) - group_start + 1
    return ranks


def head_layers(head: nn.Module) -> list[nn.Linear]:
    """The Linear layers of a head, in order (a single Linear, or Linear/ReLU/…/Linear)."""
    if isinstance(head, nn.Linear):
        return [head]
    layers = [m for m in head.modules() if isinstance(m, nn.Linear)]
    if not layers:
        raise ValueError(f"head {head!r} has no Linear layer")
    return layers


@torch.no_grad()
def trajectory_batch(model: RevisedResNet, head64: nn.Module, x: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For a batch of images: states (B, T+1, n) float32, logits = head(x_t) (B, T+1, C) float32 and
    probs = softmax(head64(float64(x_t))) (B, T+1, C) float64, computed on ``x``'s device.

    Batches under :data:`MIN_ROWS` images are padded with blank images (dropped again) so the numbers do
    not depend on the batch size; in eval mode images do not interact, so padding changes nothing else."""
    rows = len(x)
    if rows < MIN_ROWS:
        x = torch.cat([x, x.new_zeros((MIN_ROWS - rows, *x.shape[1:]))])
    states, _ = model.trajectory(x)
    logits = model.head(states)
    probs = torch.softmax(head64(states.double()), dim=-1)
    return states[:rows], logits[:rows], probs[:rows]


def write_trajectories(
    model_path: str | os.PathLike,
    data_path: str | os.PathLike,
    out_path: str | os.PathLike,
    *,
    dataset: str,
    model_name: str,
    batch_size: int,
    store_states: bool,
    device: str,
) -> None:
    """Dump the test set's trajectories to ``out_path`` (layout in the module docstring), batch by batch,
    so memory is bounded by ``batch_size`` images. Non-finite logits raise :class:`InputError`."""
    if batch_size < 1:
        raise InputError(f"trajectories: batch_size must be ≥ 1, got {batch_size}")
    torch_device = resolve_device(device)
    model, meta = load_model(model_path, torch_device)
    images, labels, class_names = load_split(data_path, "test")
    if list(class_names) != list(meta["class_names"]):
        raise InputError(f"{data_path}: class names {class_names} differ from those the model {model_path} "
                         f"was trained on ({meta['class_names']})")
    head64 = copy.deepcopy(model.head).double()
    N, T, n, C = len(labels), model.num_blocks, model.state_dim, model.num_classes

    with atomic_output(out_path) as tmp, h5py.File(tmp, "w") as h5:
        logits_ds = h5.create_dataset("logits", (N, T + 1, C), dtype=np.float32)
        probs_ds = h5.create_dataset("probs", (N, T + 1, C), dtype=np.float64)
        states_ds = None
        if store_states:
            states_ds = h5.create_dataset("states", (N, T + 1, n), dtype=np.float32, chunks=(1, T + 1, n),
                                          compression="gzip", compression_opts=_STATES_GZIP)
        pred = np.empty(N, dtype=np.int64)
        for start in tqdm(range(0, N, batch_size), desc="trajectories", disable=None, leave=False):
            stop = min(start + batch_size, N)
            x = images_to_tensor(images[start:stop]).to(torch_device)
            states, logits, probs = trajectory_batch(model, head64, x)
            if not torch.isfinite(logits).all():
                bad = start + int(torch.nonzero(~torch.isfinite(logits).all(dim=2).all(dim=1))[0, 0])
                raise InputError(f"{model_path}: non-finite logits for test image {bad} of {data_path} "
                                 f"(a diverged model?); {out_path} not written")
            logits_np = logits.cpu().numpy()
            logits_ds[start:stop] = logits_np
            probs_ds[start:stop] = probs.cpu().numpy()
            pred[start:stop] = logits_np[:, T].argmax(axis=1)
            if states_ds is not None:
                states_ds[start:stop] = states.cpu().numpy()

        h5.create_dataset("labels", data=labels.astype(np.int64))
        h5.create_dataset("pred", data=pred)
        h5.create_dataset("index", data=np.arange(N, dtype=np.int64))
        h5.create_dataset("order_in_class", data=order_in_class(labels))
        _write_head(h5, model.head)
        h5.attrs["dataset"] = dataset
        h5.attrs["model"] = model_name
        h5.attrs["T"] = T
        h5.attrs["n"] = n
        h5.attrs["class_names"] = np.array(list(class_names), dtype=h5py.string_dtype())
        h5.attrs["model_checksum"] = file_checksum(model_path)
        h5.attrs["data_checksum"] = file_checksum(data_path)


def _write_head(h5: h5py.File, head: nn.Module) -> None:
    layers = head_layers(head)
    params = [(l.weight.detach().cpu().double().numpy(), l.bias.detach().cpu().double().numpy()) for l in layers]
    if len(params) == 1:
        h5.create_dataset("head/weight", data=params[0][0])
        h5.create_dataset("head/bias", data=params[0][1])
        return
    for k, (weight, bias) in enumerate(params):
        h5.create_dataset(f"head/layers/{k}/weight", data=weight)
        h5.create_dataset(f"head/layers/{k}/bias", data=bias)


def load_probs(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``(probs (N, T+1, C) float64, labels (N,) int64, class_names)`` from a trajectory file; a missing
    key, a wrong shape or dtype, or a non-finite probability raises :class:`InputError` naming the file."""
    with open_h5(path, required=REQUIRED_KEYS) as h5:
        if "class_names" not in h5.attrs:
            raise InputError(f"{path}: missing attr 'class_names'")
        probs = h5["probs"][()]
        labels = h5["labels"][()]
        class_names = [v.decode() if isinstance(v, bytes) else str(v) for v in np.atleast_1d(h5.attrs["class_names"])]
    if probs.dtype != np.float64 or probs.ndim != 3 or probs.shape[2] != len(class_names):
        raise InputError(f"{path}: 'probs' must be float64 (N, T+1, {len(class_names)}), "
                         f"got {probs.dtype} {probs.shape}")
    if labels.dtype != np.int64 or labels.shape != (probs.shape[0],):
        raise InputError(f"{path}: 'labels' must be int64 ({probs.shape[0]},), got {labels.dtype} {labels.shape}")
    if not np.isfinite(probs).all():
        raise InputError(f"{path}: 'probs' holds NaN or inf")
    return probs, labels, class_names


def load_head(path: str | os.PathLike) -> list[tuple[np.ndarray, np.ndarray]]:
    """The head g as float64 ``[(W_0, b_0), …]`` (ReLU between layers): ``/head/weight``, ``/head/bias`` or
    ``/head/layers/<k>/…``. Missing or inconsistent parameters raise :class:`InputError` naming the file."""
    with open_h5(path, required=["head"]) as h5:
        group = h5["head"]
        if "weight" in group:
            if "bias" not in group:
                raise InputError(f"{path}: missing HDF5 key 'head/bias'")
            layers = [(group["weight"][()], group["bias"][()])]
        elif "layers" in group:
            keys = sorted(group["layers"], key=int)
            if keys != [str(k) for k in range(len(keys))]:
                raise InputError(f"{path}: 'head/layers' must be numbered 0..K-1, found {keys}")
            layers = []
            for k in keys:
                for part in ("weight", "bias"):
                    if part not in group["layers"][k]:
                        raise InputError(f"{path}: missing HDF5 key 'head/layers/{k}/{part}'")
                layers.append((group["layers"][k]["weight"][()], group["layers"][k]["bias"][()]))
        else:
            raise InputError(f"{path}: 'head' holds neither 'weight' nor 'layers'")
    fan_in = None
    for k, (weight, bias) in enumerate(layers):
        if weight.ndim != 2 or bias.shape != (weight.shape[0],) or (fan_in is not None and weight.shape[1] != fan_in):
            raise InputError(f"{path}: head layer {k} has weight {weight.shape} and bias {bias.shape}, "
                             "which do not chain")
        fan_in = weight.shape[0]
    return [(np.asarray(w, dtype=np.float64), np.asarray(b, dtype=np.float64)) for w, b in layers]
