"""Overlap-tile inference: the blended result equals whole-image inference away from the border."""

import numpy as np
import pytest
import torch
from torch import nn

from ganseg.evaluation.tiling import blend_window, plan_axis, predict_tiled


def _small_conv_net(out_channels: int = 1) -> nn.Module:
    """Two 3x3 convolutions: receptive-field radius 2 pixels."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Tanh(), nn.Conv2d(4, out_channels, 3, padding=1)).eval()


@pytest.mark.parametrize("shape", [(100, 137), (64, 64), (65, 200), (31, 17), (1, 90), (250, 33)])
def test_tiled_equals_whole_image_away_from_the_border(shape):
    net = _small_conv_net()
    image = torch.rand(1, *shape)
    with torch.no_grad():
        whole = torch.sigmoid(net(image[None]))[0]
        tiled = predict_tiled(net, image, tile=32, overlap=0.5, batch_size=5)  # context 4 px >= radius 2
    assert tiled.shape == (1, *shape)
    border = 2  # the whole-image run sees zero padding there, the tiled run sees mirrored pixels
    inner = (slice(None), slice(border, shape[0] - border), slice(border, shape[1] - border))
    if shape[0] > 32 and shape[1] > 32:
        torch.testing.assert_close(tiled[inner], whole[inner], atol=1e-5, rtol=0)
    assert tiled.min() >= 0 and tiled.max() <= 1


def test_multi_class_probabilities_sum_to_one():
    net = _small_conv_net(out_channels=3)
    probs = predict_tiled(net, torch.rand(1, 70, 90), tile=32, overlap=0.25)
    assert probs.shape == (3, 70, 90)
    torch.testing.assert_close(probs.sum(0), torch.ones(70, 90), atol=1e-5, rtol=0)


def test_small_image_is_one_padded_tile_like_training():
    calls = []

    def record(tiles):
        calls.append(tuple(tiles.shape))
        return torch.zeros(tiles.shape[0], 1, *tiles.shape[2:])

    predict_tiled(record, torch.rand(1, 20, 30), tile=64, overlap=0.25)
    assert calls == [(1, 1, 64, 64)]


def test_every_pixel_is_covered_and_tiles_are_full_size():
    for length in range(1, 300, 7):
        for overlap in (0, 1, 8, 16, 31):
            plan = plan_axis(length, 32, overlap)
            padded = plan.pad_before + length + plan.pad_after
            assert all(start + 32 <= padded for start in plan.starts)
            cover = np.zeros(padded)
            for start in plan.starts:
                cover[start : start + 32] += plan.weights
            assert (cover[plan.pad_before : plan.pad_before + length] > 0).all(), (length, overlap)


def test_blend_window_has_context_margin_ramp_and_centre():
    window = blend_window(32, 16)  # context 4, ramp over 9
    assert (window[:4] == 0).all() and (window[-4:] == 0).all()
    assert window[16] == 1 and np.all(np.diff(window[:16]) >= 0)
    assert (blend_window(32, 0) == 1).all()
