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
    with pytest.raises(pydantic.ValidationError):
        params.common.seed = 1  # frozen


@pytest.mark.parametrize(
    ("blocks", "expected"),
    [
        ({"common": {"sede": 1}}, "unknown key 'common.sede'"),
        ({"prepare": {"split": {"train": 0.5, "val": 0.3, "test": 0.3}}}, "prepare.split: train + val + test must sum to 1"),
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
