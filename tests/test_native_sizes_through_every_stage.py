"""A folder of mixed, non-square images runs through every stage at its own sizes (issue 16):
prepare keeps the sizes and a region of interest, augment and train cut patches (padding the
images smaller than the patch), finetune continues at the model's patch, evaluate and predict
segment every image whole at its own size."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from pipelines.__main__ import app
from tests.helpers import write_pair, write_params

runner = CliRunner()
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("single_thread")]

SIZES = [(40, 56), (64, 48), (28, 90), (72, 72), (50, 34), (96, 60)]  # some under the 32 px patch
PATCH = 32


def _folder(root: Path) -> tuple[Path, Path, Path]:
    images, masks, rois = root / "images", root / "masks", root / "roi"
    rois.mkdir(parents=True)
    for index in range(18):
        size = SIZES[index % len(SIZES)]
        write_pair(images, masks, f"scan_{index:02d}", size=size, seed=index)
        inside = np.full(size, 255, np.uint8)
        inside[:2] = 0  # an invalid top border, as some microscopes write
        Image.fromarray(inside).save(rois / f"scan_{index:02d}.png")
    return images, masks, rois


def _run(*argv: str) -> str:
    result = runner.invoke(app, list(argv))
    assert result.exit_code == 0, f"{argv[0]}: {result.output}"
    return result.stderr


def test_mixed_non_square_folder_runs_through_every_stage(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    images, masks, rois = _folder(tmp_path / "source")
    write_params(tmp_path / "params.yaml", {
        "prepare": {"source": "folder", "split": {"train": 0.5, "val": 0.25, "test": 0.25},
                    "folder": {"images_dir": str(images), "masks_dir": str(masks), "roi_dir": str(rois)}},
        "augment": {"patch_size": PATCH, "steps": 4, "batch_size": 4, "num_samples": 6, "log_interval": 2,
                    "sample_interval": 2, "checkpoint_interval": 2, "grid_samples": 4,
                    "pix2pix": {"base_channels": 8}, "discriminator": {"base_channels": 8, "layers": 2},
                    "consistency": {"steps": 2, "base_channels": 4, "batch_size": 4},
                    "filter": {"min_relative_dice": 0.0},  # a 2-step reference segmenter's scores say nothing
                    "quality": {"max_images": 6, "kid_subset_size": 3, "kid_subsets": 3}},
        "train": {"patch_size": PATCH, "batch_size": 4, "steps": 6, "val_interval": 3,
                  "model": {"depth": 2, "base_width": 4}, "overlay_images": 2},
        "finetune": {"epochs": 1, "steps": None, "val_interval": None, "batch_size": 4, "discriminator": {"base_channels": 8, "layers": 2},
                     "overlay_images": 2},
        "evaluate": {"bootstrap": {"resamples": 100}, "overlays": {"count": 1},
                     "synthetic_quality": {"max_images": 6, "kid_subset_size": 3, "kid_subsets": 3,
                                           "inception_score": False},
                     "registry": {"enabled": False}},
    })
    _run("prepare", "--params", "params.yaml")
    test = pd.read_csv("data/prepared/test/manifest.csv", dtype={"pair_id": str})
    for row in test.itertuples():
        assert Image.open(Path("data/prepared/test") / row.image).size[::-1] == SIZES[int(row.pair_id[-2:]) % 6]
    assert (Path("data/prepared/test") / test.loc[0, "roi"]).is_file()

    said = _run("augment", "--params", "params.yaml")
    assert "smaller than the 32 px patch" in said
    assert {Image.open(p).size for p in Path("data/synthetic/images").iterdir()} == {(PATCH, PATCH)}
    said = _run("train", "--params", "params.yaml", "--variant", "real")
    assert "smaller than the 32 px patch; their patches are padded" in said
    _run("train", "--params", "params.yaml", "--variant", "synthetic", "--synthetic", "data/synthetic")
    _run("finetune", "--params", "params.yaml", "--start", "models/unet_synthetic.pt")
    _run("evaluate", "--params", "params.yaml")

    per_image = pd.read_csv("reports/evaluate/per_image.csv")
    variants = set(per_image["variant"])  # a fine-tuned model that kept its start weights is shown once
    assert {"real", "synthetic"} <= variants <= {"real", "synthetic", "adversarial"}
    assert len(per_image) == len(variants) * len(test) and per_image["dice"].between(0, 1).all()
    assert json.loads(Path("metrics/evaluate.json").read_text())

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for name, size in {"wide.png": (30, 100), "tall.png": (81, 33)}.items():
        Image.fromarray(np.random.default_rng(0).integers(0, 255, size, dtype=np.uint8)).save(inbox / name)
    _run("predict", "--params", "params.yaml", "--model", "models/unet_real.pt", "--input", str(inbox),
         "--output", "predictions")
    assert Image.open("predictions/masks/wide.png").size == (100, 30)
    assert Image.open("predictions/masks/tall.png").size == (33, 81)
