from pathlib import Path

import pydantic
import pytest

from ganseg.config import load_params
from ganseg.errors import ConfigError
from tests.helpers import write_params

REPO = Path(__file__).resolve().parents[2]


def test_repository_params_file_is_valid():
    params = load_params(REPO / "params.yaml")
    assert params.common.image_size == 64
    assert params.prepare.source == "synthetic"
    # The default run is a few-label task: a few dozen labelled training pairs, a test split
    # big enough for a tight interval, and unlabeled images for semi-supervised fine-tuning.
    split, count = params.prepare.split, params.prepare.synthetic.num_images
    assert round(split.train * count) <= 32 and round(split.test * count) >= 60 and split.unlabeled > 0
    assert params.finetune.unlabeled.enabled and params.finetune.unlabeled.labeled_fraction == 1.0
    with pytest.raises(pydantic.ValidationError):
        params.common.seed = 1  # frozen


@pytest.mark.parametrize(
    ("blocks", "expected"),
    [
        ({"common": {"sede": 1}}, "unknown key 'common.sede'"),
        ({"prepare": {"split": {"train": 0.5, "val": 0.3, "test": 0.3}}}, "prepare.split: train + val + test + unlabeled must sum to 1"),
        ({"prepare": {"split": {"train": 0.2, "val": 0.1, "test": 0.4, "unlabeled": 0.4}}}, "they sum to 1.1"),
        ({"prepare": {"split": {"train": 0.7, "val": 0.15, "test": 0.15, "unlabeled": -0.1}}}, "prepare.split.unlabeled: Input should be greater than or equal to 0"),
        ({"prepare": {"split": {"train": 0.9, "val": -0.1, "test": 0.2}}}, "prepare.split.val: Input should be greater than or equal to 0 (got -0.1)"),
        ({"common": {"image_size": "big"}}, "common.image_size"),
        ({"common": {"channels": 2}}, "common.channels"),
        ({"common": {"device": "gpu"}}, "common.device: must be auto, cpu, cuda or cuda:N"),
        ({"prepare": {"source": "folder"}}, "needs folder.images_dir and folder.masks_dir"),
        ({"prepare": {"synthetic": {"radius_min": 0.2, "radius_max": 0.1}}}, "radius_min must not exceed"),
        ({"prepare": ["not", "a", "mapping"]}, "prepare"),
    ],
)
def test_bad_params_give_one_line_naming_file_and_key(tmp_path, blocks, expected):
    path = write_params(tmp_path / "params.yaml", blocks)
    with pytest.raises(ConfigError) as info:
        load_params(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(path))
    assert expected in message


@pytest.mark.parametrize(
    ("blocks", "expected"),
    [
        ({"train": {"pretrain_share": 0}}, "train.pretrain_share: Input should be greater than 0"),
        ({"train": {"pretrain_share": 1}}, "train.pretrain_share: Input should be less than 1"),
        ({"train": {"synthetic_schedule": "later"}}, "train.synthetic_schedule"),
        ({"augment": {"num_samples": 0}}, "augment.num_samples"),
        ({"augment": {"num_samples": "many"}}, "augment.num_samples"),
        ({"augment": {"filter": {"min_relative_dice": 1.5}}}, "augment.filter.min_relative_dice"),
        ({"augment": {"consistency": {"steps": 0}}}, "filter.min_relative_dice scores pairs with the reference segmenter"),
    ],
)
def test_synthetic_pair_params_reject_nonsense(tmp_path, blocks, expected):
    path = write_params(tmp_path / "params.yaml", blocks)
    with pytest.raises(ConfigError) as info:
        load_params(path)
    assert "\n" not in str(info.value) and expected in str(info.value)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="params file not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("common:\n  seed: [1,\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: line \d+"):
        load_params(bad)


def test_empty_file_gives_defaults(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("")
    assert load_params(path).common.seed == 42
