"""The train command as a user runs it, on a tiny config: outputs, MLflow, registry, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from ganseg.config.prepare import SyntheticSourceConfig
from ganseg.data import pairs as pair_files
from ganseg.data.synthetic import generate_pair
from ganseg.models.model_file import load_unet, read_model_file
from pipelines.__main__ import app
from tests.helpers import write_params

runner = CliRunner()
SIDE = 32

# Seconds, not minutes: a 2-level U-Net of width 4 for 2 epochs on 16 + 6 pairs of 32x32.
TINY = {
    "common": {"image_size": SIDE},
    "train": {
        "epochs": 2,
        "steps": None,
        "val_interval": None,
        "patch_size": SIDE,
        "batch_size": 4,
        "model": {"depth": 2, "base_width": 4},
        "synthetic_ratio": 0.5,
        "overlay_images": 2,
        "val_batch_size": 8,
    },
}


pytestmark = pytest.mark.usefixtures("single_thread")


def write_pair_folder(folder: Path, count: int, seed: int, side: int = SIDE, prefix: str = "syn") -> Path:
    """A pair folder as prepare (or augment) writes it, from the embedded generator."""
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    rows = []
    for index in range(count):
        pair = generate_pair(SyntheticSourceConfig(), side, seed, index)
        pair_id = f"{prefix}_{seed}_{index:03d}"
        pair_files.save_image(folder / "images" / f"{pair_id}.png", pair.image[:, :, None])
        pair_files.save_mask(folder / "masks" / f"{pair_id}.png", pair.mask.astype(np.uint8), 1)
        rows.append({"pair_id": pair_id, "image": f"images/{pair_id}.png", "mask": f"masks/{pair_id}.png",
                     "content_hash": f"{prefix}{seed}x{index:05d}"})  # unique per image, as prepare's hashes are
    pd.DataFrame(rows).to_csv(folder / pair_files.MANIFEST, index=False)
    return folder


def make_project(root: Path, blocks: dict | None = None) -> Path:
    """prepared train/val folders and a params file under ``root``; returns the params path."""
    write_pair_folder(root / "data" / "prepared" / "train", 16, seed=1)
    write_pair_folder(root / "data" / "prepared" / "val", 6, seed=2)
    return write_params(root / "params.yaml", blocks or TINY)


def train_args(variant: str = "real", *extra: str) -> list[str]:
    return ["train", "--params", "params.yaml", "--variant", variant, *extra]


def _error_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[-1]




def test_real_variant_writes_model_metrics_plots_reports_and_registers(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_project(tmp_path)
    result = runner.invoke(app, train_args("real"))
    assert result.exit_code == 0, result.output

    model = load_unet(Path("models/unet_real.pt"))
    assert model(torch.rand(1, 1, SIDE, SIDE)).shape == (1, 1, SIDE, SIDE)
    saved = read_model_file(Path("models/unet_real.pt"))
    assert saved["image_size"] == SIDE and saved["meta"]["variant"] == "real"
    config = json.loads(Path("models/unet_real.json").read_text())
    assert config["unet"]["base_width"] == 4 and config["train"]["epochs"] == 2
    # The images it learned from travel with it: evaluate never scores it on them.
    record = config["trained_on"]
    assert record["counts"] == {"train": 16, "val": 6} and len(record["images"]) == 22
    assert set(record["images"]) == set(pd.read_csv("data/prepared/train/manifest.csv")["content_hash"]) | set(
        pd.read_csv("data/prepared/val/manifest.csv")["content_hash"])

    metrics = json.loads(Path("metrics/train_real.json").read_text())
    assert 0.0 <= metrics["val"]["dice"] <= 1.0 and metrics["epochs_run"] == 2
    assert metrics["data"] == {"real_pairs": 16, "val_pairs": 6, "val_pairs_scored": 6, "synthetic_pool": 0, "synthetic_per_epoch": 0,
                               "synthetic_schedule": None, "pretrain_until_step": None}
    assert metrics["best_epoch"] == saved["meta"]["epoch"]
    assert metrics["val"]["dice"] == pytest.approx(saved["meta"]["val_dice"], abs=1e-6)

    history = pd.read_csv("plots/train_real.csv")
    assert list(history["epoch"]) == [1, 2]
    assert {"train/loss", "val/dice", "val/loss", "train/lr"} <= set(history.columns)
    assert history["val/dice"].max() == pytest.approx(metrics["val"]["dice"], abs=1e-5)
    assert Path("reports/train_real/val_overlays.png").read_bytes()[:4] == b"\x89PNG"
    assert Path("reports/train_real/curves.png").is_file()
    assert not Path("checkpoints/train_real").exists()  # removed once the outputs are written
    assert "train[real] epoch 2/2" in result.stderr and "val Dice" in result.stdout

    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    versions = client.search_model_versions("name = 'ganseg-unet'")
    assert len(versions) == 1 and versions[0].tags["variant"] == "real"
    assert versions[0].tags["ganseg.trained_on_sha256"] == record["digest"]
    run = client.get_run(versions[0].run_id)
    assert run.info.run_name == "train_real" and run.data.tags["ganseg.variant"] == "real"
    assert run.data.params["train.epochs"] == "2"
    dice_steps = [m.step for m in client.get_metric_history(run.info.run_id, "val/dice")]
    assert dice_steps == [1, 2]
    assert client.get_metric_history(run.info.run_id, "train/loss")
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "reports")}
    assert "reports/val_overlays.png" in artifacts


def test_synthetic_variant_mixes_the_ratio_of_synthetic_pairs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_project(tmp_path)
    write_pair_folder(tmp_path / "data" / "synthetic", 10, seed=9, prefix="gan")
    result = runner.invoke(app, train_args("synthetic", "--synthetic", "data/synthetic"))
    assert result.exit_code == 0, result.output
    metrics = json.loads(Path("metrics/train_synthetic.json").read_text())
    assert metrics["data"]["synthetic_pool"] == 10
    assert metrics["data"]["synthetic_per_epoch"] == 8  # 0.5 synthetic per real pair, 16 real
    assert "16 real + 8 synthetic (pool 10) pairs per epoch" in result.stderr

    from mlflow.tracking import MlflowClient

    versions = MlflowClient().search_model_versions("name = 'ganseg-unet'")
    assert [v.tags["variant"] for v in versions] == ["synthetic"]


def test_pretrain_schedule_keeps_the_plan_and_switches_to_real_pairs_at_its_share(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    blocks = {**TINY, "train": {**TINY["train"], "synthetic_schedule": "pretrain", "pretrain_share": 0.25}}
    make_project(tmp_path, blocks)
    write_pair_folder(tmp_path / "data" / "synthetic", 10, seed=9, prefix="gan")
    result = runner.invoke(app, train_args("synthetic", "--synthetic", "data/synthetic"))
    assert result.exit_code == 0, result.output
    metrics = json.loads(Path("metrics/train_synthetic.json").read_text())
    # The mix's epochs (16 real + 8 synthetic = 6 batches of 4), so the same 12 steps and 2 validations.
    assert metrics["run"]["optimizer_steps"] == 12 and metrics["epochs_run"] == 2
    assert metrics["data"]["synthetic_schedule"] == "pretrain" and metrics["data"]["pretrain_until_step"] == 3
    assert "(steps 1-3 on synthetic pairs only, pool 10; then real only;" in result.stderr


def test_missing_synthetic_folder_is_one_line_naming_the_fix(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_project(tmp_path)
    result = runner.invoke(app, train_args("synthetic", "--synthetic", "data/synthetic"))
    assert result.exit_code == 1
    line = _error_line(result)
    assert "data/synthetic" in line and "augment" in line and "synthetic_ratio: 0" in line
    assert not Path("models").exists()


def test_typo_in_the_train_block_names_the_key(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_project(tmp_path, {**TINY, "train": {**TINY["train"], "epoch": 3}})
    result = runner.invoke(app, train_args())
    assert result.exit_code == 1
    assert "unknown key 'train.epoch'" in _error_line(result)


def test_a_step_budget_sets_the_length_whatever_the_number_of_images(tmp_path, monkeypatch):
    """16 pairs in batches of 4 are 4 steps per epoch: 9 steps validated every 3 (issue 16.3)."""
    monkeypatch.chdir(tmp_path)
    make_project(tmp_path, {**TINY, "train": {**TINY["train"], "steps": 9, "val_interval": 3}})
    result = runner.invoke(app, train_args())
    assert result.exit_code == 0, result.output
    assert "9 optimizer steps (2.2 epochs of 4 batches of 4), validation every 3 steps (3 in all)" in result.stderr
    history = pd.read_csv("plots/train_real.csv")
    assert list(history["train/steps"]) == [3, 6, 9] and list(history["epoch"]) == [1, 2, 3]
    metrics = json.loads(Path("metrics/train_real.json").read_text())
    assert metrics["run"]["optimizer_steps"] == 9 and metrics["epochs_run"] == 3


@pytest.mark.parametrize(("blocks", "expected"), [
    ({"steps": 5, "val_interval": 10}, "train: steps (5) is smaller than val_interval (10)"),
    ({"val_interval": 100}, "train.val_interval (100) exceeds the run's 8 steps: it would never validate"),
])
def test_a_budget_too_small_for_one_validation_is_one_line(tmp_path, monkeypatch, blocks, expected):
    monkeypatch.chdir(tmp_path)
    make_project(tmp_path, {**TINY, "train": {**TINY["train"], **blocks}})
    result = runner.invoke(app, train_args())
    assert result.exit_code == 1
    assert expected in _error_line(result)
    assert not Path("models").exists()


def test_mixed_non_square_sizes_train_on_patches_and_validate_whole(tmp_path, monkeypatch):
    """Images of several non-square sizes, some smaller than the patch: training cuts patches
    (padding the small ones, and saying so), validation segments every image at its own size."""
    from tests.helpers import write_pair

    monkeypatch.chdir(tmp_path)
    make_project(tmp_path, TINY)
    for split, sizes in {"train": [(20, 44), (50, 36), (64, 80)], "val": [(28, 60), (70, 30)]}.items():
        folder = tmp_path / "data" / "prepared" / split
        manifest = pd.read_csv(folder / pair_files.MANIFEST, dtype={"pair_id": str})
        for index, size in enumerate(sizes):
            write_pair(folder / "images", folder / "masks", f"odd_{index}", size=size, seed=index)
            manifest.loc[len(manifest)] = {"pair_id": f"odd_{index}", "image": f"images/odd_{index}.png",
                                           "mask": f"masks/odd_{index}.png", "content_hash": f"odd{split}{index}"}
        manifest.to_csv(folder / pair_files.MANIFEST, index=False)
    result = runner.invoke(app, train_args())
    assert result.exit_code == 0, result.output
    assert "images are smaller than the 32 px patch; their patches are padded" in result.stderr
    model = read_model_file(tmp_path / "models" / "unet_real.pt")
    assert model["image_size"] == SIDE and model["meta"]["patch_size"] == SIDE
    metrics = json.loads((tmp_path / "metrics" / "train_real.json").read_text())
    assert metrics["data"]["val_pairs"] == 6 + 2 and 0 <= metrics["val"]["dice"] <= 1


def test_bad_variant_name_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, train_args("../escape"))
    assert result.exit_code == 2 and "--variant" in result.stderr


def prepared_auto_project(root: Path) -> Path:
    """Prepare's embedded data and the planned defaults (a 0.1-min budget); the params path."""
    params = write_params(root / "params.yaml", {
        "common": {"image_size": SIDE},
        "prepare": {"synthetic": {"num_images": 24}},
        "train": {"time_budget_minutes": 0.1, "model": {"depth": 2, "base_width": 4}, "overlay_images": 1},
    })
    assert runner.invoke(app, ["prepare", "--params", str(params)]).exit_code == 0
    return params


