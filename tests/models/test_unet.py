"""The U-Net's shapes, parts and options; the ResNet encoder and its pretrained weights."""

from __future__ import annotations

import pytest
import torch
from torchvision.models import resnet18

from ganseg.errors import ConfigError
from ganseg.models import UNet, UNetConfig, build_unet
from ganseg.models.pretrained import cached_weights_path, find_pretrained, read_state_dict
from ganseg.models.resnet_unet import ResNetUNet
from ganseg.models.unet import DoubleConv, Down, Up


@pytest.mark.parametrize(
    ("config", "side"),
    [
        (UNetConfig(in_channels=1, num_classes=1, depth=4, base_width=4), 64),
        (UNetConfig(in_channels=3, num_classes=4, depth=3, base_width=4, upsampling="transpose"), 48),
        (UNetConfig(in_channels=1, num_classes=1, depth=2, base_width=4, batch_norm=False, dropout=0.3), 32),
    ],
)
def test_logits_have_one_map_per_output_class(config, side):
    model = UNet(config)
    logits = model(torch.rand(2, config.in_channels, side, side))
    assert logits.shape == (2, config.out_channels, side, side)


@pytest.mark.parametrize("upsampling", ["bilinear", "transpose"])
@pytest.mark.parametrize(("height", "width"), [(37, 53), (65, 31), (17, 17)])
def test_odd_sizes_come_back_at_the_input_size(upsampling, height, width):
    model = UNet(UNetConfig(depth=3, base_width=4, upsampling=upsampling)).eval()
    assert model(torch.rand(1, 1, height, width)).shape == (1, 1, height, width)


def test_parts_change_shapes_as_the_diagram_says():
    x = torch.rand(2, 3, 20, 21)
    assert DoubleConv(3, 8)(x).shape == (2, 8, 20, 21)
    down = Down(3, 8)(x)
    assert down.shape == (2, 8, 10, 10)  # floor of odd sides
    up = Up(8, 3, 5, "transpose")(down, x)
    assert up.shape == (2, 5, 20, 21)  # padded back to the skip's size


def test_width_doubles_per_level_and_options_take_effect():
    model = UNet(UNetConfig(depth=3, base_width=6, batch_norm=False, dropout=0.5))
    assert [d[1][0].out_channels for d in model.downs] == [12, 24, 48]
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert sum(isinstance(m, torch.nn.Dropout2d) for m in model.modules()) == 1  # bottleneck only
    assert all(isinstance(up.up, torch.nn.Sequential) for up in model.ups)  # bilinear + 1x1 conv


def test_wrong_channel_count_is_named_at_the_input():
    model = UNet(UNetConfig(in_channels=3, depth=2, base_width=4))
    with pytest.raises(ValueError, match=r"UNet input: expected shape \(None, 3, None, None\)"):
        model(torch.rand(1, 1, 16, 16))


def test_binary_and_multiclass_output_widths():
    assert UNetConfig(num_classes=1).out_channels == 1
    assert UNetConfig(num_classes=5).out_channels == 5


@pytest.mark.parametrize("channels", [1, 3])
def test_resnet_encoder_any_side(channels):
    model = build_unet(UNetConfig(in_channels=channels, num_classes=3, encoder="resnet18", base_width=8))
    assert isinstance(model, ResNetUNet)
    assert model(torch.rand(2, channels, 70, 45)).shape == (2, 3, 70, 45)


def test_resnet_encoder_loads_torchvision_weights_summing_rgb_for_gray():
    reference = resnet18(weights=None)
    state = reference.state_dict()
    model = ResNetUNet(UNetConfig(in_channels=1, encoder="resnet18", base_width=8))
    unused = model.load_encoder_state(state)
    assert set(unused) == {"fc.weight", "fc.bias"}
    assert torch.equal(model.stage3[1].conv2.weight, state["layer3.1.conv2.weight"])
    assert torch.allclose(model.stem[0].weight, state["conv1.weight"].sum(dim=1, keepdim=True))


def test_pretrained_lookup_never_downloads(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    assert cached_weights_path("resnet18") == tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert find_pretrained("resnet18", None) is None  # nothing cached: the caller trains from scratch
    with pytest.raises(ConfigError, match="pretrained_path: .*does not exist"):
        find_pretrained("resnet18", tmp_path / "missing.pth")
    cached = cached_weights_path("resnet18")
    cached.parent.mkdir(parents=True)
    torch.save(resnet18(weights=None).state_dict(), cached)
    assert find_pretrained("resnet18", None) == cached
    assert "layer1.0.conv1.weight" in read_state_dict(cached)
