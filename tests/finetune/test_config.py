"""The finetune params block: documented defaults, one-line errors naming the key."""

import pytest

from ganseg.config import load_params
from ganseg.config.finetune import FinetuneConfig
from ganseg.errors import ConfigError
from tests.conftest import REPO_ROOT
from tests.helpers import write_params


def test_params_yaml_block_is_the_documented_defaults():
    assert load_params(REPO_ROOT / "params.yaml").finetune == FinetuneConfig()


@pytest.mark.parametrize(("block", "message"), [
    ({"discriminator": {"kindd": "pixel"}}, "unknown key 'finetune.discriminator.kindd'"),
    ({"discriminator": {"kind": "dense"}}, "finetune.discriminator.kind"),
    ({"unlabeled": {"labeled_fraction": 0}}, "finetune.unlabeled.labeled_fraction"),
    ({"objective": {"loss": "wgan_gp"}, "discriminator": {"norm": "batch"}}, "breaks per-sample gradient penalties"),
    ({"objective": {"minibatch_std": True}, "discriminator": {"kind": "pixel"}}, "patchgan discriminator only"),
    ({"objective": {"loss": "hinge", "label_smoothing": 0.1}}, "label_smoothing applies to bce and lsgan"),
])
def test_bad_values_stop_with_one_line_naming_the_key(tmp_path, block, message):
    path = write_params(tmp_path / "params.yaml", {"finetune": block})
    with pytest.raises(ConfigError) as caught:
        load_params(path)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_discriminator_depth_is_checked_against_the_image_size():
    FinetuneConfig(discriminator={"layers": 3}).check_against(32)
    with pytest.raises(ConfigError, match="finetune.discriminator.layers"):
        FinetuneConfig(discriminator={"layers": 4}).check_against(32)
    FinetuneConfig(discriminator={"kind": "pixel", "layers": 5}).check_against(32)
