"""benchmarks/quality_bench.py and its baseline, benchmarks/milesial_unet.py: the recipe's parts
against analytic cases, and (slow) the whole benchmark end to end on a handful of DSB pairs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks import milesial_unet, quality_bench
from benchmarks.quality_bench import Scored, first_reaching, to_native


def test_unet_keeps_odd_sizes_and_milesial_widths(single_thread):
    model = milesial_unet.UNet(n_channels=1, n_classes=1).eval()
    with torch.no_grad():
        logits = model(torch.rand(1, 1, 37, 53))  # 37 and 53 are not multiples of 16: Up pads
    assert logits.shape == (1, 1, 37, 53)
    assert model.inc.double_conv[0].out_channels == 64
    assert model.down4.maxpool_conv[1].double_conv[3].out_channels == 1024  # bilinear=False: no factor
    assert isinstance(model.up1.up, torch.nn.ConvTranspose2d)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())


def test_dice_coeff_analytic_and_empty_pair():
    pred = torch.zeros(2, 4, 4)
    target = torch.zeros(2, 4, 4)
    pred[0, :2] = 1  # 8 pixels
    target[0, :1] = 1  # 4 pixels, all inside the prediction: Dice 2*4 / (8 + 4)
    # image 1: empty prediction on an empty mask = 1
    per_image = milesial_unet.dice_coeff(pred, target, reduce_batch_first=False)
    assert per_image.item() == pytest.approx((8 / 12 + 1) / 2, abs=1e-5)
    assert milesial_unet.dice_loss(pred, target).item() == pytest.approx(1 - 8 / 12, abs=1e-5)


def test_preprocess_scales_like_milesial():
    image = Image.fromarray(np.full((5, 7), 200, dtype=np.uint8))
    pixels = milesial_unet.preprocess(image, 0.5, is_mask=False)
    assert pixels.shape == (1, 2, 3)  # int(0.5 * 5), int(0.5 * 7)
    assert pixels.max() == pytest.approx(200 / 255)
    mask = Image.fromarray(np.array([[0, 255], [255, 255]], dtype=np.uint8))
    assert milesial_unet.preprocess(mask, 1.0, is_mask=True).tolist() == [[0, 1], [1, 1]]


def test_first_reaching_and_native_resize():
    curve = [Scored(10, 0.2), Scored(20, 0.7), Scored(30, 0.65), Scored(40, 0.8)]
    assert first_reaching(curve, 0.7) == 20
    assert first_reaching(curve, 0.9) is None
    probs = torch.tensor([[0.9, 0.1], [0.1, 0.9]])
    labels = to_native(probs, (4, 4))
    assert labels.shape == (4, 4) and labels.dtype == torch.uint8
    assert labels[0, 0] == 1 and labels[0, 3] == 0


def test_time_to_bar_over_trained_snapshots_leaves_step_zero_out_and_takes_ganseg_s_earliest_run():
    # The baseline ends (0.12) below its untrained start (0.24): literally it "reached" its final at step 0.
    baseline = [Scored(2, 0.24, extra={"step": 0}), Scored(80, 0.11, extra={"step": 65}),
                Scored(160, 0.58, extra={"step": 130}), Scored(860, 0.12, extra={"step": 689})]
    curves = {"baseline (milesial recipe)": baseline,
              "ganseg (train stage)": [Scored(15, 0.0, extra={"step": 0}), Scored(100, 0.73, extra={"step": 244})],
              "ganseg (train stage, 1.5 min budget)": [Scored(17, 0.0, extra={"step": 0}),
                                                       Scored(43, 0.56, extra={"step": 130})]}
    assert first_reaching(baseline, 0.12) == 2
    assert quality_bench.time_to_bar_trained(curves, 0.12) == {"baseline": 160, "ganseg": 43}
    assert quality_bench.time_to_bar_trained(curves, 0.95) == {"baseline": None, "ganseg": None}


@pytest.mark.slow
def test_smoke_run_writes_both_curves(dsb_root, tmp_path):
    # 10 training pairs, not the 10% split's 4: milesial validates every n_train // 5 steps, so
    # with 4 it never does, and its curve would be step 0 plus a final snapshot that lands just
    # inside or just past the budget (it failed so on 2026-12-03).
    overrides = tmp_path / "split.yaml"
    overrides.write_text("prepare:\n  split: {train: 0.25, val: 0.15, test: 0.6, unlabeled: 0.0}\n")
    result = quality_bench.main(["--smoke", "--short-minutes", "0.75", "--data", str(dsb_root), "--params",
                                 str(overrides), "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "quality_bench.json").read_text())
    assert saved["verdict"] in ("PASS", "FAIL")
    curves = saved["curves"]
    assert len(curves["baseline (milesial recipe)"]) >= 2 and len(curves["ganseg (train stage)"]) >= 1
    short = curves["ganseg (train stage, 0.75 min budget)"]  # a second, shorter planned run
    assert all(p["t"] <= 45 for p in short) and any(p["snapshot"] != "step 0" for p in short)
    assert all(0.0 <= p["dice"] <= 1.0 for curve in curves.values() for p in curve)
    assert all(p["t"] <= 60 for curve in curves.values() for p in curve)
    assert result["test_images"] == saved["test_images"] > 0
    assert not (tmp_path / "work").exists()  # snapshots removed without --keep
