"""Trajectory dumps: how every test image moves through the residual blocks (method §2, §6).

For test image i the states x_0(i) = s(image_i), x_t(i) = φ_t(x_{t-1}(i)) are taken in canonical
coordinates (:meth:`resdyn.model.RevisedResNet.trajectory`), and the probability trajectory
p_t(i) = g(x_t(i)) = softmax(head(x_t(i))) is stored for t = 0..T. The later stages need distances
between probability vectors down to ~1e-6, so p_t is computed in float64 throughout: the float32 state is
cast to float64 and pushed through a float64 copy of the head before the float64 softmax.

The file layout is :class:`resdyn.artifacts.Trajectories`; the stage that writes it is
:func:`resdyn.stages.record_trajectories`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from resdyn.data import images_to_tensor
from resdyn.model import RevisedResNet

MIN_ROWS = 16
"""Smallest batch the model is run on. On the CPU, oneDNN picks other convolution kernels for batches of
fewer than 16 images, which changes the float32 rounding of the states (measured up to 2e-6); padding
smaller batches with blank images keeps every image's numbers bitwise independent of ``batch_size``."""


def order_in_class(labels: np.ndarray) -> np.ndarray:
    """1-based rank of each image among the images of its class, in array order (method §5, Table 3).

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
def trajectory_batch(
    model: RevisedResNet, head64: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """For a batch of images: states (B, T+1, n) float32; logits z_t = head64(float64(x_t)) (B, T+1, C)
    float64 (the trained head in float64, or the per-depth probes) and probs = softmax(z_t) (B, T+1, C)
    float64; and the model's prediction (B,), the argmax of its own float32 head at depth T (the
    prediction Table 1 scores). All computed on ``x``'s device.

    The logits are float64 so that a reading's p_t = softmax(z_t / τ) (method §3.4) is recomputed from
    the same numbers the stored probabilities come from. Batches under :data:`MIN_ROWS` images are padded
    with blank images (dropped again) so the numbers do not depend on the batch size; in eval mode images
    do not interact, so padding changes nothing else."""
    rows = len(x)
    if rows < MIN_ROWS:
        x = torch.cat([x, x.new_zeros((MIN_ROWS - rows, *x.shape[1:]))])
    states, _ = model.trajectory(x)
    pred = model.head(states)[:, -1].argmax(dim=-1)  # as before: the head on every depth, then t = T
    logits = head64(states.double())
    probs = torch.softmax(logits, dim=-1)
    return states[:rows], logits[:rows], probs[:rows], pred[:rows]


def trajectory_batches(
    model: RevisedResNet,
    images: np.ndarray,
    batch_size: int,
    device: torch.device,
    probes: tuple[np.ndarray, np.ndarray] | None = None,
) -> Iterator[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """``(start, states, logits, probs, pred)`` for consecutive batches of ``batch_size`` test images, in
    order (:func:`trajectory_batch`); logits and probs come from a float64 copy of the head, or with
    ``probes`` = (weight (T+1, C, n), bias (T+1, C)) from the per-depth probes z_t = W_t x_t + b_t in
    float64 (method §3.5)."""
    if probes is None:
        head64 = copy.deepcopy(model.head).double()
    else:
        from resdyn.probes import probe_logits

        weight, bias = (torch.as_tensor(np.asarray(a), dtype=torch.float64, device=device) for a in probes)

        def head64(states: torch.Tensor) -> torch.Tensor:
            return probe_logits(states, weight, bias)

    for start in tqdm(range(0, len(images), batch_size), desc="trajectories", disable=None, leave=False):
        x = images_to_tensor(images[start : start + batch_size]).to(device)
        yield (start, *trajectory_batch(model, head64, x))


STATES_HOST_LIMIT = 1024
"""Most images per batch when the states are stored: each image's (T+1)·n float32 states also pass through
host memory (17 × 4096 × 4 B = 278 KB for resnet50)."""


def batch_for_device(
    model: RevisedResNet, device: torch.device, batch_size: int, n_images: int, *, store_states: bool
) -> int:
    """Images per batch for :func:`trajectory_batches`: ``batch_size`` on the CPU (unchanged); on a CUDA
    device as many as fit in half its free memory (:func:`resdyn.device.fit_count`), estimating per image
    the float32 states and their float64 copy for the head, 16·(T+1)·n bytes, plus 16·n for the live
    activations of a block; at most N (and :data:`STATES_HOST_LIMIT` when the states are stored). The
    numbers do not depend on the batch on the CPU (:data:`MIN_ROWS`); on a GPU cuDNN may pick other
    kernels for other batch sizes, within float32 rounding."""
    from resdyn.device import fit_count

    per_image = 16 * (model.num_blocks + 1) * model.state_dim + 16 * model.state_dim
    limit = min(n_images, STATES_HOST_LIMIT) if store_states else n_images
    return fit_count(device, per_image, default=batch_size, limit=max(1, limit))


def head_params(head: nn.Module) -> list[tuple[np.ndarray, np.ndarray]]:
    """The head g as float64 ``[(W_0, b_0), …]`` (ReLU between layers), as trajectories.h5 stores it."""
    return [
        (l.weight.detach().cpu().double().numpy(), l.bias.detach().cpu().double().numpy())
        for l in head_layers(head)
    ]


class ModelStates:
    """The states x_t(i) (N, T+1, n) of a trained model on the test images, computed batch by batch.

    Array-like (``shape``, ``__getitem__`` with a slice of images) so that a consumer that reads its points
    in chunks, such as :func:`resdyn.lipschitz.jacobian_lower_bound`, never holds all N·(T+1)·n values
    (2.8 GB at paper scale) when trajectories.h5 was written without /states.
    """

    def __init__(self, model: RevisedResNet, images: np.ndarray, *, device: torch.device | str = "cpu"):
        self.model = model.eval()
        self.device = device
        self.images = images
        self.shape = (images.shape[0], model.num_blocks + 1, model.state_dim)

    def __getitem__(self, rows: slice) -> np.ndarray:
        if not isinstance(rows, slice):
            raise TypeError("ModelStates supports slices of images only")
        with torch.no_grad():
            states, _ = self.model.trajectory(images_to_tensor(self.images[rows]).to(self.device))
        return states.double().cpu().numpy()
