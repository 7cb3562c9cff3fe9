"""Pairing a user's images folder with a masks folder by file stem.

Missing partners are not raised here: they become manifest rows with an empty path, so the
validation suite reports every problem of the data set at once, by file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ganseg.data.images import IMAGE_SUFFIXES
from ganseg.errors import DataError


@dataclass(frozen=True)
class PairPaths:
    pair_id: str
    image: Path | None
    mask: Path | None


def list_images(folder: Path, role: str) -> dict[str, Path]:
    """Image files of ``folder`` by stem; errors name the folder and the ``role`` key."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: {role} folder not found (prepare.folder.{role}_dir)")
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.suffix.lower() not in IMAGE_SUFFIXES or path.name.startswith("."):
            continue
        if path.stem in found:
            raise DataError(f"{path}: two {role} files share the stem '{path.stem}' ({found[path.stem].name})")
        found[path.stem] = path
    if not found:
        raise DataError(
            f"{folder}: no {role} files ({', '.join(IMAGE_SUFFIXES)}) in folder (prepare.folder.{role}_dir)"
        )
    return found


def pair_by_stem(images_dir: Path, masks_dir: Path) -> list[PairPaths]:
    images = list_images(images_dir, "images")
    masks = list_images(masks_dir, "masks")
    stems = sorted(set(images) | set(masks))
    return [PairPaths(stem, images.get(stem), masks.get(stem)) for stem in stems]
