"""Command ``predict``: segment every image of a folder with a trained model, at any size.

    python -m pipelines predict --model models:/ganseg-unet@champion --input DIR --output DIR
    python -m pipelines predict --model models/unet_real.pt --input DIR --output DIR

Reads the ``common`` (device, precision) and ``predict`` blocks. Images larger than the tile
(by default the patch size the model was trained on) are segmented by the sliding window every stage
uses (``ganseg.inference``: overlapping tiles, Gaussian blending), never squashed. Writes,
inside ``--output`` only:

- ``masks/<name>.png``: binary 0/255 (or palette label map when multi-class), input size;
- ``overlays/<name>.png``: the image with the predicted mask drawn on it;
- ``predictions.csv``: input file, output files, size, foreground fraction.

``<name>`` is the input file's stem with anything but letters, digits, ``.``, ``_`` and ``-``
replaced, so no input name can place a file elsewhere; every output path is also checked to
resolve inside ``--output`` (a symlinked ``masks/`` pointing outside is an error).
"""

from __future__ import annotations

import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
import torch
import typer

from ganseg import io
from ganseg.data.images import IMAGE_SUFFIXES, read_image
from ganseg.data.pairs import save_image, save_mask
from ganseg.errors import DataError, GansegError
from ganseg.evaluation.inference import probabilities_to_labels, scaled_size, segment_image
from ganseg.evaluation.models import load_model
from ganseg.evaluation.overlays import mask_overlay
from ganseg.inference import check_memory
from ganseg.progress import progress_iter
from ganseg.runtime import select_device, select_precision
from pipelines.stage import DebugOption, ParamsOption, run_stage

app = typer.Typer(help="Segment every image in a folder with a trained model (any image size).")

SAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]")


@app.callback(invoke_without_command=True)
def predict(
    input_dir: Annotated[Path, typer.Option("--input", help="Folder of images to segment (png, jpg, tif, bmp).")],
    output_dir: Annotated[Path, typer.Option("--output", help="Folder for masks/, overlays/ and predictions.csv.")],
    model: Annotated[
        str, typer.Option(help="A model file (models/unet_real.pt) or a registry URI (models:/ganseg-unet@champion).")
    ] = "models:/ganseg-unet@champion",
    params: ParamsOption = Path("params.yaml"),
    debug: DebugOption = False,
) -> None:
    """Write a mask and an overlay for every image in ``--input``."""
    with run_stage("predict", params, debug) as ctx:
        common, cfg = ctx.params.common, ctx.params.predict
        inputs = list_input_images(input_dir)
        names = output_names(inputs)
        check_output_dir(output_dir, input_dir)
        device = select_device(common.device)
        segmenter = load_model(model, device, select_precision(common.precision, device), registry_root=ctx.root)
        tile = cfg.tile_size or segmenter.patch_size or common.image_size
        # Decode everything first: a bad or too large file stops the command before anything is written.
        check_inputs(inputs, segmenter.in_channels, segmenter.num_classes, tile, cfg.scale)
        make_output_dir(output_dir)
        out_root = output_dir.resolve()

        started = time.perf_counter()
        rows = []
        for path, name in progress_iter(zip(inputs, names), len(inputs), "predict", unit="image"):
            image, _ = read_image(path, segmenter.in_channels)  # (H, W, C) uint8
            tensor = _to_tensor(image)
            probs = segment_image(segmenter, tensor, tile, cfg.overlap, cfg.scale, cfg.batch_size, name=str(path),
                                  mirror=cfg.mirror)
            labels = probabilities_to_labels(probs, cfg.threshold).numpy()
            mask_file = confined(out_root, "masks", f"{name}.png")
            with io.atomic_path(mask_file) as temp:
                save_mask(temp, labels, segmenter.num_classes)
            overlay_file = None
            if cfg.overlays:
                overlay_file = confined(out_root, "overlays", f"{name}.png")
                with io.atomic_path(overlay_file) as temp:
                    save_image(temp, mask_overlay(image, labels))
            rows.append({
                "image": str(path),
                "mask": mask_file.relative_to(out_root).as_posix(),
                "overlay": overlay_file.relative_to(out_root).as_posix() if overlay_file else None,
                "height": labels.shape[0],
                "width": labels.shape[1],
                "foreground_fraction": round(float((labels > 0).mean()), 6),
            })
        seconds = time.perf_counter() - started
        with io.atomic_path(confined(out_root, None, "predictions.csv")) as temp:
            pd.DataFrame(rows).to_csv(temp, index=False)

        version = segmenter.registry_version
        ctx.tracker.set_tags({"ganseg.model": segmenter.source, **({"ganseg.model_run_id": version.run_id} if version and version.run_id else {})})
        ctx.tracker.log_metrics({"predict/images": len(rows), "predict/seconds": seconds})
        print(
            f"predict: {len(rows)} image(s) with {segmenter.source} (tile {tile}, overlap {cfg.overlap:g}, "
            f"scale {cfg.scale:g}) in {seconds:.1f} s -> {output_dir}"
        )


