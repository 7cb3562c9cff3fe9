"""The documented GPU profile applies cleanly on top of params.yaml."""

from pathlib import Path

import yaml

from ganseg.config import load_params

REPO = Path(__file__).resolve().parents[2]


def _overrides() -> dict:
    merged: dict = {}
    for line in (REPO / "params" / "gpu.overrides").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        flag, assignment = line.split(maxsplit=1)
        assert flag == "-S"
        key, value = assignment.split("=", 1)
        node = merged
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    return merged


def test_gpu_profile_is_valid_and_bigger_than_the_default():
    default = load_params(REPO / "params.yaml")
    gpu = load_params(REPO / "params.yaml", overrides=_overrides())
    assert gpu.common.device == "cuda"
    assert gpu.common.image_size > default.common.image_size
    assert gpu.train.model.base_width > default.train.model.base_width
    assert gpu.augment.steps > default.augment.steps
