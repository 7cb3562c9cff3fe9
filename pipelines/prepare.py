"""Stage ``prepare``: ingest pairs, validate them, split them, write them at their working size.

Images keep their own size by default (``prepare.resize_mode: native``, optionally every image
scaled by ``prepare.scale``, aspect ratio kept); ``resize`` and ``pad_crop`` bring every image to
``common.image_size`` square instead. An optional region of interest per pair
(``prepare.folder.roi_dir``, named as the masks) is written beside the pair and travels with it.

Reads the ``common`` and ``prepare`` blocks. Writes, all or nothing:
- ``<out>/{train,val,test}/`` pair folders (PNG images, masks, regions of interest +
  ``manifest.csv``), an
  optional ``<out>/unlabeled/`` folder (images only: the split's ``prepare.split.unlabeled``
  share of the labelled pairs, without their masks, and ``prepare.folder.unlabeled_dir``'s
  images), and ``<out>/config.json`` (the resolved config);
- ``<reports>/validation.json`` and ``<reports>/data_docs/`` (GX Data Docs HTML);
- ``<metrics>``: counts and foreground statistics per split.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
import torch
import typer

from ganseg import io
from ganseg.config.common import CommonConfig
from ganseg.config.prepare import PrepareConfig
from ganseg.data import pairs
from ganseg.data.folder import PairPaths, list_images, pair_by_stem
from ganseg.data.images import read_image
from ganseg.data.masks import read_mask
from ganseg.data.resize import fit_pair, fit_roi, fit_unlabeled
from ganseg.data.split import SPLITS, UNLABELED, assign_splits
from ganseg.data.synthetic import generate_pair
from ganseg.data.validation import validate_manifest
from ganseg.errors import DataError, GansegError
from ganseg.planning import fingerprint
from pipelines.stage import DebugOption, ParamsOption, run_stage

app = typer.Typer(help="Ingest, validate (great-expectations) and split the image/mask pairs.")

DECODE_THREADS = 4  # PIL releases the GIL while decoding; more threads than cores hide I/O


@app.callback(invoke_without_command=True)
def prepare(
    params: ParamsOption = Path("params.yaml"),
    out: Annotated[Path, typer.Option(help="Folder for the split pair folders.")] = Path("data/prepared"),
    reports: Annotated[Path, typer.Option(help="Folder for the validation report.")] = Path("reports/prepare"),
    metrics: Annotated[Path, typer.Option(help="JSON file of counts and stats.")] = Path("metrics/prepare.json"),
    debug: DebugOption = False,
) -> None:
    """Ingest, validate and split the pairs of ``prepare.source``."""
    with run_stage("prepare", params, debug) as ctx:
        common, cfg = ctx.params.common, ctx.params.prepare
        records = synthetic_records(common, cfg) if cfg.source == "synthetic" else folder_records(common, cfg)
        manifest = pd.DataFrame([r["row"] for r in records])
        arrays = {r["row"]["pair_id"]: (r["image"], r["mask"], r.get("roi")) for r in records if r["image"] is not None}

        test_ids = read_test_list(cfg.split.test_list) if cfg.split.test_list else None
        manifest["split"] = assign_splits(
            manifest,
            {"train": cfg.split.train, "val": cfg.split.val, "test": cfg.split.test, UNLABELED: cfg.split.unlabeled},
            seed=common.seed,
            strata=cfg.split.strata,
            test_ids=test_ids,
            test_seed=cfg.split.test_seed,
        )
        manifest["splits_sharing_content"] = manifest.groupby("content_hash")["split"].transform("nunique")

        with tempfile.TemporaryDirectory(prefix="ganseg-docs-") as docs_tmp:
            report = validate_manifest(manifest, cfg.validation, common.num_classes, Path(docs_tmp))
            if not report.success:
                saved = Path(tempfile.mkstemp(prefix="ganseg-validation-", suffix=".json")[1])
                saved.write_text(json.dumps(report.result, indent=2))
                first = report.critical[0]
                others = len(report.critical) - 1
                more = f"; {others} more failed expectation(s)" if others else ""
                raise DataError(f"validation failed: {first.line()}{more} (full report: {saved})")
            for finding in report.warnings:
                print(f"warning: {finding.line()}", file=sys.stderr)

            from_folder = unlabeled_images(common, cfg) if cfg.folder.unlabeled_dir else []
            from_folder = without_test_images(from_folder, manifest)
            unlabeled, counts = merge_unlabeled(split_unlabeled(manifest, arrays), from_folder)
            summary = summarise(manifest, counts, len(report.warnings), cfg.source)
            with io.staged_dir(out) as staged:
                write_splits(staged, manifest, arrays, common.num_classes)
                write_fingerprint(staged / pairs.FINGERPRINT, manifest, arrays, common.num_classes)
                if unlabeled:
                    write_unlabeled(staged / "unlabeled", unlabeled)
                ctx.save_resolved_config(staged)
            with io.staged_dir(reports) as staged_reports:
                io.write_json(staged_reports / "validation.json", report.result)
                shutil.copytree(docs_tmp, staged_reports / "data_docs", dirs_exist_ok=True)
        io.write_json(metrics, summary)

        ctx.tracker.log_metrics(flat_metrics(summary))
        ctx.tracker.log_artifact(reports / "validation.json", "validation")
        ctx.tracker.log_artifact(out / "train" / pairs.MANIFEST, "manifests/train")
        split_counts = ", ".join(f"{name} {summary['splits'][name]['pairs']}" for name in SPLITS)
        print(f"prepare: {summary['pairs']} pairs ({split_counts}); unlabeled {len(unlabeled)} "
              f"({counts['split']} labelled pairs without their masks, {counts['folder']} from "
              f"prepare.folder.unlabeled_dir); -> {out}")


# -- sources ---------------------------------------------------------------------------------
def synthetic_records(common: CommonConfig, cfg: PrepareConfig) -> list[dict]:
    records = []
    for index in range(cfg.synthetic.num_images):
        data_seed = common.seed if cfg.synthetic.seed is None else cfg.synthetic.seed
        pair = generate_pair(cfg.synthetic, common.image_size, data_seed, index)
        image = pair.image[:, :, None]
        if common.channels == 3:
            image = np.repeat(image, 3, axis=2)
        mask = pair.mask.astype(np.uint8)
        row = _row(pair.pair_id, f"synthetic:{index}", f"synthetic:{index}", image, mask)
        row.update(source_mode="L", source_channels=1)
        records.append({"row": row, "image": image, "mask": mask})
    return records


def folder_records(common: CommonConfig, cfg: PrepareConfig) -> list[dict]:
    found = pair_by_stem(cfg.folder.images_dir, cfg.folder.masks_dir)
    rois = list_images(cfg.folder.roi_dir, "roi") if cfg.folder.roi_dir else None
    with ThreadPoolExecutor(DECODE_THREADS) as pool:
        return list(pool.map(lambda p: _read_pair(p, common, cfg, rois), found))


def _read_roi(pair_id: str, rois: dict[str, Path], shape: tuple[int, int] | None) -> tuple[np.ndarray | None, str | None]:
    """(region of interest as bool (H, W), or None; the error line, or None)."""
    path = rois.get(pair_id)
    if path is None:
        return None, f"{pair_id}: no region of interest in prepare.folder.roi_dir (every pair needs one there)"
    try:
        inside = pairs.read_roi(path)
    except DataError as exc:
        return None, str(exc)
    if shape is not None and inside.shape != shape:
        return None, (f"{path}: region of interest is {inside.shape[0]}x{inside.shape[1]} but its image is "
                      f"{shape[0]}x{shape[1]}")
    return inside, None


def _read_pair(paths: PairPaths, common: CommonConfig, cfg: PrepareConfig, rois: dict[str, Path] | None) -> dict:
    image = mask = roi = None
    facts: dict = {}
    errors = []
    if paths.image is not None:
        try:
            image, facts = read_image(paths.image, common.channels)
        except DataError as exc:
            errors.append(str(exc))
    if paths.mask is not None:
        try:
            mask = read_mask(paths.mask, cfg.folder, common.num_classes)
        except DataError as exc:
            errors.append(str(exc))
    row = _row(
        paths.pair_id,
        str(paths.image) if paths.image else None,
        str(paths.mask) if paths.mask else None,
        image,
        mask,
    )
    if rois is not None:
        roi, error = _read_roi(paths.pair_id, rois, image.shape[:2] if image is not None else None)
        if error:
            errors.append(error)
    row.update(source_mode=facts.get("mode"), source_channels=facts.get("source_channels"))
    row["read_error"] = "; ".join(errors) or None
    row["roi_fraction"] = float(roi.mean()) if roi is not None else np.nan
    fitted_image = fitted_mask = fitted_roi = None
    if image is not None and mask is not None and image.shape[:2] == mask.shape:
        fitted_image, fitted_mask = fit_pair(image, mask, common.image_size, cfg.resize_mode, cfg.scale)
        if roi is not None:
            fitted_roi = fit_roi(roi, common.image_size, cfg.resize_mode, cfg.scale)
    return {"row": row, "image": fitted_image, "mask": fitted_mask, "roi": fitted_roi}


def _row(pair_id: str, image_path, mask_path, image, mask) -> dict:
    """A manifest row from the decoded source arrays (None where a file is missing)."""
    image_h, image_w = image.shape[:2] if image is not None else (np.nan, np.nan)
    mask_h, mask_w = mask.shape[:2] if mask is not None else (np.nan, np.nan)
    return {
        "pair_id": pair_id,
        "image_path": image_path,
        "mask_path": mask_path,
        "read_error": None,
        "image_height": image_h,
        "image_width": image_w,
        "mask_height": mask_h,
        "mask_width": mask_w,
        "mask_min_label": int(mask.min()) if mask is not None else np.nan,
        "mask_max_label": int(mask.max()) if mask is not None else np.nan,
        "foreground_fraction": float((mask > 0).mean()) if mask is not None else np.nan,
        # Identical pixels = identical content, whatever the file name or format.
        "content_hash": content_hash(image) if image is not None else f"missing:{pair_id}",
    }


def content_hash(image: np.ndarray) -> str:
    """Identical pixels = identical content, whatever the file name or format."""
    return hashlib.sha256(image.tobytes()).hexdigest()[:16]


def without_test_images(unlabeled: list[tuple[str, np.ndarray, str]], manifest: pd.DataFrame) -> list:
    """Unlabeled images minus those with a test image's content: fine-tuning on them would
    let a model see the images it is then scored on (a common case: the unlabeled folder is
    the whole image folder)."""
    test = set(manifest.loc[manifest["split"] == "test", "content_hash"])
    kept = [item for item in unlabeled if item[2] not in test]
    if len(kept) < len(unlabeled):
        print(f"warning: prepare: {len(unlabeled) - len(kept)} of {len(unlabeled)} unlabeled images are test "
              "images; left out of unlabeled/ so that no model sees its test images", file=sys.stderr)
    return kept


def split_unlabeled(manifest: pd.DataFrame, arrays: dict) -> list[tuple[str, np.ndarray, str]]:
    """(id, image at its working size, content hash) per pair of the split's unlabeled share:
    the mask (and region of interest) is dropped, the image joins the unlabeled folder."""
    rows = manifest[manifest["split"] == UNLABELED].sort_values("pair_id")
    return [(pair_id, arrays[pair_id][0], content) for pair_id, content in zip(rows["pair_id"], rows["content_hash"])]


def merge_unlabeled(from_split: list, from_folder: list) -> tuple[list, dict[str, int]]:
    """One unlabeled set, sorted by id, and how many images each source adds. A folder image
    with the content of a split image is the same image: written once (as the split's)."""
    split_ids, split_content = {item[0] for item in from_split}, {item[2] for item in from_split}
    added = [item for item in from_folder if item[2] not in split_content]
    clash = sorted(item[0] for item in added if item[0] in split_ids)
    if clash:
        raise DataError(f"prepare.folder.unlabeled_dir: {clash[0]} has the id of a pair in the split's unlabeled "
                        f"share but other pixels ({len(clash)} such id(s)); rename it, or set "
                        "prepare.split.unlabeled: 0")
    merged = sorted(from_split + added, key=lambda item: item[0])
    return merged, {"split": len(from_split), "folder": len(added)}


def unlabeled_images(common: CommonConfig, cfg: PrepareConfig) -> list[tuple[str, np.ndarray, str]]:
    """(id, image at its working size, content hash of the source image) per unlabeled image."""
    found = list_images(cfg.folder.unlabeled_dir, "unlabeled")

    def fit(item: tuple[str, Path]) -> tuple[str, np.ndarray, str]:
        image, _ = read_image(item[1], common.channels)
        return item[0], fit_unlabeled(image, common.image_size, cfg.resize_mode, cfg.scale), content_hash(image)

    with ThreadPoolExecutor(DECODE_THREADS) as pool:
        return list(pool.map(fit, sorted(found.items())))


def read_test_list(path: Path) -> set[str]:
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise GansegError(f"{path}: cannot read prepare.split.test_list ({exc.strerror})") from None
    ids = {Path(line.strip()).stem for line in lines if line.strip() and not line.startswith("#")}
    if not ids:
        raise GansegError(f"{path}: prepare.split.test_list lists no ids")
    return ids


# -- outputs ---------------------------------------------------------------------------------
def write_splits(root: Path, manifest: pd.DataFrame, arrays: dict, num_classes: int) -> None:
    for name in SPLITS:
        folder = root / name
        (folder / "images").mkdir(parents=True)
        (folder / "masks").mkdir()
        rows = manifest[manifest["split"] == name].sort_values("pair_id").copy()
        rows["image"] = [f"images/{pid}.png" for pid in rows["pair_id"]]
        rows["mask"] = [f"masks/{pid}.png" for pid in rows["pair_id"]]
        rows["roi"] = [f"roi/{pid}.png" if arrays[pid][2] is not None else "" for pid in rows["pair_id"]]
        final_fg, final_sizes = [], []
        for pair_id in rows["pair_id"]:
            image, mask, roi = arrays[pair_id]
            pairs.save_image(folder / "images" / f"{pair_id}.png", image)
            pairs.save_mask(folder / "masks" / f"{pair_id}.png", mask, num_classes)
            if roi is not None:
                (folder / "roi").mkdir(exist_ok=True)
                pairs.save_roi(folder / "roi" / f"{pair_id}.png", roi)
            final_fg.append(float((mask > 0).mean()))
            final_sizes.append(image.shape[:2])
        rows["foreground_fraction_final"] = final_fg
        rows["height"] = [size[0] for size in final_sizes]
        rows["width"] = [size[1] for size in final_sizes]
        columns = ["pair_id", "image", "mask", "roi", "height", "width", "image_path", "mask_path", "image_height",
                   "image_width", "source_mode", "source_channels", "foreground_fraction",
                   "foreground_fraction_final", "content_hash"]
        rows[columns].to_csv(folder / pairs.MANIFEST, index=False)


def write_fingerprint(path: Path, manifest: pd.DataFrame, arrays: dict, num_classes: int) -> None:
    """The data fingerprint the segmenter's plan is made from (:mod:`ganseg.planning`): of the
    pairs a model learns from (train and val), never the test pairs; pixels outside a region of
    interest count as ignored."""
    images, masks = [], []
    for pair_id in manifest.loc[manifest["split"].isin(["train", "val"]), "pair_id"]:
        image, mask, roi = arrays[pair_id]
        labels = mask if roi is None else np.where(roi, mask, pairs.IGNORE).astype(np.uint8)
        images.append(torch.from_numpy(np.array(image.transpose(2, 0, 1))))
        masks.append(torch.from_numpy(np.array(labels)))
    fingerprint(images, masks, num_classes).write(path)


def write_unlabeled(folder: Path, images: list[tuple[str, np.ndarray, str]]) -> None:
    (folder / "images").mkdir(parents=True)
    for image_id, image, _ in images:
        pairs.save_image(folder / "images" / f"{image_id}.png", image)
    pd.DataFrame(
        {"pair_id": [i for i, _, _ in images], "image": [f"images/{i}.png" for i, _, _ in images],
         "content_hash": [h for _, _, h in images]}
    ).to_csv(folder / pairs.MANIFEST, index=False)


def summarise(manifest: pd.DataFrame, unlabeled: dict[str, int], warnings: int, source: str) -> dict:
    """Counts and foreground statistics per split (the unlabeled share's from its withheld masks);
    ``unlabeled`` = images written to unlabeled/ per source (split share, folder)."""
    splits = {}
    for name in (*SPLITS, UNLABELED):
        rows = manifest[manifest["split"] == name]
        fg = rows["foreground_fraction"]
        splits[name] = {
            "pairs": len(rows),
            "foreground_mean": round(float(fg.mean()), 6) if len(rows) else None,
            "foreground_min": round(float(fg.min()), 6) if len(rows) else None,
            "foreground_max": round(float(fg.max()), 6) if len(rows) else None,
            "empty_masks": int((fg == 0).sum()),
        }
    return {
        "source": source,
        "pairs": len(manifest),
        "unlabeled": sum(unlabeled.values()),
        "unlabeled_from": {"split": unlabeled["split"], "folder": unlabeled["folder"]},
        "validation_warnings": warnings,
        "splits": splits,
    }


def flat_metrics(summary: dict) -> dict[str, float]:
    out = {"prepare/pairs": summary["pairs"], "prepare/unlabeled": summary["unlabeled"],
           **{f"prepare/unlabeled_from_{source}": count for source, count in summary["unlabeled_from"].items()}}
    for name, stats in summary["splits"].items():
        for key, value in stats.items():
            if value is not None:
                out[f"prepare/{name}_{key}"] = value
    return out
