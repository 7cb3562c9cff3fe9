"""Bad input, every stage: one `error:` line naming the file or key, and nothing already produced is touched.

Each case starts from the same small project, one that has run before (prepared pairs, synthetic
pairs, model files, an earlier predict output), breaks one thing, and runs one command as a user
would. The command must exit non-zero with exactly one line on stderr (warnings aside) that
starts with `error:` and names the culprit, print no traceback, and leave every file of the
project (its earlier outputs included) byte for byte as it was.

Inputs that look odd but are valid (16-bit, alpha, palette images, odd sizes, spaces and
unicode in paths) are not errors: the last test checks they are read correctly.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from typer.testing import CliRunner

from pipelines.__main__ import app
from tests.evaluation.fakes import tiny_model_file, tiny_project
from tests.helpers import folder_dataset, write_pair

runner = CliRunner()
pytestmark = [pytest.mark.reliability, pytest.mark.usefixtures("single_thread")]

GOOD = {
    "common": {"image_size": 32},
    "prepare": {"source": "folder", "folder": {"images_dir": "source/images", "masks_dir": "source/masks"}},
    "train": {"steps": None, "val_interval": None, "patch_size": 32, "epochs": 1, "batch_size": 4,
              "model": {"depth": 2, "base_width": 4}},
    "finetune": {"epochs": 1, "steps": None, "val_interval": None, "batch_size": 4, "discriminator": {"base_channels": 8, "layers": 2}},
    "evaluate": {"bootstrap": {"resamples": 100}, "synthetic_quality": {"enabled": False}},
}
PREPARE = ["prepare", "--params", "params.yaml", "--out", "data/prepared", "--reports", "reports/prepare",
           "--metrics", "metrics/prepare.json"]
TRAIN = ["train", "--params", "params.yaml", "--variant", "real", "--no-progress"]
FINETUNE = ["finetune", "--params", "params.yaml", "--no-progress"]
EVALUATE = ["evaluate", "--params", "params.yaml"]
AUGMENT = ["augment", "--params", "params.yaml"]


def predict(model: str = "models/unet_real.pt", inputs: str = "inbox", output: str = "predictions") -> list[str]:
    return ["predict", "--params", "params.yaml", "--model", model, "--input", inputs, "--output", output]


def _params(root: Path, **blocks) -> None:
    """Rewrite params.yaml with ``blocks`` merged one level deep into GOOD."""
    params = {name: dict(block) for name, block in GOOD.items()}
    for name, block in blocks.items():
        params[name] = {**params.get(name, {}), **block} if isinstance(block, dict) else block
    (root / "params.yaml").write_text(yaml.safe_dump(params))


def _png(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode=mode).save(path)
    return path


@dataclass(frozen=True)
class Case:
    """Breaks one thing in the project; returns the command to run and the text its error must name."""

    name: str
    breaks: Callable[[Path, pytest.MonkeyPatch], tuple[list[str], str]]


def corrupt_image(root, monkeypatch):
    (root / "source/images/cell_02.png").write_bytes(b"\x89PNG but not really")
    return PREPARE, "source/images/cell_02.png: not a readable image"


def truncated_image(root, monkeypatch):
    path = root / "source/images/cell_03.png"
    path.write_bytes(path.read_bytes()[:60])
    return PREPARE, "source/images/cell_03.png: cannot"


def zero_byte_image(root, monkeypatch):
    (root / "source/images/cell_04.png").write_bytes(b"")
    return PREPARE, "source/images/cell_04.png"


def zero_byte_mask(root, monkeypatch):
    (root / "source/masks/cell_05.png").write_bytes(b"")
    return PREPARE, "source/masks/cell_05.png"


def mask_of_another_size(root, monkeypatch):
    _png(root / "source/masks/cell_01.png", np.zeros((10, 12), np.uint8))
    return PREPARE, "cell_01.png"


def non_binary_mask(root, monkeypatch):
    _png(root / "source/masks/cell_06.png", (np.arange(40 * 48).reshape(40, 48) % 7 * 30).astype(np.uint8))
    _params(root, prepare={"folder": {**GOOD["prepare"]["folder"], "binarize": False}})
    return PREPARE, "source/masks/cell_06.png: mask is not binary"


def image_without_mask(root, monkeypatch):
    (root / "source/masks/cell_07.png").unlink()
    return PREPARE, "cell_07.png"


def empty_image_folder(root, monkeypatch):
    for path in (root / "source/images").iterdir():
        path.unlink()
    return PREPARE, "source/images"


def missing_image_folder(root, monkeypatch):
    _params(root, prepare={"folder": {"images_dir": "nowhere/images", "masks_dir": "source/masks"}})
    return PREPARE, "nowhere/images"


def unknown_key(root, monkeypatch):
    _params(root, train={"epoch": 3})
    return TRAIN, "train.epoch"


def mistyped_value(root, monkeypatch):
    _params(root, train={"epochs": "ten"})
    return TRAIN, "train.epochs"


def out_of_range_value(root, monkeypatch):
    _params(root, common={"image_size": -32})
    return EVALUATE, "common.image_size"


def contradictory_values(root, monkeypatch):
    _params(root, prepare={"split": {"train": 0.8, "val": 0.3, "test": 0.2}})
    return PREPARE, "prepare.split"


def unknown_block(root, monkeypatch):
    _params(root, trian={"epochs": 1})
    return TRAIN, "trian"


def params_not_yaml(root, monkeypatch):
    (root / "params.yaml").write_text("common:\n  image_size: [32,\n")
    return TRAIN, "params.yaml: line"


def params_file_missing(root, monkeypatch):
    (root / "params.yaml").unlink()
    return AUGMENT, "params.yaml"


def region_of_interest_of_another_size(root, monkeypatch):
    for mask in sorted((root / "source/masks").iterdir()):
        _png(root / "source/roi" / mask.name, np.full((40, 48), 255, np.uint8))
    _png(root / "source/roi/cell_04.png", np.full((30, 30), 255, np.uint8))
    _params(root, prepare={**GOOD["prepare"], "folder": {**GOOD["prepare"]["folder"], "roi_dir": "source/roi"}})
    return PREPARE, "source/roi/cell_04.png: region of interest is 30x30 but its image is 40x48"


def start_model_missing(root, monkeypatch):
    return [*FINETUNE, "--start", "models/unet_gone.pt"], "unet_gone.pt"


def start_model_corrupt(root, monkeypatch):
    (root / "models/unet_synthetic.pt").write_bytes(b"PK\x03\x04 not a zip archive")
    return FINETUNE, "unet_synthetic.pt"


def start_model_mismatched(root, monkeypatch):
    tiny_model_file(root / "models/unet_synthetic.pt", seed=5, channels=3)
    return FINETUNE, "unet_synthetic.pt"


def evaluated_model_mismatched(root, monkeypatch):
    tiny_model_file(root / "models/unet_real.pt", seed=5, channels=3)
    return EVALUATE, "unet_real.pt"


def model_file_of_something_else(root, monkeypatch):
    torch.save({"weights": torch.zeros(3)}, root / "models/other.pt")
    return predict(model="models/other.pt"), "other.pt"


def predict_model_missing(root, monkeypatch):
    return predict(model="models/nope.pt"), "nope.pt"


def unknown_registry_alias(root, monkeypatch):
    return predict(model="models:/ganseg-unet@nobody"), "ganseg-unet@nobody"


def predict_corrupt_image(root, monkeypatch):
    (root / "inbox/broken scan.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    return predict(), "broken scan.png"


def predict_empty_folder(root, monkeypatch):
    (root / "empty").mkdir()
    return predict(inputs="empty"), "empty"


def unwritable_output(root, monkeypatch):
    # Tests may run as root, which ignores file modes: /proc refuses new folders to everyone.
    return predict(output="/proc/ganseg-predictions"), "/proc/ganseg-predictions: cannot write the --output folder"


def unreachable_tracking_store(root, monkeypatch):
    _params(root, common={"tracking_required": True})
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # nothing listens on the discard port
    return TRAIN, "127.0.0.1:9"


CASES = [Case(f.__name__.replace("_", " "), f) for f in (
    corrupt_image, truncated_image, zero_byte_image, zero_byte_mask, mask_of_another_size, non_binary_mask,
    image_without_mask, empty_image_folder, missing_image_folder,
    unknown_key, mistyped_value, out_of_range_value, contradictory_values, unknown_block, params_not_yaml,
    params_file_missing, region_of_interest_of_another_size,
    start_model_missing, start_model_corrupt, start_model_mismatched, evaluated_model_mismatched,
    model_file_of_something_else, predict_model_missing, unknown_registry_alias,
    predict_corrupt_image, predict_empty_folder, unwritable_output, unreachable_tracking_store,
)]


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project that has run before: source folder, prepared and synthetic pairs, models, predictions."""
    root = tmp_path / "project"
    tiny_project(root)
    folder_dataset(root / "source", count=10)
    _png(root / "inbox/a.png", np.random.default_rng(0).integers(0, 255, (40, 40), dtype=np.uint8))
    _png(root / "predictions/masks/a.png", np.zeros((40, 40), np.uint8))  # an earlier predict's output
    (root / "metrics").mkdir()
    (root / "metrics/prepare.json").write_text('{"pairs": 10}\n')
    _params(root)
    monkeypatch.chdir(root)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return root


