"""The finetune command on a tiny project: outputs, registry, never worse than the start, resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from ganseg.data.pairs import MANIFEST, save_image, save_mask
from ganseg.models.model_file import load_unet, read_model_file, save_unet
from ganseg.models.unet import UNet, UNetConfig
from pipelines.__main__ import app
from tests.evaluation.fakes import client_for, tiny_model_file, write_pair_folder
from tests.helpers import write_params

runner = CliRunner()

TINY = {
    "common": {"image_size": 32},
    "finetune": {
        "epochs": 2,
        "steps": None,  # epoch-counted here, so the tests can name epochs
        "val_interval": None,
        "unlabeled": {"enabled": False},  # the semi-supervised cases switch it on
        "batch_size": 4,
        "lr": 0.001,
        "discriminator": {"base_channels": 8, "layers": 2},
        "overlay_images": 2,
    },
}


pytestmark = pytest.mark.usefixtures("single_thread")




@pytest.fixture
def no_model_logging(monkeypatch):
    """Skip MLflow's pytorch-flavour export (~15 s on a CPU) where the registry is not checked."""
    monkeypatch.setattr("ganseg.tracking.StageRun.log_model", lambda self, model, **kwargs: None)


def _project(root: Path) -> Path:
    for split, count, seed in (("train", 8, 1), ("val", 4, 2)):
        write_pair_folder(root / "data" / "prepared" / split, count, 32, seed)
    return tiny_model_file(root / "models" / "unet_synthetic.pt", seed=0, image_size=32)


def _finetune(root: Path, blocks: dict, *args: str):
    params = write_params(root / "params.yaml", blocks)
    return runner.invoke(app, ["finetune", "--params", str(params), "--no-progress", *args])


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def test_finetune_writes_every_output_and_registers_the_adversarial_variant(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    start = _project(tmp_path)

    result = _finetune(tmp_path, TINY)
    assert result.exit_code == 0, result.output

    metrics = json.loads((tmp_path / "metrics" / "finetune.json").read_text())
    assert metrics["variant"] == "adversarial" and metrics["epochs_run"] == 2
    assert metrics["start"]["model"] == "models/unet_synthetic.pt"
    assert metrics["val"]["dice"] >= metrics["start"]["val_dice"]  # never worse
    assert metrics["kept_start"] == (metrics["best_epoch"] == 0)
    assert metrics["gan"] == {"discriminator": "patchgan", "objective": "bce", "seg_weight": 1.0, "adv_weight": 0.01}
    assert metrics["semi_supervised"]["enabled"] is False

    model_path = tmp_path / "models" / "unet_adversarial.pt"
    saved = read_model_file(model_path)
    assert saved["config"] == read_model_file(start)["config"] and saved["image_size"] == 32
    assert saved["meta"]["variant"] == "adversarial" and saved["meta"]["started_from"] == "models/unet_synthetic.pt"
    assert saved["meta"]["val_dice"] == pytest.approx(metrics["val"]["dice"], abs=1e-6)
    assert load_unet(model_path)(torch.rand(1, 1, 32, 32)).shape == (1, 1, 32, 32)
    assert json.loads((tmp_path / "models" / "unet_adversarial.json").read_text())["variant"] == "adversarial"

    history = pd.read_csv(tmp_path / "plots" / "finetune.csv")
    assert history["epoch"].tolist() == [0, 1, 2]  # epoch 0 = the starting model
    assert history["val/dice"][0] == pytest.approx(metrics["start"]["val_dice"], abs=1e-5)
    assert {"gan/d_loss", "gan/g_adv", "train/loss", "train/g_loss"} <= set(history.columns)
    for picture in ("curves.png", "val_overlays.png"):
        assert (tmp_path / "reports" / "finetune" / picture).read_bytes()[:4] == b"\x89PNG"
    assert not (tmp_path / "checkpoints" / "finetune").exists()  # removed once the outputs exist

    client = client_for(tmp_path)
    experiment = client.get_experiment_by_name("ganseg")
    run = next(r for r in client.search_runs([experiment.experiment_id]) if r.data.tags.get("ganseg.stage") == "finetune")
    assert run.data.metrics["best/val_dice"] == pytest.approx(metrics["val"]["dice"], abs=1e-6)
    assert run.data.metrics["start/val_dice"] == pytest.approx(metrics["start"]["val_dice"], abs=1e-6)
    assert "gan/d_loss" in run.data.metrics and run.data.params["finetune.discriminator.kind"] == "patchgan"
    versions = client.search_model_versions("name = 'ganseg-unet'")
    assert [v.tags["variant"] for v in versions] == ["adversarial"]
    assert versions[0].run_id == run.info.run_id


def test_semi_supervised_mode_uses_the_unlabeled_folder_and_hidden_labels(tmp_path, monkeypatch, no_model_logging):
    monkeypatch.chdir(tmp_path)
    _project(tmp_path)
    unlabeled = write_pair_folder(tmp_path / "data" / "prepared" / "unlabeled", 6, 32, seed=7)
    manifest = pd.read_csv(unlabeled / MANIFEST)[["pair_id", "image", "content_hash"]]  # images only, as prepare writes
    manifest.to_csv(unlabeled / MANIFEST, index=False)
    blocks = _merge(TINY, {"finetune": {"discriminator": {"kind": "pixel"}, "unlabeled": {
        "enabled": True, "labeled_fraction": 0.5, "warmup_steps": 1}}})

    result = _finetune(tmp_path, blocks)
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "metrics" / "finetune.json").read_text())
    assert metrics["data"]["labeled_pairs"] == 4 and metrics["data"]["hidden_label_pairs"] == 4
    assert metrics["semi_supervised"]["enabled"] is True
    assert metrics["semi_supervised"]["unlabeled_images"] == 6 + 4
    history = pd.read_csv(tmp_path / "plots" / "finetune.csv").set_index("epoch")
    assert history.loc[1, "semi/loss"] == 0  # the warm-up epoch: D learns first
    assert history.loc[2, "semi/loss"] > 0 and history.loc[2, "semi/trusted_fraction"] > 0


