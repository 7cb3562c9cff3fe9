"""The prepare command as a user runs it: outputs on success, one line and nothing on failure."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from ganseg.errors import DataError
from pipelines.__main__ import app
from tests.helpers import folder_dataset, write_pair, write_params

runner = CliRunner()


def _run(tmp_path: Path, params: Path):
    args = ["prepare", "--params", str(params), "--out", str(tmp_path / "out"),
            "--reports", str(tmp_path / "reports"), "--metrics", str(tmp_path / "metrics.json")]
    return runner.invoke(app, args)


def _error_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.output
    return lines[0]


def test_help_lists_the_stages():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0 and "prepare" in result.output


def test_synthetic_source_writes_splits_reports_and_metrics(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    params = write_params(tmp_path / "params.yaml", {"common": {"image_size": 32}, "prepare": {"synthetic": {"num_images": 20}}})
    result = _run(tmp_path, params)
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["pairs"] == 20 and sum(s["pairs"] for s in metrics["splits"].values()) == 20
    manifest = pd.read_csv(tmp_path / "out" / "train" / "manifest.csv")
    assert len(manifest) == metrics["splits"]["train"]["pairs"]
    image = Image.open(tmp_path / "out" / "train" / manifest.loc[0, "image"])
    mask = np.asarray(Image.open(tmp_path / "out" / "train" / manifest.loc[0, "mask"]))
    assert image.size == (32, 32) and image.mode == "L" and set(np.unique(mask)) <= {0, 255}
    resolved = json.loads((tmp_path / "out" / "config.json").read_text())
    assert resolved["prepare"]["synthetic"]["num_images"] == 20 and resolved["common"]["seed"] == 42
    assert (tmp_path / "reports" / "validation.json").exists()
    assert (tmp_path / "reports" / "data_docs" / "index.html").exists()
    assert not list(tmp_path.glob(".out.*")) and not list(tmp_path.glob(".reports.*"))


def test_folder_source_rgb_unlabeled_and_pad_crop(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    images, masks = folder_dataset(tmp_path / "data", count=10)
    (tmp_path / "unl").mkdir()
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(tmp_path / "unl" / "u1.jpg")
    params = write_params(tmp_path / "params.yaml", {
        "common": {"image_size": 32, "channels": 3},
        "prepare": {"source": "folder", "resize_mode": "pad_crop",
                    "folder": {"images_dir": str(images), "masks_dir": str(masks), "unlabeled_dir": str(tmp_path / "unl")}},
    })
    result = _run(tmp_path, params)
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    first = next((out / "train" / "images").iterdir())
    assert Image.open(first).mode == "RGB" and Image.open(first).size == (32, 32)
    assert Image.open(out / "unlabeled" / "images" / "u1.png").size == (32, 32)


def test_unlabeled_folder_of_all_images_loses_the_test_images(tmp_path, monkeypatch):
    """Pointing unlabeled_dir at the whole image folder (the few-label recipe) must not let
    semi-supervised fine-tuning see the test images it is then scored on."""
    monkeypatch.chdir(tmp_path)
    images, masks = folder_dataset(tmp_path / "data", count=12)
    params = write_params(tmp_path / "params.yaml", {
        "common": {"image_size": 32},
        "prepare": {"source": "folder",
                    "folder": {"images_dir": str(images), "masks_dir": str(masks), "unlabeled_dir": str(images)}},
    })
    result = _run(tmp_path, params)
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    test = pd.read_csv(out / "test" / "manifest.csv", dtype={"pair_id": str})
    unlabeled = pd.read_csv(out / "unlabeled" / "manifest.csv", dtype={"pair_id": str})
    assert len(test) >= 1 and len(unlabeled) == 12 - len(test)
    assert not set(test["content_hash"]) & set(unlabeled["content_hash"])
    assert not set(test["pair_id"]) & set(unlabeled["pair_id"])
    assert f"{len(test)} of 12 unlabeled images are test images; left out" in result.stderr


def _ids(folder: Path) -> set[str]:
    return set(pd.read_csv(folder / "manifest.csv", dtype={"pair_id": str})["pair_id"])


def test_split_unlabeled_share_is_written_without_masks_next_to_the_folder_images(tmp_path, monkeypatch):
    """prepare.split.unlabeled: a share of the labelled pairs goes to unlabeled/ as images only,
    with prepare.folder.unlabeled_dir's images; the test split is the one drawn without it, the
    fingerprint is train + val only, and finetune's semi-supervised mode finds the images."""
    from ganseg.config import load_params
    from ganseg.config.finetune import UnlabeledConfig
    from ganseg.data.pairs import load_split
    from pipelines.finetune import unlabeled_pool

    monkeypatch.chdir(tmp_path)
    (tmp_path / "unl").mkdir()
    for name in ("u1", "u2", "u3"):
        Image.fromarray(np.full((32, 32), 40, np.uint8)).save(tmp_path / "unl" / f"{name}.png")
    split = {"train": 0.3, "val": 0.2, "test": 0.25, "unlabeled": 0.25}
    blocks = {"common": {"image_size": 32},
              "prepare": {"synthetic": {"num_images": 40}, "split": split,
                          "folder": {"unlabeled_dir": str(tmp_path / "unl")}}}
    result = _run(tmp_path, write_params(tmp_path / "params.yaml", blocks))
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    share = metrics["splits"]["unlabeled"]["pairs"]
    assert share == 10 and metrics["unlabeled"] == share + 3
    assert metrics["unlabeled_from"] == {"split": share, "folder": 3}
    assert f"unlabeled {share + 3} ({share} labelled pairs without their masks, 3 from " in result.stdout
    assert sum(s["pairs"] for s in metrics["splits"].values()) == 40

    # Images only, and no id in two places.
    assert not (out / "unlabeled" / "masks").exists()
    unlabeled = _ids(out / "unlabeled")
    assert len(list((out / "unlabeled" / "images").iterdir())) == len(unlabeled) == share + 3
    parts = [_ids(out / name) for name in ("train", "val", "test")] + [unlabeled]
    assert sum(len(ids) for ids in parts) == len(set().union(*parts)) == 40 + 3
    assert sum(len(ids) for ids in parts[:2]) == json.loads((out / "fingerprint.json").read_text())["num_images"]

    # The same test split as without the share, for the same test_seed.
    without = {"train": 0.45, "val": 0.3, "test": 0.25}
    blocks["prepare"] = {"synthetic": {"num_images": 40}, "split": without}
    (tmp_path / "plain").mkdir()
    result = runner.invoke(app, ["prepare", "--params", str(write_params(tmp_path / "plain.yaml", blocks)),
                                 "--out", "plain/out", "--reports", "plain/reports", "--metrics", "plain/m.json"])
    assert result.exit_code == 0, result.output
    assert _ids(tmp_path / "plain" / "out" / "test") == _ids(out / "test")
    assert not (tmp_path / "plain" / "out" / "unlabeled").exists()

    # finetune.unlabeled (source auto) reads them; labelled_fraction 1 hides nothing.
    common = load_params(tmp_path / "params.yaml").common
    train = load_split(out / "train", common.channels, common.num_classes)
    pool, source = unlabeled_pool(UnlabeledConfig(enabled=True), out / "unlabeled", train, None, common)
    assert len(pool) == share + 3 and source == str(out / "unlabeled")
    assert pool[0].dtype == torch.uint8 and tuple(pool[0].shape) == (1, 32, 32)


