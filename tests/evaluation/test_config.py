"""The evaluate and predict blocks: defaults load, mistakes are one line naming the key."""

import pytest

from ganseg.config import load_params
from ganseg.errors import ConfigError
from tests.helpers import write_params


def test_defaults(tmp_path):
    params = load_params(write_params(tmp_path / "p.yaml", {}))
    assert params.evaluate.variants == ["real", "synthetic"] and params.evaluate.baseline == "real"
    assert params.evaluate.registry.model_name == "ganseg-unet"
    assert params.predict.tile_size is None and 0 < params.predict.overlap < 1


@pytest.mark.parametrize(
    ("blocks", "expected"),
    [
        ({"evaluate": {"variants": ["real", "Real GAN"]}}, "evaluate.variants: variant 'Real GAN' must be lower-case"),
        ({"evaluate": {"variants": ["real", "real"]}}, "variants must not repeat"),
        ({"evaluate": {"variants": ["synthetic"]}}, "baseline 'real' must be one of variants"),
        ({"evaluate": {"on_missing": "ignore"}}, "evaluate.on_missing"),
        ({"evaluate": {"bootstrap": {"resamples": 10}}}, "evaluate.bootstrap.resamples"),
        ({"evaluate": {"bootstrap": {"confidence": 1.2}}}, "evaluate.bootstrap.confidence"),
        ({"evaluate": {"registry": {"modle_name": "x"}}}, "unknown key 'evaluate.registry.modle_name'"),
        ({"predict": {"overlap": 1.0}}, "predict.overlap"),
        ({"predict": {"scale": 0}}, "predict.scale"),
    ],
)
def test_mistakes_name_the_key(tmp_path, blocks, expected):
    with pytest.raises(ConfigError) as info:
        load_params(write_params(tmp_path / "p.yaml", blocks))
    assert expected in str(info.value) and "\n" not in str(info.value)