def _empty_mask_project(root: Path) -> Path:
    """Pairs without foreground, and a start model that predicts none: val Dice 1, unbeatable."""
    rng = np.random.default_rng(0)
    for split, count in (("train", 6), ("val", 3)):
        folder = root / "data" / "prepared" / split
        (folder / "images").mkdir(parents=True)
        (folder / "masks").mkdir()
        rows = []
        for index in range(count):
            pair_id = f"{split}_{index}"
            save_image(folder / "images" / f"{pair_id}.png", rng.integers(0, 255, (32, 32, 1), dtype=np.uint8))
            save_mask(folder / "masks" / f"{pair_id}.png", np.zeros((32, 32), np.uint8), 1)
            rows.append({"pair_id": pair_id, "image": f"images/{pair_id}.png", "mask": f"masks/{pair_id}.png",
                         "content_hash": pair_id})
        pd.DataFrame(rows).to_csv(folder / MANIFEST, index=False)
    torch.manual_seed(0)
    network = UNet(UNetConfig(depth=2, base_width=4))
    with torch.no_grad():
        network.outc.bias.fill_(-30.0)
    path = root / "models" / "unet_synthetic.pt"
    save_unet(path, network, image_size=32, meta={"variant": "synthetic"})
    return path


@pytest.mark.parametrize("epochs", [0, 2])
def test_keeps_the_starting_weights_when_fine_tuning_cannot_beat_them(tmp_path, monkeypatch, no_model_logging, epochs):
    monkeypatch.chdir(tmp_path)
    start = _empty_mask_project(tmp_path)
    blocks = _merge(TINY, {"finetune": {"epochs": epochs, "lr": 0.05, "adv_weight": 1.0}})

    result = _finetune(tmp_path, blocks)
    assert result.exit_code == 0, result.output
    assert "kept the starting weights" in result.output
    metrics = json.loads((tmp_path / "metrics" / "finetune.json").read_text())
    assert metrics["kept_start"] is True and metrics["best_epoch"] == 0 and metrics["epochs_run"] == epochs
    assert metrics["start"]["val_dice"] == 1.0 and metrics["val"]["dice"] == 1.0
    assert "starting weights are kept" in metrics["note"]
    written = read_model_file(tmp_path / "models" / "unet_adversarial.pt")
    original = read_model_file(start)
    assert written["meta"]["kept_start"] is True and written["meta"]["variant"] == "adversarial"
    assert all(torch.equal(written["state_dict"][k], v) for k, v in original["state_dict"].items())


def test_a_killed_run_resumes_to_the_same_model(tmp_path, monkeypatch, no_model_logging):
    from ganseg.training.history import HistoryWriter

    blocks = _merge(TINY, {"finetune": {"unlabeled": {"enabled": True, "source": "train", "warmup_steps": 0},
                                        "objective": {"image_pool": 4, "instance_noise": 0.2}}})
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    for root in (straight, killed):
        root.mkdir()
        _project(root)

    monkeypatch.chdir(straight)
    assert _finetune(straight, blocks).exit_code == 0

    class KilledAfterFirstEpoch(HistoryWriter):
        def write(self, rows):
            raise KeyboardInterrupt("simulated kill")

    monkeypatch.chdir(killed)
    monkeypatch.setattr("pipelines.finetune.HistoryWriter", KilledAfterFirstEpoch)
    interrupted = _finetune(killed, blocks)
    assert interrupted.exit_code == 130
    assert (killed / "checkpoints" / "finetune" / "last.pt").is_file()
    assert not (killed / "models" / "unet_adversarial.pt").exists()

    monkeypatch.setattr("pipelines.finetune.HistoryWriter", HistoryWriter)
    resumed = _finetune(killed, blocks)
    assert resumed.exit_code == 0, resumed.output
    assert "resuming from checkpoints/finetune/last.pt after epoch 1" in resumed.output
    assert pd.read_csv(killed / "plots" / "finetune.csv")["epoch"].tolist() == [0, 1, 2]
    expected = read_model_file(straight / "models" / "unet_adversarial.pt")["state_dict"]
    got = read_model_file(killed / "models" / "unet_adversarial.pt")["state_dict"]
    assert all(torch.equal(got[name], tensor) for name, tensor in expected.items())
    assert json.loads((killed / "metrics" / "finetune.json").read_text())["val"] == \
        json.loads((straight / "metrics" / "finetune.json").read_text())["val"]


def test_finetune_trains_at_the_start_models_patch(tmp_path, monkeypatch, no_model_logging):
    """finetune.patch_size auto: the patch the start model was trained at, even where the images
    are smaller (they are padded), recorded in the fine-tuned model."""
    monkeypatch.chdir(tmp_path)
    _project(tmp_path)
    tiny_model_file(tmp_path / "models" / "unet_synthetic.pt", seed=0, image_size=64)
    result = _finetune(tmp_path, TINY)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    finetuned = next((tmp_path / "models").glob("unet_adversarial*.pt"))
    assert read_model_file(finetuned)["image_size"] == 64