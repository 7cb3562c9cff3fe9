"""Evaluate's inference, overlays and grids on images of differing, non-square sizes, and the
memory check that names the file before any image is segmented."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ganseg.data.pairs import IGNORE
from ganseg.errors import DataError
from ganseg.evaluation import overlays
from ganseg.evaluation.inference import check_images_fit, predict_labels
from ganseg.evaluation.models import load_model
from tests.evaluation.fakes import tiny_model_file

SIZES = [(32, 32), (24, 40), (32, 32), (50, 18), (70, 45)]


def _images(sizes, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 256, (1, h, w), dtype=torch.uint8, generator=generator) for h, w in sizes]


@pytest.fixture
def model(tmp_path):
    return load_model(tiny_model_file(tmp_path / "unet_real.pt", seed=0, image_size=32), torch.device("cpu"))


def test_labels_come_back_per_image_at_its_own_size_as_if_segmented_alone(model):
    images = _images(SIZES)
    labels = predict_labels(model, images, batch_size=4, threshold=0.5)
    assert [tuple(label.shape) for label in labels] == SIZES
    assert all(label.dtype == torch.uint8 for label in labels)
    for image, together in zip(images, labels):
        alone = predict_labels(model, [image], batch_size=4, threshold=0.5)[0]
        assert torch.equal(together, alone)


def test_the_patch_size_in_the_model_config_is_the_window(tmp_path):
    path = tiny_model_file(tmp_path / "unet_real.pt", seed=0, image_size=64)
    assert load_model(path, torch.device("cpu")).patch_size == 64  # older model: its image size
    path.with_suffix(".json").write_text(json.dumps({"patch_size": 48}))
    assert load_model(path, torch.device("cpu")).patch_size == 48


def test_an_image_too_large_for_memory_is_named_before_any_is_segmented(model, monkeypatch):
    from ganseg.inference import sliding_window

    class Memory:
        available = 2 * 4 * 50 * 32 * 3  # half of it fits a 50x32 px map (float32 map, weights, image)

    monkeypatch.setattr(sliding_window.psutil, "virtual_memory", lambda: Memory)
    images = _images([(32, 32), (70, 45), (32, 32), (80, 80)])
    names = ["test/images/a.png", "test/images/big.png", "test/images/c.png", "test/images/huge.png"]
    with pytest.raises(DataError, match=r"^test/images/big\.png: a 70x45 px image needs .*; 1 more test image"):
        check_images_fit(model, images, names)
    check_images_fit(model, images[:1], names[:1])  # a small one fits


def test_error_overlay_greys_out_pixels_outside_the_region_of_interest():
    image = np.full((3, 5, 1), 100, np.uint8)
    truth = np.zeros((3, 5), np.uint8)
    truth[:, 3:] = IGNORE
    predicted = np.ones((3, 5), np.uint8)  # foreground everywhere: false positives inside, nothing outside
    rgb = overlays.error_overlay(image, predicted, truth).astype(int)
    inside, outside = rgb[:, :3], rgb[:, 3:]
    assert (inside[..., 0] > inside[..., 2]).all()  # orange: false positive
    assert (outside == outside[0, 0]).all() and outside[0, 0, 0] == outside[0, 0, 1] == outside[0, 0, 2]  # grey
    assert outside[0, 0, 0] != 100  # washed, not left as the plain image


def test_image_grid_draws_images_of_differing_sizes(tmp_path):
    from ganseg.evaluation import charts

    cells = [(np.full((h, w, 3), 200, np.uint8), f"{h}x{w}") for h, w in SIZES]
    charts.image_grid([("best", cells[:3]), ("worst", cells[3:])], tmp_path / "grid.png", "mixed sizes")
    assert (tmp_path / "grid.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
