"""The revised ResNet (method §4): patching, grouped blocks, canonical trajectories, model files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from resdyn.artifacts import load_model, save_model
from resdyn.io import InputError
from resdyn.model import (
    Bottleneck,
    Patching,
    RevisedResNet,
    build_model,
    normalize_model_entry,
)

RESNET18 = (2, 2, 2, 2)
RESNET50 = (3, 4, 6, 3)
TILES = ((2, 2), (2, 1), (1, 2), (2, 1))


def randomize_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BN statistics and affine parameters, so that eval mode is not close to the identity."""
    gen = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            c = module.num_features
            module.running_mean.copy_(torch.randn(c, generator=gen) * 0.5)
            module.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
            module.weight.data.copy_(torch.randn(c, generator=gen))
            module.bias.data.copy_(torch.randn(c, generator=gen) * 0.5)
    return model.eval()


def patch_bruteforce(x: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """out[:, (r·cols + q)·c + k, y, x] = in[:, k, r·th + y, q·tw + x], by explicit loops."""
    b, c, h, w = x.shape
    th, tw = h // rows, w // cols
    out = np.zeros((b, c * rows * cols, th, tw), dtype=x.dtype)
    for r in range(rows):
        for q in range(cols):
            for k in range(c):
                for yy in range(th):
                    for xx in range(tw):
                        out[:, (r * cols + q) * c + k, yy, xx] = x[:, k, r * th + yy, q * tw + xx]
    return out


def test_patching_matches_loops_and_is_a_permutation():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 8, 8, 8, generator=gen, dtype=torch.float64)
    for rows, cols in TILES:
        patching = Patching(rows, cols)
        y = patching(x)
        np.testing.assert_array_equal(y.numpy(), patch_bruteforce(x.numpy(), rows, cols))
        assert y.shape[1:].numel() == x.shape[1:].numel()
        np.testing.assert_array_equal(
            np.sort(y.flatten(1).numpy(), axis=1), np.sort(x.flatten(1).numpy(), axis=1)
        )
        torch.testing.assert_close(y.flatten(1).norm(dim=1), x.flatten(1).norm(dim=1), rtol=1e-15, atol=0)
        assert torch.equal(patching.inverse(y), x)
        x = y


def test_patching_refuses_uneven_tiles():
    with pytest.raises(ValueError, match="3×4"):
        Patching(2, 1)(torch.zeros(1, 2, 3, 4))


@pytest.mark.parametrize("blocks", [RESNET18, RESNET50])
def test_every_block_maps_r4096_to_r4096(blocks):
    model = randomize_batchnorm(RevisedResNet(blocks=blocks))
    x = model.stem(torch.rand(2, 3, 32, 32))
    assert x.shape[1:].numel() == 4096 == model.state_dim
    shapes = []
    with torch.no_grad():
        for stage in model.stages:
            x = stage.patching(x)
            for block in stage.blocks:
                y = block(x)
                assert y.shape == x.shape and y.shape[1:].numel() == 4096
                x = y
            shapes.append(tuple(x.shape[1:]))
    assert shapes == [(256, 4, 4), (512, 2, 4), (1024, 2, 2), (2048, 1, 2)]
    assert model.num_blocks == sum(blocks)


def test_first_block_of_each_stage_is_grouped_by_tiles():
    model = randomize_batchnorm(RevisedResNet(blocks=(2, 1, 1, 1)))
    for stage in model.stages:  # keep the inner ReLUs open, so that a perturbation is seen in its own tile
        stage.blocks[0].bn1.bias.data.fill_(2.0)
        stage.blocks[0].bn2.bias.data.fill_(2.0)
    assert [[b.groups for b in s.blocks] for s in model.stages] == [[4, 1], [8], [16], [32]]
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for stage in model.stages:
            block = stage.blocks[0]
            c = block.conv1.in_channels
            group_size = c // block.groups
            x = torch.randn(1, c, 2, 2, generator=gen)
            base = block.residual(x)
            for tile in range(block.groups):
                channels = slice(tile * group_size, (tile + 1) * group_size)
                perturbed = x.clone()
                perturbed[:, channels] += torch.randn(1, group_size, 2, 2, generator=gen)
                change = (block.residual(perturbed) - base).abs()
                outside = torch.ones(c, dtype=torch.bool)
                outside[channels] = False
                assert change[:, outside].max() == 0, f"tile {tile} leaked into other tiles"
                assert change[:, channels].max() > 0


