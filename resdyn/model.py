"""The revised (dimension-preserving) ResNet of the paper (§3 "Model details", Figure 1; method §4).

At 32×32 input the stem (7×7 conv stride 2, BN, ReLU, 3×3 max-pool stride 2) gives a width×8×8 map,
n = 64·width values (n = 4096 for width 64). Every later downsampling and channel expansion of a standard
ResNet is replaced by a *patching*: the map is cut into hs×ws contiguous tiles that are stacked along the
channels tile-major, (c, h, w) → (c·hs·ws, h/hs, w/ws). A patching only permutes coordinates, so every
residual block φ_t acts on the same R^n and the one trained head g applies at every depth once states are
expressed in *canonical coordinates* (the final stage's layout, flattened).

Block structure follows the authors' code (KY-HDC/DS-ResNets, ``models/ResNets.py``): bottleneck blocks
without downsample, 1×1 c→c/4, 3×3, 1×1 c/4→c, each followed by BN; the first block of each stage uses
groups = the number of tiles cut so far (4, 8, 16, 32 with the default tiles), so each image tile is
convolved on its own; the other blocks use groups = 1. With width 64 the parameter counts are
6,253,386 for resnet18 = [2, 2, 2, 2] and 15,815,242 for resnet50 = [3, 4, 6, 3] (10 classes).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from resdyn.config import INPUT_SIZE, STEM_SIDE, check_architecture, schema_defaults
from resdyn.io import InputError

# The schema is the one source of the defaults (the workflow fills them from it; so does this module).
_DEFAULTS = schema_defaults("model")


class Patching(nn.Module):
    """Cut a (c, h, w) map into rows×cols contiguous tiles and stack them tile-major along the channels.

    Output channel ``(r·cols + q)·c + k`` at (y, x) is input channel k at (r·h/rows + y, q·w/cols + x):
    tile (r, q) in row-major order, as the authors' ``Clipper``. The map is a permutation of the c·h·w
    coordinates, hence an isometry (method §4).
    """

    def __init__(self, rows: int, cols: int) -> None:
        super().__init__()
        if rows < 1 or cols < 1:
            raise ValueError(f"patching tiles must be positive, got ({rows}, {cols})")
        self.rows = rows
        self.cols = cols

    @property
    def tiles(self) -> int:
        return self.rows * self.cols

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        if h % self.rows or w % self.cols:
            raise ValueError(f"a {h}×{w} map cannot be cut into {self.rows}×{self.cols} equal tiles")
        th, tw = h // self.rows, w // self.cols
        tiles = x.reshape(b, c, self.rows, th, self.cols, tw).permute(0, 2, 4, 1, 3, 5)
        return tiles.reshape(b, self.tiles * c, th, tw)

    def inverse(self, y: Tensor) -> Tensor:
        """Undo :meth:`forward`: put each channel block back at its tile's place."""
        b, ct, th, tw = y.shape
        c = ct // self.tiles
        tiles = y.reshape(b, self.rows, self.cols, c, th, tw).permute(0, 3, 1, 4, 2, 5)
        return tiles.reshape(b, c, self.rows * th, self.cols * tw)

    def extra_repr(self) -> str:
        return f"rows={self.rows}, cols={self.cols}"


class Bottleneck(nn.Module):
    """Residual block φ(x) = ReLU(x + F(x)), or x + F(x) without post-activation (paper §2.1).

    F = BN ∘ conv1×1(c/4→c) ∘ ReLU ∘ BN ∘ conv3×3(c/4→c/4) ∘ ReLU ∘ BN ∘ conv1×1(c→c/4), all three
    convolutions with the same ``groups``, so a grouped block never mixes channel groups (image tiles).
    """

    def __init__(self, channels: int, groups: int = 1, post_activation: bool = True) -> None:
        super().__init__()
        mid = channels // 4
        if channels % 4 or mid % groups:
            raise ValueError(
                f"a bottleneck with {channels} channels cannot be split into {groups} groups "
                f"of {channels}/4 inner channels"
            )
        self.conv1 = nn.Conv2d(channels, mid, kernel_size=1, groups=groups, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, kernel_size=3, padding=1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, channels, kernel_size=1, groups=groups, bias=False)
        self.bn3 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()
        self.groups = groups
        self.post_activation = post_activation

    def residual(self, x: Tensor) -> Tensor:
        """F(x), the residual branch."""
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.bn3(self.conv3(out))

    def forward(self, x: Tensor) -> Tensor:
        out = x + self.residual(x)
        return self.relu(out) if self.post_activation else out


