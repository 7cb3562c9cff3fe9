"""The evaluate command on a test split of mixed, non-square sizes with regions of interest:
every image scored at its own size inside its region, and an image too large for memory
named before any is segmented."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from ganseg.config.prepare import SyntheticSourceConfig
from ganseg.data.pairs import MANIFEST, save_image, save_mask, save_roi
from ganseg.data.synthetic import generate_pair
from pipelines.__main__ import app
from tests.evaluation.conftest import _store_template, fresh_store  # noqa: F401 - fixtures
from tests.evaluation.fakes import tiny_project
from tests.helpers import write_params

runner = CliRunner()

SIZES = [(32, 32), (24, 40), (50, 18), (40, 56), (32, 32)]
BLOCKS = {
    "common": {"image_size": 32},
    "evaluate": {"bootstrap": {"resamples": 300}, "overlays": {"count": 2}, "synthetic_quality": {"enabled": False},
                 "registry": {"enabled": False}},
}


def write_mixed_split(folder: Path, sizes: list[tuple[int, int]]) -> None:
    """Pairs of the given (height, width), each with a region of interest: its left 3/4."""
    for sub in ("images", "masks", "roi"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    rows = []
    for index, (height, width) in enumerate(sizes):
        pair = generate_pair(SyntheticSourceConfig(), max(height, width), 7, index)
        image, mask = pair.image[:height, :width], pair.mask[:height, :width].astype(np.uint8)
        inside = np.zeros((height, width), bool)
        inside[:, : width * 3 // 4] = True
        pair_id = f"m{index:02d}"
        save_image(folder / "images" / f"{pair_id}.png", image)
        save_mask(folder / "masks" / f"{pair_id}.png", mask, 1)
        save_roi(folder / "roi" / f"{pair_id}.png", inside)
        rows.append({"pair_id": pair_id, "image": f"images/{pair_id}.png", "mask": f"masks/{pair_id}.png",
                     "roi": f"roi/{pair_id}.png", "content_hash": hashlib.sha256(image.tobytes()).hexdigest()[:16]})
    pd.DataFrame(rows).to_csv(folder / MANIFEST, index=False)


def _evaluate(tmp_path: Path):
    return runner.invoke(app, ["evaluate", "--params", str(write_params(tmp_path / "params.yaml", BLOCKS))])


def _mixed_project(tmp_path: Path) -> Path:
    tiny_project(tmp_path, synthetic=False)
    test = tmp_path / "data" / "prepared" / "test"
    for old in test.rglob("*.png"):
        old.unlink()
    write_mixed_split(test, SIZES)
    return test


def _set_mask(path: Path, rows: slice, cols: slice, value: int) -> None:
    mask = np.asarray(Image.open(path)).copy()
    mask[rows, cols] = value
    save_mask(path, (mask > 127).astype(np.uint8), 1)


def test_mixed_sizes_are_scored_inside_their_region_of_interest(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    test = _mixed_project(tmp_path)
    result = _evaluate(tmp_path)
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "metrics" / "evaluate.json").read_text())
    assert metrics["test_images"] == len(SIZES)
    reports = tmp_path / "reports" / "evaluate"
    first = pd.read_csv(reports / "per_image.csv")
    assert len(first) == 2 * len(SIZES) and first["dice"].between(0, 1).all() and first["hd95"].notna().all()
    for variant in ("real", "synthetic"):
        assert (reports / "overlays" / f"{variant}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # The truth outside each region of interest is not scored: rewriting it changes no number.
    for height, width in SIZES[:3]:
        index = SIZES.index((height, width))
        _set_mask(test / "masks" / f"m{index:02d}.png", slice(None), slice(width * 3 // 4, None), 1)
    assert _evaluate(tmp_path).exit_code == 0
    pd.testing.assert_frame_equal(pd.read_csv(reports / "per_image.csv"), first)

    # ... while the truth inside it is: a new object in image m01 changes its scores only.
    _set_mask(test / "masks" / "m01.png", slice(0, 6), slice(0, 6), 1)
    assert _evaluate(tmp_path).exit_code == 0
    changed = pd.read_csv(reports / "per_image.csv")
    moved = changed["dice"].ne(first["dice"]) | changed["hd95"].ne(first["hd95"])
    assert set(changed.loc[moved, "pair_id"]) == {"m01"}


def test_a_test_image_too_large_for_memory_is_named_before_any_is_segmented(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _mixed_project(tmp_path)
    from ganseg.evaluation import inference
    from ganseg.inference import sliding_window

    class Memory:  # half of it fits the 50x32 px maps (float32 map, weight sum, image) but not 40x56
        available = 2 * 4 * 50 * 32 * 3

    monkeypatch.setattr(sliding_window.psutil, "virtual_memory", lambda: Memory)
    monkeypatch.setattr(inference, "segment_each", lambda *a, **k: pytest.fail("segmented before the check"))
    result = _evaluate(tmp_path)
    assert result.exit_code == 1
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("warning:")]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    assert lines[0].startswith("error: data/prepared/test/images/m03.png: a 40x56 px image needs")
    assert not (tmp_path / "metrics" / "evaluate.json").exists()
