"""Atomic file output: a reader (or DVC) never sees a half-written file or folder.

Everything is written to a temporary name in the destination's own directory (same file
system, so the final ``os.replace`` is atomic), flushed and fsynced, then renamed. On any
failure the temporary is removed, so no orphan is left for DVC to cache. A SIGKILL cannot be
caught, so temporaries carry their writer's pid and the next write of the same destination
removes those whose writer is gone.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image


def _temp_prefix(final: Path) -> str:
    return f".{final.name}.{os.getpid()}."


def remove_orphans(final: Path) -> int:
    """Delete temporaries of ``final`` left by writers that were killed; returns the count."""
    removed = 0
    for orphan in Path(final).parent.glob(f".{Path(final).name}.*"):
        pid = orphan.name[len(Path(final).name) + 2 :].split(".", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid() or Path(f"/proc/{pid}").exists():
            continue
        if orphan.is_dir():
            shutil.rmtree(orphan, ignore_errors=True)
        else:
            orphan.unlink(missing_ok=True)
        removed += 1
    return removed


@contextlib.contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary file path beside ``final``; on success it replaces ``final``."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_orphans(final)
    handle, name = tempfile.mkstemp(prefix=_temp_prefix(final), suffix=".tmp", dir=final.parent)
    os.close(handle)
    temp = Path(name)
    try:
        yield temp
        with open(temp, "rb") as written:
            os.fsync(written.fileno())
        os.replace(temp, final)
    finally:
        temp.unlink(missing_ok=True)


def write_text(final: Path, text: str) -> None:
    with atomic_path(final) as temp:
        temp.write_text(text, encoding="utf-8")


def write_json(final: Path, data: Any) -> None:
    write_text(final, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def write_png(final: Path, image: np.ndarray) -> None:
    """(H, W) or (H, W, C) uint8 -> PNG, atomically. The format is given, not read from the
    temporary's name (PIL would pick it by suffix)."""
    with atomic_path(final) as temp:
        Image.fromarray(image).save(temp, format="PNG", compress_level=1)


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def torch_save(obj: Any, final: Path) -> None:
    """``torch.save`` atomically: a kill mid-write leaves the previous file intact."""
    with atomic_path(final) as temp:
        torch.save(obj, temp)


@contextlib.contextmanager
def staged_dir(final: Path) -> Iterator[Path]:
    """Yield an empty folder beside ``final``; on success it replaces ``final`` whole.

    A failure removes the staging folder and leaves any earlier ``final`` untouched.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_orphans(final)
    staging = Path(tempfile.mkdtemp(prefix=_temp_prefix(final), suffix=".tmp", dir=final.parent))
    try:
        yield staging
        if final.exists():
            retired = Path(tempfile.mkdtemp(prefix=_temp_prefix(final), suffix=".old", dir=final.parent))
            os.replace(final, retired / final.name)
            os.replace(staging, final)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, final)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