class Stem(nn.Module):
    """s: 7×7 conv stride 2 (width channels), BN, ReLU, 3×3 max-pool stride 2; 3×32×32 → width×8×8."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn = nn.BatchNorm2d(width)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.relu(self.bn(self.conv(x))))


class Stage(nn.Module):
    """A patching followed by residual blocks; the first block is grouped by the tiles cut so far."""

    def __init__(
        self, channels: int, rows: int, cols: int, num_blocks: int, groups: int, post_activation: bool
    ) -> None:
        super().__init__()
        self.patching = Patching(rows, cols)
        self.blocks = nn.ModuleList(
            Bottleneck(channels, groups=groups if k == 0 else 1, post_activation=post_activation)
            for k in range(num_blocks)
        )


def _make_head(n: int, hidden: Sequence[int], num_classes: int) -> nn.Module:
    if not hidden:
        return nn.Linear(n, num_classes)
    layers: list[nn.Module] = []
    widths = [n, *hidden]
    for fan_in, fan_out in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
    layers.append(nn.Linear(widths[-1], num_classes))
    return nn.Sequential(*layers)


class RevisedResNet(nn.Module):
    """F = g ∘ φ_T ∘ … ∘ φ_1 ∘ s on 3×32×32 images (method §2, §4); ``head`` is g before the softmax.

    ``blocks[k]`` residual blocks follow the k-th patching ``tiles[k] = (rows, cols)``. Stage k has
    width·G_k channels, G_k = Π_{j≤k} rows_j·cols_j the number of tiles so far; its first block uses
    groups = G_k. The state dimension is n = width·8·8 at every depth.
    """

    def __init__(
        self,
        blocks: Sequence[int] = tuple(_DEFAULTS["blocks"]),
        tiles: Sequence[Sequence[int]] = tuple(map(tuple, _DEFAULTS["tiles"])),
        width: int = _DEFAULTS["width"],
        num_classes: int = 10,
        post_activation: bool = _DEFAULTS["post_activation"],
        head_hidden: Sequence[int] = tuple(_DEFAULTS["head"]["hidden"]),
    ) -> None:
        super().__init__()
        blocks = [int(b) for b in blocks]
        tiles = [(int(r), int(c)) for r, c in tiles]
        check_architecture(blocks, tiles, width, head_hidden)
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")

        self.width = width
        self.num_classes = num_classes
        self.state_dim = width * STEM_SIDE * STEM_SIDE
        self.stem = Stem(width)
        stages = []
        tiles_so_far = 1
        for (rows, cols), num_blocks in zip(tiles, blocks):
            tiles_so_far *= rows * cols
            stages.append(Stage(width * tiles_so_far, rows, cols, num_blocks, tiles_so_far, post_activation))
        self.stages = nn.ModuleList(stages)
        self.head = _make_head(self.state_dim, tuple(head_hidden), num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        # torchvision's ResNet initialisation, which the authors' code keeps.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    @property
    def num_blocks(self) -> int:
        """T, the number of residual blocks."""
        return sum(len(stage.blocks) for stage in self.stages)

    def canonical(self, x: Tensor, stage_index: int) -> Tensor:
        """Flatten a state living in stage ``stage_index``'s layout into canonical coordinates (B, n).

        Applies the patchings of stages ``stage_index + 1`` onwards (permutations), then flattens, so the
        result is laid out as the last stage's output: the coordinates the head reads (method §4).
        ``stage_index = -1`` is the stem's layout.
        """
        for stage in self.stages[stage_index + 1 :]:
            x = stage.patching(x)
        return torch.flatten(x, 1)

    def _check_input(self, x: Tensor) -> None:
        if x.dim() != 4 or tuple(x.shape[1:]) != (3, INPUT_SIZE, INPUT_SIZE):
            raise ValueError(
                f"expected images of shape (B, 3, {INPUT_SIZE}, {INPUT_SIZE}), got {tuple(x.shape)}"
            )

    def forward(self, x: Tensor) -> Tensor:
        """Logits head(flatten(φ_T ∘ … ∘ φ_1 ∘ s(x))) of shape (B, C)."""
        self._check_input(x)
        x = self.stem(x)
        for stage in self.stages:
            x = stage.patching(x)
            for block in stage.blocks:
                x = block(x)
        return self.head(torch.flatten(x, 1))

    def trajectory(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """States x_0..x_T in canonical coordinates, (B, T+1, n), and the logits (B, C) of ``forward``.

        x_0 = s(image) and x_t = φ_t(x_{t-1}) (method §2); ``head(states[:, T])`` equals ``forward(x)``.
        """
        self._check_input(x)
        x = self.stem(x)
        states = [self.canonical(x, -1)]
        for k, stage in enumerate(self.stages):
            x = stage.patching(x)
            for block in stage.blocks:
                x = block(x)
                states.append(self.canonical(x, k))
        return torch.stack(states, dim=1), self.head(states[-1])


def normalize_model_entry(model_entry: Mapping[str, Any]) -> dict[str, Any]:
    """A model config entry (method §4) with the schema's defaults filled, as plain lists/dicts
    (``training`` dropped).

    Keys: ``blocks`` (list per stage), ``tiles`` (list of [rows, cols]), ``width``, ``post_activation``,
    ``head`` {``hidden``: [...]}. An unknown key raises :class:`InputError` naming it.
    """
    unknown = set(model_entry) - set(_DEFAULTS) - {"training"}
    if unknown:
        raise InputError(f"model entry: unknown key(s) {sorted(unknown)} (known: {sorted(_DEFAULTS)})")
    head = model_entry.get("head") or {}
    if not isinstance(head, Mapping) or set(head) - set(_DEFAULTS["head"]):
        raise InputError(f"model entry: 'head' must be a mapping with the only key 'hidden', got {head!r}")
    entry = {**_DEFAULTS, **{k: v for k, v in model_entry.items() if k != "training"}}
    try:
        return {
            "blocks": [int(b) for b in entry["blocks"]],
            "tiles": [[int(r), int(c)] for r, c in entry["tiles"]],
            "width": int(entry["width"]),
            "post_activation": bool(entry["post_activation"]),
            "head": {"hidden": [int(h) for h in head.get("hidden", _DEFAULTS["head"]["hidden"]) or []]},
        }
    except (TypeError, ValueError) as err:
        raise InputError(f"model entry {dict(model_entry)!r}: malformed value ({err})") from None


def build_model(model_entry: Mapping[str, Any], num_classes: int) -> RevisedResNet:
    """The :class:`RevisedResNet` described by a model config entry (see :func:`normalize_model_entry`)."""
    entry = normalize_model_entry(model_entry)
    try:
        return RevisedResNet(
            blocks=entry["blocks"],
            tiles=entry["tiles"],
            width=entry["width"],
            num_classes=num_classes,
            post_activation=entry["post_activation"],
            head_hidden=entry["head"]["hidden"],
        )
    except ValueError as err:
        raise InputError(f"model entry {entry}: {err}") from None
