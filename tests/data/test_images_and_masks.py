from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ganseg.config.prepare import FolderSourceConfig
from ganseg.data.folder import pair_by_stem
from ganseg.data.images import read_image
from ganseg.data.masks import read_mask
from ganseg.errors import DataError


def test_dsb_images_mixed_sizes_and_rgb(dsb_root):
    found = pair_by_stem(dsb_root / "images", dsb_root / "masks")
    assert len(found) == 664 and all(p.image and p.mask for p in found)
    shapes = set()
    for paths in found[:40]:
        gray, facts = read_image(paths.image, 1)
        rgb, _ = read_image(paths.image, 3)
        mask = read_mask(paths.mask, FolderSourceConfig(), 1)
        assert gray.shape[2] == 1 and rgb.shape[2] == 3 and gray.dtype == np.uint8
        assert mask.shape == gray.shape[:2] and set(np.unique(mask)) <= {0, 1}
        assert facts["mode"] == "RGB"
        shapes.add(gray.shape[:2])
    assert len(shapes) > 1


def _save(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    Image.fromarray(array, mode=mode).save(path) if mode else Image.fromarray(array).save(path)
    return path


def test_sixteen_bit_image_is_rescaled_min_max(tmp_path):
    array = np.array([[1000, 2000], [3000, 4000]], dtype=np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(array).save(path)
    image, _ = read_image(path, 1)
    assert image[:, :, 0].tolist() == [[0, 85], [170, 255]]


def test_alpha_dropped_and_gray_replicated(tmp_path):
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 10
    image, _ = read_image(_save(tmp_path / "a.png", rgba), 3)
    assert image.shape == (4, 4, 3) and image[0, 0].tolist() == [200, 0, 0]
    gray, _ = read_image(_save(tmp_path / "g.png", np.full((3, 3), 77, np.uint8)), 3)
    assert gray[0, 0].tolist() == [77, 77, 77]


@pytest.mark.parametrize(
    ("values", "cfg", "expected"),
    [
        ([0, 255], FolderSourceConfig(), [0, 1]),
        ([0, 1], FolderSourceConfig(), [0, 1]),
        ([0, 100, 200], FolderSourceConfig(), [0, 0, 1]),  # threshold 127
        ([0, 255], FolderSourceConfig(invert=True), [1, 0]),
    ],
)
def test_binarisation_rule(tmp_path, values, cfg, expected):
    path = _save(tmp_path / "m.png", np.array([values], dtype=np.uint8))
    assert read_mask(path, cfg, 1)[0].tolist() == expected


def test_palette_and_rgb_masks(tmp_path):
    palette = Image.fromarray(np.array([[0, 1, 2, 255]], dtype=np.uint8), mode="P")
    palette.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [224, 224, 192] * 253)
    palette.save(tmp_path / "p.png")
    assert read_mask(tmp_path / "p.png", FolderSourceConfig(), 1)[0].tolist() == [0, 1, 1, 0]
    assert read_mask(tmp_path / "p.png", FolderSourceConfig(), 3)[0].tolist() == [0, 1, 2, 0]
    rgb = np.zeros((1, 3, 3), dtype=np.uint8)
    rgb[0, 1] = [255, 0, 0]
    rgb[0, 2] = [0, 255, 0]
    _save(tmp_path / "c.png", rgb)
    colours = FolderSourceConfig(class_colors=[(0, 0, 0), (255, 0, 0), (0, 255, 0)])
    assert read_mask(tmp_path / "c.png", colours, 3)[0].tolist() == [0, 1, 2]
    assert read_mask(tmp_path / "c.png", FolderSourceConfig(), 1)[0].tolist() == [0, 1, 1]


def test_mask_errors_name_the_file(tmp_path):
    gray = _save(tmp_path / "gray.png", np.array([[0, 100, 255]], dtype=np.uint8))
    with pytest.raises(DataError, match=r"gray.png: mask is not binary .*binarize: true"):
        read_mask(gray, FolderSourceConfig(binarize=False), 1)
    with pytest.raises(DataError, match=r"gray.png: label 100 is outside 0..2"):
        read_mask(gray, FolderSourceConfig(ignore_value=255), 3)
    rgb = _save(tmp_path / "c.png", np.full((1, 1, 3), 9, np.uint8))
    with pytest.raises(DataError, match="c.png: colour mask needs prepare.folder.class_colors"):
        read_mask(rgb, FolderSourceConfig(), 3)


@pytest.mark.parametrize("content", [b"", b"not an image at all", "truncated"])
def test_corrupt_files_name_the_file(tmp_path, content):
    path = tmp_path / "broken image.png"
    if content == "truncated":
        _save(path, np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8))
        path.write_bytes(path.read_bytes()[:200])
    else:
        path.write_bytes(content)
    with pytest.raises(DataError) as info:
        read_image(path, 1)
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)


def test_empty_and_missing_folders(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    with pytest.raises(DataError, match="no images files"):
        pair_by_stem(tmp_path / "images", tmp_path / "masks")
    with pytest.raises(DataError, match="images folder not found"):
        pair_by_stem(tmp_path / "nope", tmp_path / "masks")