def test_whole_image_folder_as_unlabeled_dir_with_a_split_share_writes_each_image_once(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    images, masks = folder_dataset(tmp_path / "data", count=12)
    params = write_params(tmp_path / "params.yaml", {
        "common": {"image_size": 32},
        "prepare": {"source": "folder", "split": {"train": 0.25, "val": 0.25, "test": 0.25, "unlabeled": 0.25},
                    "folder": {"images_dir": str(images), "masks_dir": str(masks), "unlabeled_dir": str(images)}},
    })
    result = _run(tmp_path, params)
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    test, unlabeled = _ids(out / "test"), _ids(out / "unlabeled")
    share = metrics["splits"]["unlabeled"]["pairs"]
    # The split's share once, plus the folder's train and val images; never a test image.
    assert share == 3 and metrics["unlabeled_from"] == {"split": share, "folder": 12 - len(test) - share}
    assert len(unlabeled) == 12 - len(test) and not unlabeled & test


def test_an_unlabeled_image_named_as_a_split_share_pair_but_other_pixels_is_refused():
    from pipelines.prepare import merge_unlabeled

    image = np.zeros((4, 4, 1), np.uint8)
    merged, counts = merge_unlabeled([("a", image, "h1")], [("a", image, "h1"), ("b", image, "h2")])
    assert [item[0] for item in merged] == ["a", "b"] and counts == {"split": 1, "folder": 1}
    with pytest.raises(DataError, match="unlabeled_dir: a has the id of a pair in the split's unlabeled share"):
        merge_unlabeled([("a", image, "h1")], [("a", image, "h9")])


def test_dsb_folder_prepares_all_pairs(tmp_path, monkeypatch, dsb_root):
    monkeypatch.chdir(tmp_path)
    params = write_params(tmp_path / "params.yaml", {
        "common": {"image_size": 64},
        "prepare": {"source": "folder", "folder": {"images_dir": str(dsb_root / "images"), "masks_dir": str(dsb_root / "masks")}},
    })
    result = _run(tmp_path, params)
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["pairs"] == 664
    assert 0.05 < metrics["splits"]["train"]["foreground_mean"] < 0.3
    assert abs(metrics["splits"]["test"]["pairs"] - 0.15 * 664) <= 2


def _bad_folder(tmp_path: Path, problem: str) -> tuple[dict, str]:
    images, masks = folder_dataset(tmp_path / "data", count=6)
    folder = {"images_dir": str(images), "masks_dir": str(masks)}
    if problem == "corrupt image":
        (images / "cell_02.png").write_bytes(b"\x89PNG garbage")
        return folder, "cell_02.png"
    if problem == "image without mask":
        (masks / "cell_03.png").unlink()
        return folder, "cell_03.png"
    if problem == "mask without image":
        write_pair(tmp_path / "spare", masks, "orphan", seed=9)
        return folder, "orphan.png"
    if problem == "size mismatch":
        Image.fromarray(np.zeros((10, 10), np.uint8)).save(masks / "cell_01.png")
        return folder, "cell_01.png"
    if problem == "non-binary mask":
        Image.fromarray(np.arange(40 * 48, dtype=np.uint32).reshape(40, 48).astype(np.uint8)).save(masks / "cell_04.png")
        return {**folder, "binarize": False}, "cell_04.png"
    if problem == "empty folder":
        for path in images.iterdir():
            path.unlink()
        return folder, str(images)
    raise AssertionError(problem)


@pytest.mark.parametrize(
    "problem",
    ["corrupt image", "image without mask", "mask without image", "size mismatch", "non-binary mask", "empty folder"],
)
def test_bad_input_one_line_naming_the_file_and_earlier_outputs_intact(tmp_path, monkeypatch, problem):
    monkeypatch.chdir(tmp_path)
    # An earlier good run's outputs must survive the failing run untouched.
    good = write_params(tmp_path / "good.yaml", {"common": {"image_size": 32}, "prepare": {"synthetic": {"num_images": 10}}})
    assert _run(tmp_path, good).exit_code == 0
    before = sorted(p.relative_to(tmp_path) for p in (tmp_path / "out").rglob("*"))
    metrics_before = (tmp_path / "metrics.json").read_text()

    folder, culprit = _bad_folder(tmp_path, problem)
    params = write_params(tmp_path / "params.yaml", {"common": {"image_size": 32}, "prepare": {"source": "folder", "folder": folder}})
    result = _run(tmp_path, params)
    assert result.exit_code != 0
    assert culprit in _error_line(result)
    assert sorted(p.relative_to(tmp_path) for p in (tmp_path / "out").rglob("*")) == before
    assert (tmp_path / "metrics.json").read_text() == metrics_before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize(
    ("blocks", "key"),
    [
        ({"prepare": {"sorce": "folder"}}, "prepare.sorce"),
        ({"common": {"seed": "abc"}}, "common.seed"),
        ({"prepare": {"split": {"train": 0.8, "val": 0.3, "test": 0.1}}}, "prepare.split"),
    ],
)
def test_bad_params_stop_before_any_work(tmp_path, monkeypatch, blocks, key):
    monkeypatch.chdir(tmp_path)
    result = _run(tmp_path, write_params(tmp_path / "params.yaml", blocks))
    assert result.exit_code != 0
    line = _error_line(result)
    assert key in line and "params.yaml" in line
    assert not (tmp_path / "out").exists() and not (tmp_path / "metrics.json").exists()


def test_native_mode_keeps_each_size_scales_by_one_factor_and_writes_the_roi(tmp_path, monkeypatch):
    """Mixed, non-square sizes stay as they are (times prepare.scale, aspect kept); a region of
    interest travels with its pair and becomes IGNORE in the decoded mask."""
    from ganseg.data.pairs import IGNORE, load_pairs

    monkeypatch.chdir(tmp_path)
    images, masks = tmp_path / "data" / "images", tmp_path / "data" / "masks"
    sizes = {f"cell_{i:02d}": size for i, size in enumerate([(40, 48), (64, 30), (50, 90), (36, 36)] * 3)}
    rois = tmp_path / "data" / "roi"
    rois.mkdir(parents=True)
    for index, (stem, size) in enumerate(sizes.items()):
        write_pair(images, masks, stem, size=size, seed=index)
        inside = np.zeros(size, np.uint8)
        inside[:, : size[1] // 2] = 255  # left half inside
        Image.fromarray(inside).save(rois / f"{stem}.png")
    params = write_params(tmp_path / "params.yaml", {"prepare": {
        "source": "folder", "scale": 0.5,
        "folder": {"images_dir": str(images), "masks_dir": str(masks), "roi_dir": str(rois)}}})
    result = _run(tmp_path, params)
    assert result.exit_code == 0, result.output
    for split in ("train", "val", "test"):
        loaded = load_pairs(tmp_path / "out" / split, channels=1, num_classes=1)
        for pair_id, image, mask in zip(loaded.ids, loaded.images, loaded.masks):
            height, width = sizes[pair_id]
            assert tuple(image.shape[-2:]) == (round(height * 0.5), round(width * 0.5))
            assert bool((mask[:, : mask.shape[1] // 2] != IGNORE).all())
            assert bool((mask[:, -(mask.shape[1] // 2) + 1 :] == IGNORE).all())
    assert (tmp_path / "out" / "fingerprint.json").is_file()


def test_a_region_of_interest_of_the_wrong_size_is_one_line_naming_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    images, masks = folder_dataset(tmp_path / "data", count=6)
    rois = tmp_path / "data" / "roi"
    rois.mkdir()
    for path in sorted(masks.iterdir()):
        Image.fromarray(np.full((40, 48), 255, np.uint8)).save(rois / path.name)
    Image.fromarray(np.full((20, 20), 255, np.uint8)).save(rois / "cell_03.png")
    params = write_params(tmp_path / "params.yaml", {"prepare": {
        "source": "folder", "folder": {"images_dir": str(images), "masks_dir": str(masks), "roi_dir": str(rois)}}})
    result = _run(tmp_path, params)
    assert result.exit_code == 1
    line = _error_line(result)
    assert "cell_03.png: region of interest is 20x20 but its image is 40x48" in line
    assert not (tmp_path / "out").exists() and not (tmp_path / "metrics.json").exists()
