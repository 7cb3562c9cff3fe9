"""The plan's cost measurements: a validation is priced by timing the stage's own validation."""

import pytest
import torch

from ganseg.training import speed
from ganseg.training.speed import StepRate, covered_pixels, measure_validation_seconds_per_pixel


def test_covered_pixels_counts_every_window_and_pads_a_short_axis():
    # 100 x 40 at tile 32, overlap 0.25 (step 24): rows 1 + ceil(68 / 24) = 4, cols 1 + ceil(8 / 24) = 2
    assert covered_pixels([(100, 40)], 32) == 4 * 2 * 32 * 32
    assert covered_pixels([(10, 10)], 32) == 32 * 32  # smaller than the tile: one padded window


def test_validation_probe_times_only_a_share_of_the_images_after_a_warm_up(monkeypatch):
    sizes = [(64, 64)] * 10 + [(128, 128)] * 10
    clock = {"now": 0.0}
    monkeypatch.setattr(speed.time, "perf_counter", lambda: clock["now"])
    calls = []
    cost_per_pixel = 2e-6

    def validate(indices, tile):  # a validation that costs exactly cost_per_pixel per window pixel
        calls.append(list(indices))
        clock["now"] += cost_per_pixel * covered_pixels([sizes[i] for i in indices], tile)
        torch.rand(1)  # draws from the global RNG, which the probe must leave as it was

    torch.manual_seed(0)
    expected_next = torch.rand(1)
    torch.manual_seed(0)
    measured = measure_validation_seconds_per_pixel(validate, sizes, 64, torch.device("cpu"))

    assert measured == pytest.approx(cost_per_pixel)
    assert calls[0] == [0]  # the warm-up, not counted
    timed = calls[1]
    total = covered_pixels(sizes, 64)
    assert covered_pixels([sizes[i] for i in timed], 64) >= speed.VALIDATION_PROBE_SHARE * total
    assert covered_pixels([sizes[i] for i in timed[:-1]], 64) < speed.VALIDATION_PROBE_SHARE * total
    assert len(calls) == 2
    assert torch.equal(torch.rand(1), expected_next)

    rate = StepRate(patch=64, batch=8, step_seconds=0.1, validation_seconds_per_pixel=measured)
    assert rate.seconds_to_validate(sizes, 64) == pytest.approx(cost_per_pixel * total)


def test_validation_probe_without_validation_images_costs_nothing():
    def validate(indices, tile):
        raise AssertionError("nothing to validate")

    assert measure_validation_seconds_per_pixel(validate, [], 64, torch.device("cpu")) == 0.0