def list_input_images(folder: Path) -> list[Path]:
    """Image files directly in ``folder``, sorted; one-line errors as prepare gives them."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: input folder not found (--input)")
    found: dict[str, Path] = {}
    hidden = 0
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if path.name.startswith("."):  # as prepare: macOS ._* and other hidden files are not data
            hidden += 1
            continue
        if path.stem in found:
            raise DataError(f"{path}: two input files share the stem '{path.stem}' ({found[path.stem].name}); rename one")
        found[path.stem] = path
    if hidden:
        print(f"warning: {folder}: {hidden} hidden image file(s) (name starting with '.') not segmented", file=sys.stderr)
    if not found:
        raise DataError(f"{folder}: no image files ({', '.join(IMAGE_SUFFIXES)}) in folder (--input)")
    return list(found.values())


def output_names(inputs: list[Path]) -> list[str]:
    """A safe, unique file stem per input: letters, digits, '.', '_' and '-' only, no leading dot."""
    names, used = [], set()
    for path in inputs:
        name = SAFE_CHARS.sub("_", Path(path.name).stem)
        if not name or name.startswith("."):
            name = f"_{name}"
        unique, count = name, 2
        while unique.lower() in used:  # case-insensitive file systems
            unique, count = f"{name}-{count}", count + 1
        used.add(unique.lower())
        names.append(unique)
    return names


def check_output_dir(output_dir: Path, input_dir: Path) -> None:
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise GansegError(f"{output_dir}: --output exists and is not a folder")
    if output_dir.resolve() == Path(input_dir).resolve():
        raise GansegError(f"{output_dir}: --output must differ from --input (masks would mix with the images)")


def make_output_dir(output_dir: Path) -> None:
    """Create ``--output`` and prove it takes files, before any result is written."""
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=output_dir, prefix=".write-test."):
            pass
    except OSError as exc:
        raise GansegError(f"{output_dir}: cannot write the --output folder ({exc.strerror or exc})") from exc


def confined(root: Path, folder: str | None, filename: str) -> Path:
    """``root/folder/filename``, refusing anything that would resolve outside ``root``."""
    root = Path(root).resolve()
    if Path(filename).name != filename or filename in ("", ".", ".."):
        raise GansegError(f"{filename!r}: output file names must be plain names")
    parent = root / folder if folder else root
    if parent.is_symlink() or (parent.exists() and not parent.is_dir()):
        raise GansegError(f"{parent}: must be a plain folder inside --output (found a link or a file)")
    parent.mkdir(parents=True, exist_ok=True)
    target = (parent / filename).resolve()
    if not target.is_relative_to(root):
        raise GansegError(f"{parent / filename}: resolves outside --output {root}; refusing to write there")
    return parent / filename


def check_inputs(paths: list[Path], channels: int, num_classes: int, tile: int, scale: float) -> None:
    """One DataError for all inputs that are unreadable or too large for memory (naming the
    first): the probability maps the network fills at ``scale`` and the one resized back to the
    input size must fit (:func:`ganseg.inference.check_memory`)."""
    problems = []
    for path in paths:
        try:
            image, _ = read_image(path, channels)  # (H, W, C)
            native = image.shape[:2]
            scaled = scaled_size(native, scale)
            largest = (max(native[0], scaled[0]), max(native[1], scaled[1]))
            check_memory(str(path), largest, channels, num_classes, (tile, tile))
        except DataError as exc:
            problems.append(str(exc))
    if problems:
        more = f"; {len(problems) - 1} more unreadable or too large image(s)" if len(problems) > 1 else ""
        raise DataError(f"{problems[0]}{more}")


def _to_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(image.transpose(2, 0, 1), copy=True))  # (C, H, W) uint8