def _snapshot(root: Path) -> dict[str, str]:
    # mlruns/ is the tracking store: a failed stage may record its failed run there.
    return {path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(root.rglob("*")) if path.is_file() and "mlruns" not in path.relative_to(root).parts}


def _problem_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip() and not line.startswith("warning")]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_input_is_one_line_naming_the_culprit_and_nothing_is_touched(project, monkeypatch, case):
    argv, culprit = case.breaks(project, monkeypatch)
    before = _snapshot(project)
    result = runner.invoke(app, argv)
    lines = _problem_lines(result.stderr)
    print(f"\n{case.name}: exit {result.exit_code}: {result.stderr.strip()}")
    assert result.exit_code != 0, result.output
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert culprit in lines[0], lines[0]
    assert "Traceback" not in result.output
    assert _snapshot(project) == before, "a failed command changed the project's files"


def test_there_are_at_least_25_cases_across_the_stages():
    stages = {case.breaks.__name__ for case in CASES}
    print(f"\n{len(CASES)} bad-input cases")
    assert len(stages) == len(CASES) >= 25


def test_debug_shows_the_traceback_of_an_unexpected_error(project, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("an unexpected bug")

    monkeypatch.setattr("pipelines.evaluate.locate_models", broken)
    quiet = runner.invoke(app, EVALUATE)
    assert quiet.exit_code == 1 and "Traceback" not in quiet.output
    assert _problem_lines(quiet.stderr) == [
        "error: RuntimeError: an unexpected bug (stage 'evaluate'; re-run with --debug for the traceback)"]
    loud = runner.invoke(app, [*EVALUATE, "--debug"])
    assert isinstance(loud.exception, RuntimeError)


def test_odd_but_valid_inputs_are_read_not_rejected(tmp_path, monkeypatch):
    """16-bit, alpha and palette images, odd sizes, spaces and unicode in every path: prepare succeeds."""
    monkeypatch.chdir(tmp_path)
    source = tmp_path / "my data" / "noyaux – échantillon 細胞"
    images, masks = folder_dataset(source, count=8)
    wide = np.linspace(0, 65535, 40 * 48).reshape(40, 48).astype(np.uint16)
    Image.fromarray(wide).save(images / "cell_00.png")  # 16-bit
    rgba = np.dstack([np.full((40, 48, 3), 90, np.uint8), np.full((40, 48), 128, np.uint8)])
    _png(images / "cell_01.png", rgba, mode="RGBA")
    palette = Image.fromarray((np.asarray(Image.open(masks / "cell_02.png")) > 0).astype(np.uint8), mode="P")
    palette.putpalette([0, 0, 0, 255, 255, 255] + [0, 0, 0] * 254)
    palette.save(masks / "cell_02.png")
    write_pair(images, masks, "odd size ünïcode", size=(37, 53), seed=11)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({
        "common": {"image_size": 32},
        "prepare": {"source": "folder", "folder": {"images_dir": str(images), "masks_dir": str(masks)}},
    }))
    out = tmp_path / "out put" / "préparé"
    result = runner.invoke(app, ["prepare", "--params", "params.yaml", "--out", str(out),
                                 "--reports", str(tmp_path / "reports"), "--metrics", str(tmp_path / "m.json")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "m.json").read_text())["pairs"] == 9
    prepared = {p.stem: np.asarray(Image.open(p)) for p in out.rglob("images/*.png")}
    assert len(prepared) == 9 and all(a.dtype == np.uint8 for a in prepared.values())
    assert {a.shape[:2] for a in prepared.values()} == {(40, 48), (37, 53)}  # each at its own size
    sixteen_bit = next(array for stem, array in prepared.items() if "cell_00" in stem)
    assert sixteen_bit.min() < 20 and sixteen_bit.max() > 235  # rescaled, not clipped to white
