"""The registry: every name resolves to a function with its kind's signature."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ganseg import metrics
from ganseg.metrics import REGISTRY, get_metric


def test_names_and_kinds():
    assert set(REGISTRY) == {"dice", "iou", "precision", "recall", "hd95", "fid", "kid", "inception_score"}
    assert {name for name, spec in REGISTRY.items() if spec.kind == "segmentation"} == {
        "dice", "iou", "precision", "recall", "hd95"
    }
    assert [name for name, spec in REGISTRY.items() if not spec.higher_is_better] == ["hd95", "fid", "kid"]
    assert all(spec.name == name for name, spec in REGISTRY.items())


def test_segmentation_entries_share_one_signature():
    target = torch.zeros(2, 16, 16, dtype=torch.long)
    target[:, 4:10, 4:10] = 1
    target[1, 12:, 12:] = 2
    pred = torch.roll(target, shifts=1, dims=2)
    for name, spec in REGISTRY.items():
        if spec.kind == "segmentation":
            values = spec.fn(pred, target, 3)
            assert values.shape == (2, 2) and values.dtype == torch.float64, name


def test_feature_entries_share_one_signature():
    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(20, 8)), rng.normal(0.5, size=(20, 8))
    assert get_metric("fid").fn(real, fake) > 0
    assert get_metric("kid").fn(real, fake).mean > 0


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(KeyError, match="unknown metric 'dise'; known: dice, fid, hd95"):
        get_metric("dise")


def test_public_api_is_importable():
    for name in metrics.__all__:
        assert getattr(metrics, name) is not None
