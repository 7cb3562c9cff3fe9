"""The predict command: any image size, model file or registry URI, one-line errors, confined outputs."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from ganseg.errors import GansegError
from ganseg.tracking import Registry
from pipelines.__main__ import app
from pipelines.predict import confined, output_names
from tests.evaluation.conftest import _store_template, fresh_store  # noqa: F401 - fixtures
from tests.evaluation.fakes import MODEL_NAME, register_file, tiny_model_file
from tests.helpers import write_params

runner = CliRunner()


def _images(folder: Path, sizes: dict[str, tuple[int, int]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name, (h, w) in sizes.items():
        Image.fromarray(rng.integers(0, 255, (h, w), dtype=np.uint8)).save(folder / name, format=_format(name))
    return folder


def _format(name: str) -> str:
    return {".tif": "TIFF", ".jpg": "JPEG"}.get(Path(name).suffix, "PNG")


def _predict(tmp_path: Path, model: str, inputs: Path, output: Path, blocks: dict | None = None):
    params = write_params(tmp_path / "params.yaml", blocks or {"common": {"image_size": 32}})
    return runner.invoke(app, ["predict", "--model", model, "--input", str(inputs), "--output", str(output),
                               "--params", str(params)])


def _error_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and "Traceback" not in result.output
    return lines[0]


def test_masks_at_input_size_for_small_square_and_large_images(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = tiny_model_file(tmp_path / "models" / "unet_real.pt", seed=0, image_size=32)
    sizes = {"small.png": (20, 30), "same.png": (32, 32), "large.png": (75, 140), "tall.tif": (130, 40)}
    inputs = _images(tmp_path / "in", sizes)
    Image.new("RGB", (50, 45), (10, 200, 30)).save(inputs / "colour.jpg")  # RGB becomes the model's 1 channel
    (inputs / "notes.txt").write_text("not an image")
    result = _predict(tmp_path, str(model), inputs, tmp_path / "out")
    assert result.exit_code == 0, result.output
    expected = {Path(k).stem: v for k, v in sizes.items()} | {"colour": (45, 50)}
    for stem, (h, w) in expected.items():
        mask = np.asarray(Image.open(tmp_path / "out" / "masks" / f"{stem}.png"))
        assert mask.shape == (h, w) and set(np.unique(mask)) <= {0, 255}
        overlay = Image.open(tmp_path / "out" / "overlays" / f"{stem}.png")
        assert overlay.size == (w, h) and overlay.mode == "RGB"
    table = pd.read_csv(tmp_path / "out" / "predictions.csv")
    assert sorted(Path(p).stem for p in table["image"]) == sorted(expected)
    assert "predict: 5 image(s)" in result.stdout


def test_tiled_prediction_matches_the_network_on_a_same_size_image(tmp_path, monkeypatch):
    """A 32 px image with tile 32 is one forward pass: the mask is exactly logit > 0."""
    import torch

    from ganseg.evaluation.models import load_model

    monkeypatch.chdir(tmp_path)
    model = tiny_model_file(tmp_path / "unet_real.pt", seed=5, image_size=32)
    inputs = _images(tmp_path / "in", {"a.png": (32, 32)})
    assert _predict(tmp_path, str(model), inputs, tmp_path / "out").exit_code == 0
    image = torch.from_numpy(np.array(Image.open(inputs / "a.png")))[None, None].float() / 255
    expected = (load_model(model, torch.device("cpu")).logits(image)[0, 0] > 0).numpy()
    mask = np.asarray(Image.open(tmp_path / "out" / "masks" / "a.png")) > 0
    assert (mask == expected).mean() > 0.999  # sigmoid(0) = 0.5: ties may flip a pixel


def test_registry_uri(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = tiny_model_file(tmp_path / "models" / "unet_real.pt", seed=0)
    Registry(tmp_path).set_alias(MODEL_NAME, "champion", register_file(tmp_path, model, "real"))
    inputs = _images(tmp_path / "in", {"a.png": (40, 50)})
    result = _predict(tmp_path, f"models:/{MODEL_NAME}@champion", inputs, tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "masks" / "a.png").exists()
    assert "version 1" in result.stdout

    missing = _predict(tmp_path, f"models:/{MODEL_NAME}@nobody", inputs, tmp_path / "out2")
    assert missing.exit_code == 1 and "no such model or alias" in _error_line(missing)


@pytest.mark.parametrize("problem", ["corrupt", "missing dir", "no images", "missing model", "bad uri", "output is input"])
def test_bad_inputs_give_one_line_and_write_nothing(tmp_path, monkeypatch, problem):
    monkeypatch.chdir(tmp_path)
    model = str(tiny_model_file(tmp_path / "unet_real.pt", seed=0))
    inputs = _images(tmp_path / "in", {"a.png": (40, 40), "b.png": (40, 40)})
    output = tmp_path / "out"
    culprit = {"corrupt": "c.png", "missing dir": "nowhere", "no images": "empty", "missing model": "nope.pt",
               "bad uri": "models:/ganseg-unet", "output is input": "must differ"}[problem]
    if problem == "corrupt":
        (inputs / "c.png").write_bytes(b"\x89PNG garbage")
    elif problem == "missing dir":
        inputs = tmp_path / "nowhere"
    elif problem == "no images":
        inputs = tmp_path / "empty"
        inputs.mkdir()
    elif problem == "missing model":
        model = str(tmp_path / "nope.pt")
    elif problem == "bad uri":
        model = "models:/ganseg-unet"
    else:
        output = inputs
    result = _predict(tmp_path, model, inputs, output)
    assert result.exit_code == 1
    assert culprit in _error_line(result)
    assert not (tmp_path / "out").exists() and not (inputs / "masks").exists()


def test_image_too_large_for_memory_is_one_line_naming_it_and_writes_nothing(tmp_path, monkeypatch):
    import collections

    import psutil

    monkeypatch.chdir(tmp_path)
    model = str(tiny_model_file(tmp_path / "unet_real.pt", seed=0))
    inputs = _images(tmp_path / "in", {"a.png": (40, 40), "big.png": (300, 200)})
    memory = collections.namedtuple("memory", "available")
    monkeypatch.setattr(psutil, "virtual_memory", lambda: memory(available=2 * 4 * 3 * 100 * 100))  # 100x100 fits
    result = _predict(tmp_path, model, inputs, tmp_path / "out")
    assert result.exit_code == 1
    line = _error_line(result)
    assert "big.png: a 300x200 px image needs" in line and "half the free RAM" in line
    assert not (tmp_path / "out").exists()


def test_odd_file_names_stay_inside_the_output_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = str(tiny_model_file(tmp_path / "unet_real.pt", seed=0))
    names = {"a..png": (20, 20), "a b;$(x).png": (20, 20), "-rf.png": (20, 20), "é.png": (20, 20), "~.png": (20, 20)}
    inputs = _images(tmp_path / "deep" / "in", {**names, "..png": (20, 20)})
    output = tmp_path / "deep" / "out"
    result = _predict(tmp_path, model, inputs, output)
    assert result.exit_code == 0, result.output
    assert "1 hidden image file(s)" in result.stderr  # '..png' is a hidden file: said, not segmented
    written = sorted(p.relative_to(output).as_posix() for p in output.rglob("*") if p.is_file())
    assert len(written) == 2 * len(names) + 1
    assert all(p.startswith(("masks/", "overlays/")) or p == "predictions.csv" for p in written)
    assert not any(Path(p).name.startswith(".") for p in written)
    outside = sorted(p.name for p in (tmp_path / "deep").iterdir())
    assert outside == ["in", "out"]


def test_symlinked_output_subfolder_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = str(tiny_model_file(tmp_path / "unet_real.pt", seed=0))
    inputs = _images(tmp_path / "in", {"a.png": (20, 20)})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "masks").symlink_to(elsewhere)
    result = _predict(tmp_path, model, inputs, tmp_path / "out")
    assert result.exit_code == 1 and "link" in _error_line(result)
    assert list(elsewhere.iterdir()) == []


@pytest.mark.parametrize("name", ["../x.png", "/etc/x.png", "a/../../x.png", "..", ".", ""])
def test_confined_refuses_paths_that_leave_the_folder(tmp_path, name):
    with pytest.raises(GansegError):
        confined(tmp_path / "out", "masks", name)
    assert not (tmp_path / "x.png").exists()


def test_output_names_are_safe_and_unique():
    names = output_names([Path("a b.png"), Path("a_b.tif"), Path("..png"), Path("A_B.jpg"), Path("ok.png")])
    assert names == ["a_b", "a_b-2", "_.", "A_B-3", "ok"]
    assert all("/" not in n and not n.startswith(".") for n in names)


def test_tile_defaults_to_the_patch_size_the_model_records(tmp_path, monkeypatch):
    import json

    monkeypatch.chdir(tmp_path)
    model = tiny_model_file(tmp_path / "unet_real.pt", seed=0, image_size=32)
    model.with_suffix(".json").write_text(json.dumps({"patch_size": 48}))
    inputs = _images(tmp_path / "in", {"wide.png": (40, 100)})
    result = _predict(tmp_path, str(model), inputs, tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "(tile 48," in result.stdout
    assert np.asarray(Image.open(tmp_path / "out" / "masks" / "wide.png")).shape == (40, 100)
