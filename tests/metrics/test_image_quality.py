"""FID/KID end to end: torchmetrics' update path with the same extractor and the same uint8
images, identical sets, blur vs noise, batch-size independence, the reported N."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from ganseg.config.prepare import SyntheticSourceConfig
from ganseg.data.synthetic import generate_pair
from ganseg.metrics.fid import fid_from_features
from ganseg.metrics.image_quality import compute_fid_kid, seeded_crops, seeded_subset
from ganseg.metrics.kid import kid_from_features
from tests.metrics.test_fid import _fid_extended_precision


class SmallFeatureNet(nn.Module):
    """A cheap, fixed, deterministic extractor (uint8 -> 24-d) for the full-rank regime, N > D,
    where the references' eigvals route is accurate; Inception there would need N > 2048."""

    num_features = 24

    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.conv1 = nn.Conv2d(1, 12, 3, stride=2)
        self.conv2 = nn.Conv2d(12, 24, 3, stride=2)
        for parameter in self.parameters():
            parameter.data = torch.randn(parameter.shape, generator=generator) * 0.3
        self.source = "small-test-net"

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float() / 255  # (N, 1, H, W)
        x = torch.tanh(self.conv2(torch.tanh(self.conv1(x))))
        return x.mean(dim=(2, 3))  # (N, 24)


class Float64(nn.Module):
    """torchmetrics' KID keeps features in the extractor's dtype; ours are float64."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.inner(images).double()


def _microscopy(count: int, seed: int, size: int = 32) -> torch.Tensor:
    cfg = SyntheticSourceConfig()
    return torch.from_numpy(np.stack([generate_pair(cfg, size, seed, i).image for i in range(count)]))[:, None]


@pytest.fixture(scope="module")
def small_sets() -> tuple[torch.Tensor, torch.Tensor]:
    real = _microscopy(90, seed=1)
    fake = (_microscopy(80, seed=2).float() * 0.8 + 20).round().to(torch.uint8)  # dimmer, lifted
    return real, fake


def test_fid_matches_torchmetrics_end_to_end_in_the_full_rank_regime(small_sets):
    real, fake = small_sets
    net = SmallFeatureNet().eval()
    ours = compute_fid_kid(real, fake, net, batch_size=7).fid
    metric = FrechetInceptionDistance(feature=net, normalize=False)
    for start in range(0, len(real), 16):  # a different batching than ours
        metric.update(real[start : start + 16], real=True)
    metric.update(fake, real=False)
    assert ours > 3 * compute_fid_kid(real[:45], real[45:], net).fid  # the sets do differ
    assert ours == pytest.approx(float(metric.compute()), rel=1e-6)


@pytest.mark.filterwarnings("ignore:Metric `Kernel Inception Distance` will save")
def test_kid_matches_torchmetrics_end_to_end(small_sets):
    """Whole-set subsets (80 of 80), so torchmetrics' random draws cannot differ from ours."""
    real, fake = small_sets[0][:80], small_sets[1]
    net = SmallFeatureNet().eval()
    ours = compute_fid_kid(real, fake, net, batch_size=7, kid_subsets=2, kid_subset_size=80)
    metric = KernelInceptionDistance(feature=Float64(net), subsets=2, subset_size=80)
    metric.update(real, real=True)
    metric.update(fake, real=False)
    reference_mean, _ = metric.compute()
    assert ours.kid_mean > 0
    assert ours.kid_mean == pytest.approx(float(reference_mean), rel=1e-9)


def test_result_reports_n_and_the_extractor(small_sets):
    real, fake = small_sets
    result = compute_fid_kid(real[:30], fake[:20], SmallFeatureNet().eval(), batch_size=8)
    assert (result.n_real, result.n_fake, result.kid_subset_size) == (30, 20, 20)
    record = result.as_dict()
    assert record["eval/fid_n_real"] == 30 and record["eval/fid_n_fake"] == 20
    assert record["eval/fid"] == result.fid and record["eval/feature_extractor"] == "small-test-net"


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Metric `Kernel Inception Distance` will save")
def test_fid_matches_torchmetrics_with_the_inception_extractor(extractor, real_images, blurred_images, features):
    """Same extractor, same uint8 images, through torchmetrics' update path. N = 8 < 2048, so
    its eigvals route carries its own round-off (up to ~1e-6 relative, see test_fid); ours is
    exact to ~1e-12 against 40-digit arithmetic, so any gap is the reference's."""
    metric = FrechetInceptionDistance(feature=extractor, normalize=False)
    for start in range(0, 8, 4):
        metric.update(real_images[start : start + 4], real=True)
        metric.update(blurred_images[start : start + 4], real=False)
    reference = float(metric.compute())
    ours = fid_from_features(features["real"], features["blurred"])
    exact = _fid_extended_precision(features["real"].double().numpy(), features["blurred"].double().numpy())
    assert ours == pytest.approx(exact, rel=1e-12)
    assert ours == pytest.approx(reference, rel=1e-6)  # measured 2.5e-7 (FID ~390)
    # the torchmetrics statistics themselves equal ours (so the gap is only its Fréchet step)
    n = metric.real_features_num_samples
    mean = metric.real_features_sum / n
    torch.testing.assert_close(mean, features["real"].double().mean(0), rtol=1e-5, atol=1e-8)


