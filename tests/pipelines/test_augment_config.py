"""The augment params block: defaults match params.yaml, and wrong values are named."""

from __future__ import annotations

from pathlib import Path

import pytest

from ganseg.config import load_params
from ganseg.config.augment import AugmentConfig, GanObjectiveConfig
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
    with pytest.raises(ConfigError, match="augment.discriminator.layers"):
        AugmentConfig.model_validate({"discriminator": {"layers": 5}, "pix2pix": {"depth": 2}}).check_against(64)
    assert AugmentConfig().unet_depth(128) == 5