def test_ungrouped_block_mixes_tiles():
    block = randomize_batchnorm(Bottleneck(64, groups=1))
    x = torch.randn(1, 64, 2, 2)
    perturbed = x.clone()
    perturbed[:, :16] += 1.0
    with torch.no_grad():
        change = (block.residual(perturbed) - block.residual(x)).abs()
    assert change[:, 16:].max() > 0


def test_post_activation_switch():
    x = torch.randn(3, 64, 4, 4)
    with torch.no_grad():
        plain = randomize_batchnorm(Bottleneck(64, groups=4, post_activation=False))
        assert torch.equal(plain(x), x + plain.residual(x))
        assert (plain(x) < 0).any()
        relu = randomize_batchnorm(Bottleneck(64, groups=4, post_activation=True))
        assert torch.equal(relu(x), torch.relu(x + relu.residual(x)))
    model = build_model({"blocks": [1, 1, 1, 1], "width": 16, "post_activation": False}, 3)
    assert all(not b.post_activation for s in model.stages for b in s.blocks)


def parameter_count_by_hand(blocks, tiles=TILES, width=64, num_classes=10, hidden=()):
    """Parameters from the architecture description of method §4 alone."""
    total = 3 * width * 49 + 2 * width  # stem conv + BN
    groups = 1
    for (rows, cols), num_blocks in zip(tiles, blocks):
        groups *= rows * cols
        c, mid = width * groups, width * groups // 4
        for k in range(num_blocks):
            g = groups if k == 0 else 1
            total += (c * mid + mid * mid * 9 + mid * c) // g  # three convolutions
            total += 2 * (mid + mid + c)  # three BNs
    widths = [width * 64, *hidden, num_classes]
    total += sum(a * b + b for a, b in zip(widths[:-1], widths[1:]))
    return total


@pytest.mark.parametrize("blocks, expected", [(RESNET18, 6_253_386), (RESNET50, 15_815_242)])
def test_parameter_counts(blocks, expected):
    model = RevisedResNet(blocks=blocks)
    count = sum(p.numel() for p in model.parameters())
    assert count == parameter_count_by_hand(blocks) == expected
    # method §4 quotes a prototype at 6.3 M and 15.8 M parameters.
    assert round(count / 1e6, 1) == {RESNET18: 6.3, RESNET50: 15.8}[blocks]


def test_parameter_count_of_small_and_deep_head_models():
    model = RevisedResNet(blocks=(1, 2, 1, 1), width=16, num_classes=3, head_hidden=(32, 8))
    assert sum(p.numel() for p in model.parameters()) == parameter_count_by_hand(
        (1, 2, 1, 1), width=16, num_classes=3, hidden=(32, 8)
    )