def test_identical_sets_give_zero(features):
    real = features["real"].double()
    scale = float(real.var(dim=0).sum())  # Tr(S)
    assert abs(fid_from_features(real, real)) < 1e-6 * scale
    assert scale > 1


def test_blur_moves_further_than_light_noise(features):
    fid_blur = fid_from_features(features["real"], features["blurred"])
    fid_noise = fid_from_features(features["real"], features["noised"])
    kid_blur = kid_from_features(features["real"], features["blurred"]).mean
    kid_noise = kid_from_features(features["real"], features["noised"]).mean
    assert fid_blur > 3 * fid_noise > 0
    assert kid_blur > kid_noise


def test_fid_and_kid_do_not_depend_on_batch_size(features):
    other = features["blurred"]
    fid_8 = fid_from_features(features["real"], other)
    fid_3 = fid_from_features(features["real_batch3"], other)
    kid_8 = kid_from_features(features["real"], other).mean
    kid_3 = kid_from_features(features["real_batch3"], other).mean
    assert fid_3 == pytest.approx(fid_8, rel=1e-5)
    assert kid_3 == pytest.approx(kid_8, rel=1e-5)


def _mixed_real(count: int, seed: int) -> list[torch.Tensor]:
    """Real images of their own sizes: 48..95 px, non-square."""
    rng = np.random.default_rng(seed)
    return [torch.from_numpy(rng.integers(0, 256, (1, int(rng.integers(48, 96)), int(rng.integers(48, 96))),
                                          dtype=np.uint8)) for _ in range(count)]


def test_real_images_are_cropped_to_the_generated_size_not_resized():
    real = _mixed_real(12, seed=0) + [torch.zeros(1, 20, 40, dtype=torch.uint8)]  # one smaller than 32
    crops = seeded_crops(real, 8, (32, 32), seed=5)
    assert crops.shape == (8, 1, 32, 32) and crops.dtype == torch.uint8
    chosen = [real[i] for i in sorted(np.random.default_rng(5).choice(13, 8, replace=False))]
    for crop, image in zip(crops, chosen):
        if image.shape[-2] < 32:  # reflection-padded, its pixels all from the image
            assert set(crop.unique().tolist()) <= set(image.unique().tolist())
            continue
        windows = image.unfold(1, 32, 1).unfold(2, 32, 1)  # (1, H-31, W-31, 32, 32): every window
        assert (windows == crop[0]).flatten(3).all(-1).any()  # the crop is one of them, at scale 1
    assert torch.equal(seeded_crops(real, 8, (32, 32), seed=5), crops)
    same_size = _microscopy(10, seed=1)
    assert torch.equal(seeded_crops(list(same_size), 6, (32, 32), seed=2), seeded_subset(same_size, 6, 2))


def test_image_quality_on_lists_of_any_sizes_draws_every_side_to_one_n(monkeypatch):
    from ganseg.config.evaluate import SyntheticQualityConfig
    from ganseg.evaluation import synthetic_quality

    monkeypatch.setattr(synthetic_quality, "load_feature_extractor", lambda *args, **kwargs: SmallFeatureNet().eval())
    cfg = SyntheticQualityConfig(max_images=64, kid_subset_size=50, kid_subsets=5, inception_score=False)
    fake = list(_microscopy(40, seed=2))
    quality = synthetic_quality.image_quality(_mixed_real(30, 0), fake, _mixed_real(25, 1), cfg, seed=0,
                                              device=torch.device("cpu"))
    values = quality.values
    assert quality.n == 25 and (values["n_real"], values["n_synthetic"], values["reference_n"]) == (25, 25, 25)
    assert values["fid"] > 0 and values["reference_fid"] > 0
    with pytest.raises(ValueError, match="synthetic images: generated images must share one size"):
        synthetic_quality.image_quality(_mixed_real(30, 0), _mixed_real(30, 1), None, cfg, 0, torch.device("cpu"))
