"""Atomic writers and file digests of ganseg.io."""

from __future__ import annotations

import hashlib

import numpy as np
from PIL import Image

from ganseg import io
from ganseg.data.pairs import save_mask


def test_write_png_writes_a_png_whatever_the_temporary_is_called(tmp_path):
    image = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    final = tmp_path / "out" / "grid.png"
    io.write_png(final, image)
    with Image.open(final) as read:
        assert read.format == "PNG" and np.array_equal(np.asarray(read), image)
    assert [p.name for p in final.parent.iterdir()] == ["grid.png"]  # no temporary left


def test_pair_writers_name_the_format_so_atomic_temporaries_work(tmp_path):
    labels = np.array([[0, 1], [2, 1]], dtype=np.uint8)
    final = tmp_path / "mask.png"
    with io.atomic_path(final) as temp:  # ends in .tmp
        save_mask(temp, labels, num_classes=3)
    with Image.open(final) as read:
        assert read.format == "PNG" and read.mode == "P" and np.array_equal(np.asarray(read), labels)


def test_file_sha256_matches_hashlib_over_the_bytes(tmp_path):
    path = tmp_path / "blob.bin"
    data = np.random.default_rng(0).bytes(3 << 20)  # over one read block
    path.write_bytes(data)
    assert io.file_sha256(path) == hashlib.sha256(data).hexdigest()
