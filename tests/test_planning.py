"""Fingerprint against hand-made masks with analytic answers; plan rules on made-up fingerprints."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from ganseg.data.pairs import IGNORE
from ganseg.errors import ConfigError, DataError
from ganseg.planning import (
    CPU_MAX_PATCH,
    DatasetFingerprint,
    DeviceBudget,
    ObjectStats,
    SegmenterPlan,
    describe_device,
    estimate_training_bytes,
    fingerprint,
    plan_segmenter,
)

CPU = DeviceBudget("cpu", 2)
GIB = 2**30


def disc(mask: np.ndarray, cy: int, cx: int, radius: float, label: int = 1) -> None:
    yy, xx = np.mgrid[: mask.shape[0], : mask.shape[1]]
    mask[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2] = label


def pair(mask: np.ndarray, channels: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    image = torch.zeros((channels, *mask.shape), dtype=torch.uint8)
    return image, torch.from_numpy(mask.astype(np.uint8))


def made_up(
    sizes=((512, 512),) * 40, diameter: float | None = 12.0, num_images: int | None = None
) -> DatasetFingerprint:
    """A fingerprint with the fields the planner reads; not derived from images."""
    sizes = tuple(sizes)
    shapes = np.array(sizes)
    objects = (ObjectStats(1, (5,) * len(sizes), diameter, diameter, diameter),) if diameter else ()
    return DatasetFingerprint(
        num_images=num_images or len(sizes),
        channels=1,
        num_classes=1,
        image_sizes=sizes,
        median_shape=tuple(int(v) for v in np.median(shapes, axis=0)),
        min_shape=tuple(int(v) for v in shapes.min(axis=0)),
        max_shape=tuple(int(v) for v in shapes.max(axis=0)),
        foreground_fraction=0.1,
        foreground_fraction_per_class=(0.1,),
        ignored_fraction=0.0,
        objects=objects,
    )


def cpu_rate(patch: int, batch: int) -> float:
    """Assumed: compute bound, proportional to the pixels of a batch."""
    return 0.9 * batch * (patch / 128) ** 2 / 8


def plan(fp=None, device=CPU, budget=15.0, explicit=None, step=cpu_rate, validation=12.0, depth=4, **kwargs):
    return plan_segmenter(
        fp or made_up(),
        device,
        depth=depth,
        base_width=32,
        budget_minutes=budget,
        seconds_per_step=step,
        seconds_per_validation=validation,
        explicit=explicit or {},
        **kwargs,
    )


# --------------------------------------------------------------------------- fingerprint


def test_fingerprint_two_discs_of_radius_5_have_diameter_10():
    mask = np.zeros((60, 80), dtype=np.uint8)
    disc(mask, 15, 15, 5)
    disc(mask, 40, 60, 5)
    fp = fingerprint(*map(list, zip(pair(mask))), num_classes=1)
    (objects,) = fp.objects
    assert objects.count_per_image == (2,)
    assert objects.median_diameter == pytest.approx(10, abs=1)
    assert objects.p10_diameter == pytest.approx(10, abs=1)
    assert fp.foreground_fraction == pytest.approx(2 * np.pi * 25 / (60 * 80), rel=0.1)
    assert fp.image_sizes == ((60, 80),) and fp.median_shape == (60, 80) and fp.channels == 1


def test_fingerprint_sizes_counts_and_ignored_over_several_images():
    small = np.zeros((40, 40), dtype=np.uint8)
    disc(small, 20, 20, 10)  # one object, diameter 20
    large = np.zeros((100, 60), dtype=np.uint8)
    for cx in (10, 30, 50):
        disc(large, 50, cx, 4)  # three objects, diameter 8
    large[:10] = IGNORE  # 600 of 6000 pixels outside the region of interest
    empty = np.zeros((80, 50), dtype=np.uint8)
    images, masks = zip(pair(small, 3), pair(large, 3), pair(empty, 3))
    fp = fingerprint(list(images), list(masks), num_classes=1)

    assert fp.num_images == 3 and fp.channels == 3
    assert fp.min_shape == (40, 40) and fp.max_shape == (100, 60) and fp.median_shape == (80, 50)
    assert fp.objects[0].count_per_image == (1, 3, 0)
    assert fp.objects[0].median_diameter == pytest.approx(8, abs=1)  # three of the four objects
    assert fp.objects[0].p90_diameter > 15
    assert fp.ignored_fraction == pytest.approx(600 / (1600 + 6000 + 4000))
    small_fraction = (small == 1).mean()
    large_fraction = (large == 1).sum() / 5400  # over the pixels that are not ignored
    assert fp.foreground_fraction == pytest.approx((small_fraction + large_fraction) / 3)


def test_fingerprint_multi_class_reports_each_class():
    mask = np.zeros((64, 64), dtype=np.uint8)
    disc(mask, 16, 16, 6, label=1)
    disc(mask, 48, 48, 12, label=2)
    disc(mask, 16, 48, 12, label=2)
    fp = fingerprint(*map(list, zip(pair(mask))), num_classes=3)
    one, two = fp.objects
    assert (one.label, one.count_per_image, two.count_per_image) == (1, (1,), (2,))
    assert one.median_diameter == pytest.approx(12, abs=1) and two.median_diameter == pytest.approx(24, abs=1)
    assert fp.typical_object_diameter == pytest.approx(24, abs=1)
    # two discs of twice the radius: eight times the area
    assert fp.foreground_fraction_per_class[1] == pytest.approx(8 * fp.foreground_fraction_per_class[0], rel=0.15)
    assert fp.foreground_fraction == pytest.approx(sum(fp.foreground_fraction_per_class))


def test_fingerprint_without_foreground_has_no_diameter():
    fp = fingerprint(*map(list, zip(pair(np.zeros((32, 32), dtype=np.uint8)))), num_classes=1)
    assert fp.objects[0].median_diameter is None and fp.typical_object_diameter is None
    assert fp.foreground_fraction == 0.0


def test_fingerprint_rejects_a_mask_of_the_wrong_size():
    with pytest.raises(DataError, match="does not match"):
        fingerprint([torch.zeros((1, 10, 10), dtype=torch.uint8)], [torch.zeros((10, 12), dtype=torch.uint8)], 1)


def test_fingerprint_json_round_trip(tmp_path):
    mask = np.zeros((30, 50), dtype=np.uint8)
    disc(mask, 15, 15, 5)
    fp = fingerprint(*map(list, zip(pair(mask))), num_classes=1)
    assert DatasetFingerprint.from_json(fp.to_json()) == fp
    path = tmp_path / "fingerprint.json"
    fp.write(path)
    assert DatasetFingerprint.read(path) == fp
    assert json.loads(path.read_text())["median_shape"] == [30, 50]
    assert list(tmp_path.iterdir()) == [path]  # no partial file left


def test_reading_a_missing_or_bad_fingerprint_names_the_file(tmp_path):
    missing = tmp_path / "none.json"
    with pytest.raises(DataError, match="none.json.*not found"):
        DatasetFingerprint.read(missing)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match="bad.json"):
        DatasetFingerprint.read(bad)
    partial = tmp_path / "partial.json"
    record = made_up().to_dict()
    del record["objects"]
    partial.write_text(json.dumps(record))
    with pytest.raises(DataError, match="partial.json.*objects"):
        DatasetFingerprint.read(partial)


# --------------------------------------------------------------------------- device


def test_describe_cpu_device():
    budget = describe_device(torch.device("cpu"))
    assert budget.kind == "cpu" and budget.cpu_cores >= 1 and budget.gpu_memory_bytes == 0


# --------------------------------------------------------------------------- plan


def test_plan_patch_is_a_multiple_of_two_to_the_depth_and_within_the_cpu_cap():
    for depth in (3, 4, 5):
        result = plan(made_up(sizes=((520, 696),) * 30), depth=depth)
        assert result.patch_size % 2**depth == 0
        assert result.patch_size <= CPU_MAX_PATCH
        assert set(result.reasons) == {"patch_size", "batch_size", "steps", "val_interval", "val_share"}
        assert result.steps % result.val_interval == 0


def test_plan_tiny_images_get_a_patch_no_larger_than_the_image_rounded_up():
    result = plan(made_up(sizes=((60, 60),) * 100, diameter=10))
    assert result.patch_size == 64
    result = plan(made_up(sizes=((40, 48),) * 100, diameter=30), depth=5)  # context would want 128
    assert result.patch_size <= 64


def test_plan_patch_covers_context_but_not_far_beyond_the_median_image():
    fast = lambda patch, batch: 0.01  # time is no constraint
    assert plan(made_up(sizes=((210, 300),) * 50), step=fast).patch_size == 208  # shorter side, nearest 16
    assert plan(made_up(sizes=((200, 300),) * 50), step=fast).patch_size == 192  # a tie goes down: no padding
    # Huge images, small objects, slow CPU steps: shrink towards 4 diameters for steps.
    slow = plan(made_up(sizes=((2048, 2048),) * 20, diameter=20))
    assert 80 <= slow.patch_size < CPU_MAX_PATCH
    assert "shrunk to reach" in slow.reasons["patch_size"]


def test_plan_double_budget_gives_about_double_steps():
    fp = made_up(sizes=((128, 128),) * 50)
    short, long = plan(fp, budget=15), plan(fp, budget=30)
    assert (short.patch_size, short.batch_size) == (long.patch_size, long.batch_size)
    assert long.steps / short.steps == pytest.approx(2, rel=0.1)
    for result, minutes in ((short, 15), (long, 30)):
        assert result.expected_minutes <= minutes
        validations = result.steps // result.val_interval
        assert 10 <= validations <= 25
        assert validations * 12.0 <= 0.2 * minutes * 60


def test_plan_tiny_budget_is_a_config_error_naming_the_key():
    with pytest.raises(ConfigError, match=r"train\.time_budget_minutes: 0\.1 min is less than one validation"):
        plan(budget=0.1, validation=12.0, step=lambda patch, batch: 3.0)
    with pytest.raises(ConfigError, match=r"finetune\.time_budget_minutes"):
        plan(budget=0.1, validation=12.0, key="finetune")
    with pytest.raises(ConfigError, match=r"train\.patch_size: 100 is not a multiple"):
        plan(explicit={"patch_size": 100})


def test_plan_explicit_values_win_and_the_rest_is_planned_around_them():
    base = plan()
    assert base.reasons["patch_size"] != "set in params"
    result = plan(explicit={"patch_size": 96, "batch_size": None, "steps": None, "val_interval": None})
    assert result.patch_size == 96 and result.reasons["patch_size"] == "set in params"
    larger = plan(explicit={"patch_size": 192})
    assert result.steps > larger.steps  # a smaller patch: faster steps, more of them in the budget

    result = plan(explicit={"batch_size": 3})
    assert result.batch_size == 3 and result.reasons["batch_size"] == "set in params"

    result = plan(explicit={"steps": 777})
    assert result.steps == 777 and result.reasons["steps"].startswith("set in params")
    assert 1 <= result.val_interval <= 777

    result = plan(explicit={"val_interval": 50})
    assert result.val_interval == 50 and result.steps % 50 == 0 and result.expected_minutes <= 15

    result = plan(explicit={"patch_size": 128, "batch_size": 4, "steps": 100_000, "val_interval": 7})
    assert (result.patch_size, result.batch_size, result.steps, result.val_interval) == (128, 4, 100_000, 7)
    assert "over the 15 min budget" in result.reasons["steps"]


def test_plan_bigger_gpu_gives_bigger_batch_and_patch():
    fp = made_up(sizes=((2048, 2048),) * 200, diameter=40)
    gpu_step = lambda patch, batch: 0.002 * batch * (patch / 256) ** 2 + 0.01
    small, large = (
        plan(fp, device=DeviceBudget("cuda", 8, memory * GIB, "gpu"), step=gpu_step, validation=2.0)
        for memory in (2, 80)
    )
    assert large.patch_size > small.patch_size and large.batch_size > small.batch_size
    assert small.batch_size >= 2
    assert estimate_training_bytes(small.patch_size, 2, 4, 32) <= 0.5 * 2 * GIB
    assert "fits 50% of the GPU memory" in small.reasons["patch_size"]


def test_plan_batch_is_capped_at_five_percent_of_the_data():
    gpu = DeviceBudget("cuda", 8, 80 * GIB, "gpu")
    result = plan(made_up(sizes=((256, 256),) * 20), device=gpu, step=lambda patch, batch: 0.05, validation=1.0)
    assert result.batch_size == 2  # 5% of 20 images of one patch each is 1 patch: at least 2
    assert "5%" in result.reasons["batch_size"]


def test_plan_is_deterministic_and_serialisable():
    first, second = plan(), plan()
    assert first == second
    params = first.as_params()
    assert params["patch_size"] == first.patch_size and params["steps"] == first.steps
    assert all(isinstance(value, (int, float, str)) for value in params.values())
    assert "patch" in first.describe() and first.describe().count("\n") == 5
    json.dumps(dataclasses.asdict(first))


# --------------------------------------------------------------------------- validation share


def test_plan_scores_a_share_of_a_slow_validation_split_to_keep_ten_validations():
    # 46 s for the whole split (DSB 10%: 100 images) in 15 min: whole, only 3 validations fit 20%.
    whole = plan(validation=46.0, min_val_share=1.0)
    assert whole.val_share == 1.0 and whole.steps // whole.val_interval == 3  # 180 s // 46 s
    shared = plan(validation=46.0, min_val_share=0.1)
    assert shared.val_share == pytest.approx(0.2 * 900 / (10 * 46.0))
    assert shared.steps // shared.val_interval == 10
    # a share planned for exactly 10 validations must not round down to 9 (seen at 14 min)
    for validation in (40.01, 46.2, 56.13):
        tight = plan(budget=14.0, validation=validation, min_val_share=0.1)
        assert tight.steps // tight.val_interval == 10
    assert 10 * shared.val_share * 46.0 <= 0.2 * 900 + 1e-9
    assert "seeded subset" in shared.reasons["val_share"] and "of the validation pixels" in shared.describe()
    assert shared.as_params()["val_share"] == round(shared.val_share, 4)


def test_plan_validation_share_keeps_its_floor_an_explicit_value_and_the_whole_of_a_fast_split():
    assert plan(validation=46.0, min_val_share=0.6).val_share == 0.6
    assert plan(validation=46.0, min_val_share=0.1, val_share=0.5).val_share == 0.5
    assert plan(validation=12.0, min_val_share=0.1).val_share == 1.0  # 10 x 12 s fit 20% of 15 min
    # steps set in params: the user chose the validations; they score everything
    assert plan(validation=46.0, min_val_share=0.1, explicit={"steps": 500}).val_share == 1.0


def test_a_plan_read_back_from_its_metrics_params_is_the_same_plan():
    """--plan-of reads a metrics file's flat ``plan``; the round trip keeps every value
    (the share as rounded for MLflow, 4 digits)."""
    plan = SegmenterPlan(patch_size=144, batch_size=8, steps=4725, val_interval=189, expected_minutes=49.78,
                         val_share=0.3438, reasons={"steps": "50 min budget", "patch_size": "set in params"})
    assert SegmenterPlan.from_params(json.loads(json.dumps(plan.as_params()))) == plan