def test_auto_plans_patch_batch_and_steps_from_the_fingerprint_and_a_measured_rate(tmp_path, monkeypatch):
    """The defaults: prepare writes the fingerprint, train measures its step rate and plans for
    its time budget; the plan is printed, in the metrics and in the model's config, and steps
    are whole validation intervals."""
    monkeypatch.chdir(tmp_path)
    params = prepared_auto_project(tmp_path)
    result = runner.invoke(app, ["train", "--params", str(params), "--variant", "real"])
    assert result.exit_code == 0, result.output
    plan = json.loads((tmp_path / "metrics" / "train_real.json").read_text())["plan"]
    assert "s per network step of" in result.stderr and f"plan: patch {plan['patch_size']}, batch" in result.stderr
    # The median image side, unless the measured rate is too slow for the budget's steps (a loaded
    # machine): then a smaller multiple of 2**depth, and the reason says so.
    assert plan["patch_size"] == SIDE or (plan["patch_size"] < SIDE and plan["patch_size"] % 4 == 0
                                          and "shrunk" in plan["reason/patch_size"]), plan
    assert plan["steps"] % plan["val_interval"] == 0 and plan["steps"] > 0
    assert json.loads((tmp_path / "models" / "unet_real.json").read_text())["plan"]["steps"] == plan["steps"]