def canonical_permutation(model: RevisedResNet, stage_index: int) -> np.ndarray:
    """perm such that canonical(x)[j] = flatten(x)[perm[j]], built by loops from the tile rule."""
    shape = (model.width, 8, 8)
    for stage in model.stages[: stage_index + 1]:
        r, q = stage.patching.rows, stage.patching.cols
        shape = (shape[0] * r * q, shape[1] // r, shape[2] // q)
    ids = np.arange(np.prod(shape)).reshape(1, *shape)
    for stage in model.stages[stage_index + 1 :]:
        ids = patch_bruteforce(ids, stage.patching.rows, stage.patching.cols)
    return ids.reshape(-1)


@pytest.mark.parametrize("head_hidden", [(), (24,)])
def test_trajectory_states_are_canonical_and_head_matches_forward(head_hidden):
    torch.manual_seed(3)
    model = randomize_batchnorm(
        RevisedResNet(blocks=(1, 2, 1, 1), width=16, num_classes=4, head_hidden=head_hidden)
    )
    x = torch.rand(5, 3, 32, 32)
    with torch.no_grad():
        states, logits = model.trajectory(x)
        assert states.shape == (5, model.num_blocks + 1, model.state_dim) == (5, 6, 1024)
        assert states.dtype == torch.float32
        assert torch.equal(logits, model(x))
        assert torch.equal(model.head(states[:, -1]), model(x))
        # brute force: run the blocks in each stage's own layout, permute with loop-built indices
        h = model.stem(x)
        expected = [h.flatten(1)[:, canonical_permutation(model, -1)]]
        for k, stage in enumerate(model.stages):
            h = stage.patching(h)
            for block in stage.blocks:
                h = block(h)
                expected.append(h.flatten(1)[:, canonical_permutation(model, k)])
        assert torch.equal(states, torch.stack(expected, dim=1))


def test_input_shape_is_checked():
    model = RevisedResNet(blocks=(1, 1, 1, 1), width=16)
    with pytest.raises(ValueError, match=r"\(B, 3, 32, 32\)"):
        model(torch.zeros(1, 3, 28, 28))


def test_build_model_reads_the_config_entry():
    entry = {
        "blocks": [1, 2, 1, 1],
        "tiles": [[2, 2], [2, 1], [1, 2], [2, 1]],
        "width": 8,
        "post_activation": True,
        "head": {"hidden": [16]},
        "training": {"epochs": 3},
    }
    model = build_model(entry, 7)
    assert [len(s.blocks) for s in model.stages] == [1, 2, 1, 1]
    assert model.state_dim == 8 * 64 and model.num_classes == 7
    assert isinstance(model.head, nn.Sequential) and model.head[-1].out_features == 7
    assert normalize_model_entry({}) == {
        "blocks": [2, 2, 2, 2],
        "tiles": [[2, 2], [2, 1], [1, 2], [2, 1]],
        "width": 64,
        "post_activation": True,
        "head": {"hidden": []},
    }


def test_other_tilings_are_a_config_entry():
    model = build_model({"blocks": [1, 1], "tiles": [[2, 2], [4, 4]], "width": 8}, 2)
    assert [b.groups for s in model.stages for b in s.blocks] == [4, 64]
    states, _ = model.trajectory(torch.rand(2, 3, 32, 32))
    assert states.shape == (2, 3, 512)


@pytest.mark.parametrize(
    "entry, message",
    [
        ({"blocks": [2, 2], "colour": 1}, "colour"),
        ({"blocks": [2, 2, 2]}, "same"),
        ({"tiles": [[3, 1], [1, 1], [1, 1], [1, 1]]}, "divide"),
        ({"width": 6}, "multiple of 4"),
        ({"blocks": [2, 0, 2, 2]}, "at least one block"),
        ({"head": {"hidden": [0]}}, "positive"),
        ({"head": {"depth": 2}}, "head"),
    ],
)
def test_bad_model_entries_raise_input_error(entry, message):
    with pytest.raises(InputError, match=message):
        build_model(entry, 10)


def test_save_and_load_round_trip(tmp_path):
    entry = {"blocks": [1, 1, 1, 1], "width": 16, "post_activation": False, "head": {"hidden": [12]}}
    torch.manual_seed(4)
    model = randomize_batchnorm(build_model(entry, 3))
    path = tmp_path / "model.pt"
    save_model(path, model, entry, 3, ["a", "b", "c"])
    raw = torch.load(path, weights_only=True)
    assert raw["model_entry"]["head"] == {"hidden": [12]}
    loaded, meta = load_model(path)
    assert meta == {
        "model_entry": normalize_model_entry(entry),
        "num_classes": 3,
        "class_names": ["a", "b", "c"],
    }
    assert not loaded.training
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert not list(tmp_path.glob(".*tmp*"))


def test_load_model_names_the_bad_file(tmp_path):
    with pytest.raises(InputError, match="missing.pt"):
        load_model(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(InputError, match="junk.pt"):
        load_model(junk)
    partial = tmp_path / "partial.pt"
    torch.save({"state_dict": {}}, partial)
    with pytest.raises(InputError, match="partial.pt.*lacks"):
        load_model(partial)
    wrong = tmp_path / "wrong.pt"
    small = build_model({"blocks": [1, 1, 1, 1], "width": 16}, 3)
    save_model(wrong, small, {"blocks": [1, 1, 1, 1], "width": 16}, 3, ["a", "b", "c"])
    payload = torch.load(wrong, weights_only=True)
    payload["model_entry"]["width"] = 8
    torch.save(payload, wrong)
    with pytest.raises(InputError, match="wrong.pt.*do not match"):
        load_model(wrong)
