"""Which images a model learned from, so that it is never scored on them.

An image is named by its content hash (prepare's ``content_hash``: sha256 of the decoded
source pixels), not by its file name: the same picture under another name, or prepared at
another size, is still the same image. A model's record lists the hashes of every real image
that shaped it (training pairs, the validation pairs that picked its best epoch, unlabeled
images of semi-supervised fine-tuning) and a digest of that list. The record travels with
the model file (``models/unet_<variant>.json``, stored with its registry version), so a later
evaluation can check that its test images are disjoint from it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from ganseg.data.pairs import read_manifest
from ganseg.errors import DataError

RECORD_KEY = "trained_on"  # key of the record in a model's JSON config
TRAINED_ON_TAG = "ganseg.trained_on_sha256"  # registry tag: the record's digest


def content_hashes(folder: Path) -> list[str]:
    """The content hashes of the images a prepared folder's manifest lists."""
    manifest = read_manifest(folder)
    if "content_hash" not in manifest.columns:
        raise DataError(f"{Path(folder) / 'manifest.csv'}: no content_hash column (re-run prepare: dvc repro prepare)")
    return manifest["content_hash"].astype(str).tolist()


def training_record(folders: dict[str, Path], inherited: dict | None = None) -> dict:
    """The record of a model trained on the images of ``folders`` ({role: folder}), plus the
    images of ``inherited`` (the record of the model it started from, if any)."""
    images: set[str] = set((inherited or {}).get("images", ()))
    counts = {}
    for role, folder in folders.items():
        hashes = content_hashes(folder)
        counts[role] = len(hashes)
        images.update(hashes)
    listed = sorted(images)
    return {"digest": digest(listed), "images": listed, "counts": counts,
            "inherited": (inherited or {}).get("digest")}


def digest(hashes: list[str]) -> str:
    return hashlib.sha256("\n".join(sorted(hashes)).encode()).hexdigest()


def seen_in(record: dict | None, test_hashes: list[str]) -> int | None:
    """How many of ``test_hashes`` the record's model learned from; None without a record."""
    if not record or "images" not in record:
        return None
    return len(set(test_hashes) & set(record["images"]))