def test_a_time_budget_too_small_for_one_step_and_validation_is_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    params = write_params(tmp_path / "params.yaml", {
        "common": {"image_size": SIDE}, "prepare": {"synthetic": {"num_images": 24}},
        "train": {"time_budget_minutes": 0.000001, "model": {"depth": 2, "base_width": 4}},
    })
    assert runner.invoke(app, ["prepare", "--params", str(params)]).exit_code == 0
    result = runner.invoke(app, ["train", "--params", str(params), "--variant", "real"])
    assert result.exit_code == 1
    assert "train.time_budget_minutes" in _error_line(result)
    assert not (tmp_path / "models" / "unet_real.pt").exists()


def test_plan_of_trains_the_real_variants_plan_without_measuring(tmp_path, monkeypatch):
    """The synthetic variant, as dvc.yaml runs it, trains the plan of the real one: the same
    patch, batch, steps and validations, so a comparison of the two differs only in its data."""
    monkeypatch.chdir(tmp_path)
    params = prepared_auto_project(tmp_path)
    assert runner.invoke(app, ["train", "--params", str(params), "--variant", "real"]).exit_code == 0
    write_pair_folder(tmp_path / "data" / "synthetic", 10, seed=9, prefix="gan")
    result = runner.invoke(app, ["train", "--params", str(params), "--variant", "synthetic",
                                 "--synthetic", "data/synthetic", "--plan-of", "metrics/train_real.json"])
    assert result.exit_code == 0, result.output
    real = json.loads(Path("metrics/train_real.json").read_text())
    synthetic = json.loads(Path("metrics/train_synthetic.json").read_text())
    keys = ("patch_size", "batch_size", "steps", "val_interval", "val_share")
    assert {k: synthetic["plan"][k] for k in keys} == {k: real["plan"][k] for k in keys}
    assert synthetic["run"]["optimizer_steps"] == real["run"]["optimizer_steps"] == real["plan"]["steps"]
    assert synthetic["plan_of"] == "metrics/train_real.json" and real["plan_of"] is None
    assert "s per network step of" not in result.stderr  # nothing measured
    assert "the plan of metrics/train_real.json, trained as it is" in result.stderr
    assert synthetic["plan"]["reason/steps"].startswith("as in metrics/train_real.json (--plan-of): ")


@pytest.mark.parametrize(("content", "expected"), [
    (None, "no such file"),
    ('{"val": {"dice": 0.5}}', "not a train metrics file with a 'plan'"),
])
def test_a_plan_of_file_that_is_missing_or_holds_no_plan_is_one_line(tmp_path, monkeypatch, content, expected):
    monkeypatch.chdir(tmp_path)
    make_project(tmp_path)
    if content is not None:
        Path("plan.json").write_text(content)
    result = runner.invoke(app, train_args("real", "--plan-of", "plan.json"))
    assert result.exit_code == 1
    line = _error_line(result)
    assert line.startswith("error: plan.json: ") and expected in line and "--plan-of" in line
    assert not Path("models").exists()
