"""The one sliding window: equal to whole-image inference where the network allows, any size in,
the same size out, probabilities that are probabilities, and a one-line error for images too
large for memory."""

import pytest
import torch
from torch import nn

from ganseg.errors import DataError
from ganseg.inference import check_memory, segment_probabilities


def _pointwise_net(out_channels: int = 1) -> nn.Module:
    """A 1x1 convolution: every tile sees exactly what the whole image sees at each pixel."""
    torch.manual_seed(0)
    return nn.Conv2d(1, out_channels, 1).eval()


def _small_conv_net(out_channels: int = 1) -> nn.Module:
    """Two 3x3 convolutions: receptive-field radius 2 pixels."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Tanh(), nn.Conv2d(4, out_channels, 3, padding=1)).eval()


def _whole(net: nn.Module, image: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        logits = net(image[None])[0]
    return torch.sigmoid(logits) if logits.shape[0] == 1 else torch.softmax(logits, dim=0)


@pytest.mark.parametrize("blend", ["gaussian", "constant"])
def test_an_image_of_the_tile_size_is_one_forward_pass(blend):
    net = _small_conv_net()
    image = torch.rand(1, 64, 64)
    probs = segment_probabilities(net, image, num_classes=1, tile=64, blend=blend)
    torch.testing.assert_close(probs, _whole(net, image), atol=1e-5, rtol=0)


@pytest.mark.parametrize("shape", [(150, 97), (100, 137), (65, 200), (31, 17), (1, 90), (250, 33)])
def test_pointwise_network_gives_the_whole_image_result_at_any_size(shape):
    net = _pointwise_net()
    image = torch.rand(1, *shape)
    probs = segment_probabilities(net, image, num_classes=1, tile=64, overlap=0.25, batch_size=3)
    assert probs.shape == (1, *shape) and probs.dtype == torch.float32
    torch.testing.assert_close(probs, _whole(net, image), atol=1e-4, rtol=0)


@pytest.mark.parametrize(
    ("shape", "mean_bound", "max_bound"),
    [((150, 97), 2e-4, 5e-3), ((100, 137), 2e-4, 5e-3), ((65, 200), 2e-4, 5e-3),
     ((250, 33), 2e-3, 5e-2)],  # 33 = tile + 1: the last window nearly coincides with the first
)
def test_gaussian_blending_hides_the_tile_edges_of_a_wider_network(shape, mean_bound, max_bound):
    """Tiles see zero padding at their inner edges, so only pixels within the receptive-field
    radius of an inner tile edge can differ, and the Gaussian gives them little weight there
    (measured, tile 32: mean error 7e-5, max 1.8e-3; 9e-4 / 2.9e-2 where two windows nearly
    coincide; constant blending 3e-3 / 5.7e-2)."""
    net = _small_conv_net()
    image = torch.rand(1, *shape)
    whole = _whole(net, image)
    errors = {
        blend: (segment_probabilities(net, image, num_classes=1, tile=32, blend=blend) - whole).abs()
        for blend in ("gaussian", "constant")
    }
    assert errors["gaussian"].mean() < mean_bound and errors["gaussian"].max() < max_bound
    assert errors["gaussian"].mean() < errors["constant"].mean() / 3


def test_multi_class_probabilities_sum_to_one():
    net = _small_conv_net(out_channels=3)
    probs = segment_probabilities(net, torch.rand(1, 70, 90), num_classes=3, tile=32, overlap=0.25)
    assert probs.shape == (3, 70, 90)
    torch.testing.assert_close(probs.sum(0), torch.ones(70, 90), atol=1e-5, rtol=0)
    assert probs.min() >= 0 and probs.max() <= 1


def test_small_image_is_one_mirror_padded_tile_cropped_back():
    seen = []

    def record(tiles):
        seen.append(tiles.clone())
        return tiles[:, :1] * 4 - 2  # logit from the pixel itself

    image = torch.rand(1, 20, 30)
    probs = segment_probabilities(record, image, num_classes=1, tile=64, overlap=0.25)
    assert [tuple(t.shape) for t in seen] == [(1, 1, 64, 64)]
    top, left = (64 - 20) // 2, (64 - 30) // 2
    torch.testing.assert_close(seen[0][0, :, top : top + 20, left : left + 30], image)  # centred
    torch.testing.assert_close(seen[0][0, 0, top - 1, left : left + 30], image[0, 1])  # reflected
    assert probs.shape == (1, 20, 30)
    torch.testing.assert_close(probs, torch.sigmoid(image * 4 - 2), atol=1e-6, rtol=0)


def test_uint8_images_are_scaled_and_batches_match_single_images():
    net = _pointwise_net()
    images = torch.randint(0, 256, (3, 1, 80, 70), dtype=torch.uint8)
    batch = segment_probabilities(net, images, num_classes=1, tile=32, batch_size=4)
    assert batch.shape == (3, 1, 80, 70)
    for image, probs in zip(images, batch):
        torch.testing.assert_close(probs, _whole(net, image.float() / 255), atol=1e-5, rtol=0)


def test_tiles_are_batched():
    batches = []

    def record(tiles):
        batches.append(tiles.shape[0])
        return torch.zeros(tiles.shape[0], 1, *tiles.shape[2:])

    segment_probabilities(record, torch.rand(1, 150, 97), num_classes=1, tile=64, overlap=0.25, batch_size=4)
    assert batches == [4, 2]  # 3 x 2 windows


def test_too_large_for_memory_is_one_line_naming_the_image_before_any_work():
    def never(tiles):
        raise AssertionError("the network must not run")

    with pytest.raises(DataError) as error:
        segment_probabilities(never, torch.rand(1, 3000, 2000), num_classes=2, tile=64,
                              name="scans/huge.tif", memory_limit=2**20)
    message = str(error.value)
    assert message.startswith("scans/huge.tif: a 3000x2000 px image needs 92 MiB") and "\n" not in message
    assert "tile 64x64" in message and "1 MiB allowed (the memory limit)" in message
    check_memory("fits.png", (3000, 2000), 1, 2, (64, 64), memory_limit=2**30)  # no error


def test_network_with_the_wrong_number_of_classes_is_refused():
    with pytest.raises(ValueError, match="expected num_classes 3"):
        segment_probabilities(_small_conv_net(), torch.rand(1, 32, 32), num_classes=3, tile=32)


def test_mirroring_averages_the_four_flips_of_each_window():
    """A network whose logit is its column index within the window: unflipped it gives the
    ramp 0..T-1, left-right flipped (and flipped back) the reversed ramp; up-down flips change
    nothing. The hand-computed answer is the mean of sigmoid(ramp) and sigmoid(reversed ramp)."""
    def column_ramp(tiles: torch.Tensor) -> torch.Tensor:
        columns = torch.arange(tiles.shape[-1], dtype=torch.float32) / 8
        return columns.expand(tiles.shape[0], 1, *tiles.shape[-2:]).clone()

    image = torch.rand(1, 16, 16)
    plain = segment_probabilities(column_ramp, image, num_classes=1, tile=16)
    mirrored = segment_probabilities(column_ramp, image, num_classes=1, tile=16, mirror=True)
    ramp = torch.arange(16, dtype=torch.float32) / 8
    torch.testing.assert_close(plain[0, 3], torch.sigmoid(ramp))
    torch.testing.assert_close(mirrored[0, 3], (torch.sigmoid(ramp) + torch.sigmoid(ramp.flip(0))) / 2)


@pytest.mark.parametrize("num_classes", [1, 3])
def test_mirroring_leaves_a_flip_equivariant_network_unchanged(num_classes):
    """A 1x1 convolution commutes with every flip, so the mirrored mean is the plain result."""
    net = _pointwise_net(num_classes)
    image = torch.rand(2, 1, 70, 45)
    plain = segment_probabilities(net, image, num_classes=num_classes, tile=32)
    mirrored = segment_probabilities(net, image, num_classes=num_classes, tile=32, mirror=True)
    torch.testing.assert_close(mirrored, plain, atol=1e-5, rtol=0)
