"""The augment params block: defaults match params.yaml, and wrong values are named."""

from __future__ import annotations

from pathlib import Path

import pytest

from ganseg.config import load_params
from ganseg.config.augment import (
    AUTO_PATCH_CAP,
    AUTO_SAMPLES_CAP,
    AugmentConfig,
    GanObjectiveConfig,
    resolve_num_samples,
    resolve_patch_size,
)
from ganseg.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def test_params_yaml_block_equals_the_model_defaults():
    assert load_params(REPO / "params.yaml").augment == AugmentConfig()


@pytest.mark.parametrize(
    "objective,message",
    [
        ({"loss": "hinge", "label_smoothing": 0.1}, "label_smoothing applies to bce and lsgan"),
        ({"loss": "wgan_gp", "gradient_penalty": 0}, "wgan_gp needs gradient_penalty > 0"),
        ({"loss": "wgan", "weight_clip": 0}, "wgan needs weight_clip > 0"),
    ],
)
def test_inconsistent_objectives_are_rejected(objective, message):
    with pytest.raises(ValueError, match=message):
        GanObjectiveConfig.model_validate(objective)


def test_defaults_resolve_per_loss():
    assert GanObjectiveConfig(loss="wgan_gp").gradient_penalty_weight == 10.0
    assert GanObjectiveConfig(loss="wgan").weight_clip_limit == 0.01
    assert GanObjectiveConfig().gradient_penalty_weight == 0.0 and GanObjectiveConfig().weight_clip_limit == 0.0


def test_loader_names_file_and_key(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("augment:\n  sample_interval: 15\n  log_interval: 10\n")
    with pytest.raises(ConfigError, match=r"params.yaml: augment: sample_interval \(15\) must be a multiple"):
        load_params(path)
    path.write_text("augment:\n  objective: {r1_gamma: 1.0}\n  discriminator: {norm: batch}\n")
    with pytest.raises(ConfigError, match="breaks per-sample gradient penalties"):
        load_params(path)


def test_size_dependent_rules():
    AugmentConfig().check_against(64)
    with pytest.raises(ConfigError, match="augment.pix2pix.depth: 4 down-samplings need"):
        AugmentConfig().check_against(72)
    with pytest.raises(ConfigError, match="augment.model dcgan needs a power-of-two augment.patch_size"):
        AugmentConfig(model="dcgan").check_against(48)
    with pytest.raises(ConfigError, match="augment.discriminator.layers"):
        AugmentConfig.model_validate({"discriminator": {"layers": 5}, "pix2pix": {"depth": 2}}).check_against(64)
    assert AugmentConfig().unet_depth(128) == 5


def test_auto_patch_size_fits_the_networks_and_the_median_shorter_side():
    pix2pix, dcgan = AugmentConfig(), AugmentConfig(model="dcgan")
    assert resolve_patch_size(pix2pix, [(64, 64)] * 5) == 64  # images of a valid size train whole
    assert resolve_patch_size(pix2pix, [(100, 300), (90, 90), (200, 50)]) == 80  # median 90; 80 = 5 x 2^4
    assert resolve_patch_size(dcgan, [(100, 300), (90, 90), (200, 50)]) == 64  # a power of two
    assert resolve_patch_size(pix2pix, [(1040, 1388)] * 3) == AUTO_PATCH_CAP
    assert resolve_patch_size(pix2pix, [(20, 20)]) == 32  # nothing fits: the smallest valid side, padded
    for sizes in ([(37, 500)], [(129, 130), (700, 900)], [(33, 33)]):
        pix2pix.check_against(resolve_patch_size(pix2pix, sizes))
        dcgan.check_against(resolve_patch_size(dcgan, sizes))
    assert resolve_patch_size(AugmentConfig(patch_size=48), [(1000, 1000)]) == 48  # explicit wins


def test_patch_size_is_an_int_or_auto():
    with pytest.raises(ValueError, match="patch_size"):
        AugmentConfig(patch_size=4)
    with pytest.raises(ValueError, match="patch_size"):
        AugmentConfig(patch_size="large")


def test_auto_num_samples_is_twenty_per_training_pair_capped_and_an_int_wins():
    assert AugmentConfig().num_samples == "auto"
    assert resolve_num_samples(AugmentConfig(), 24) == 480
    assert resolve_num_samples(AugmentConfig(), 112) == 2240
    assert resolve_num_samples(AugmentConfig(), 10_000) == AUTO_SAMPLES_CAP
    assert resolve_num_samples(AugmentConfig(num_samples=7), 24) == 7
