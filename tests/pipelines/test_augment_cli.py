"""The augment command as a user runs it, on tiny 32x32 prepared pairs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from ganseg.data import pairs
from ganseg.errors import ConfigError
from ganseg.tracking import StepLog
from pipelines.__main__ import app
from tests.gan.conftest import toy_pairs
from tests.helpers import write_params

runner = CliRunner()

TINY = {
    "steps": 6,
    "batch_size": 4,
    "num_samples": 10,
    "log_interval": 2,
    "sample_interval": 2,
    "checkpoint_interval": 2,
    "grid_samples": 4,
    "channels_last": "off",
    "pix2pix": {"base_channels": 8},
    "discriminator": {"base_channels": 8, "layers": 2},
    "dcgan": {"base_channels": 8, "latent_dim": 8},
    "consistency": {"steps": 3, "base_channels": 4, "batch_size": 4},
    "filter": {"min_relative_dice": 0.0},  # a 3-step reference segmenter's scores say nothing
    "quality": {"fid_kid": False},
}


pytestmark = pytest.mark.usefixtures("single_thread")




def prepared(root: Path, size: int = 32, num_classes: int = 1) -> Path:
    """A prepare-style folder: train/ (12 pairs) and val/ (4 pairs)."""
    images, labels = toy_pairs(16, size=size, num_classes=num_classes)
    for split, chosen in (("train", range(12)), ("val", range(12, 16))):
        folder = root / split
        (folder / "images").mkdir(parents=True)
        (folder / "masks").mkdir()
        rows = []
        for index in chosen:
            pair_id = f"toy_{index:02d}"
            pairs.save_image(folder / "images" / f"{pair_id}.png", images[index, 0].numpy())
            pairs.save_mask(folder / "masks" / f"{pair_id}.png", labels[index].numpy(), num_classes)
            rows.append({"pair_id": pair_id, "image": f"images/{pair_id}.png", "mask": f"masks/{pair_id}.png"})
        pd.DataFrame(rows).to_csv(folder / pairs.MANIFEST, index=False)
    return root


def run_augment(root: Path, augment: dict, common: dict | None = None, data: Path | None = None):
    params = write_params(root / "params.yaml", {"common": {"image_size": 32, **(common or {})},
                                                 "augment": augment})
    args = ["augment", "--params", str(params), "--data", str(data or root / "prepared"),
            "--out", str(root / "synthetic"), "--models", str(root / "models"),
            "--checkpoints", str(root / "checkpoints"), "--reports", str(root / "reports"),
            "--plots", str(root / "plots" / "augment.csv"), "--metrics", str(root / "metrics.json")]
    return runner.invoke(app, args)


def error_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("warning")]
    assert lines and lines[-1].startswith("error: "), result.output
    assert "Traceback" not in result.output
    return lines[-1]


@pytest.mark.slow
def test_writes_pairs_manifest_grids_metrics_and_registers_the_generator(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    prepared(tmp_path / "prepared")
    result = run_augment(tmp_path, TINY)
    assert result.exit_code == 0, result.output

    manifest = pd.read_csv(tmp_path / "synthetic" / "manifest.csv", dtype=str)
    assert len(manifest) == 10
    assert {"pair_id", "image", "mask", "source_pair_id", "transform", "generator_sha256",
            "consistency_dice"} <= set(manifest.columns)
    assert set(manifest["source_pair_id"]) <= {f"toy_{i:02d}" for i in range(12)}
    # No registry version in the data (it grows every run); the weights' hash leads to it.
    assert "generator_version" not in manifest.columns
    loaded = pairs.load_pairs(tmp_path / "synthetic", 1, 1)  # the train stage's reader
    assert len(loaded) == 10 and loaded.uniform_size == (32, 32)
    assert set(torch.cat([mask.flatten() for mask in loaded.masks]).unique().tolist()) <= {0, 1}
    config = json.loads((tmp_path / "synthetic" / "config.json").read_text())
    assert config["augment"]["steps"] == 6 and config["augment"]["patch_size"] == 32  # "auto", resolved
    assert "augment: patch size 32 px (auto; " in result.output

    grids = sorted(p.name for p in (tmp_path / "reports" / "samples").glob("*.png"))
    assert grids == [f"step_{s:06d}.png" for s in (0, 2, 4, 6)]
    assert Image.open(tmp_path / "reports" / "synthetic_grid.png").mode == "RGB"
    history = pd.read_csv(tmp_path / "plots" / "augment.csv")
    assert history["step"].tolist() == [2, 4, 6] and "gan/d_loss" in history

    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["steps_run"] == 6 and metrics["num_samples"] == 10 and metrics["guard_restarts"] == 0
    assert math.isfinite(metrics["final"]["gan/d_loss"]) and math.isfinite(metrics["final"]["gan/g_pixel"])
    assert metrics["fid"] is None and "switched off" in metrics["fid_kid_note"]
    consistency = metrics["mask_consistency"]
    assert 0 <= consistency["dice"] <= 1 and consistency["n_synthetic"] == 10 and consistency["n_reference"] == 4

    info = json.loads((tmp_path / "models" / "generator.json").read_text())
    assert info["patch_size"] == 32 and metrics["patch_size"] == 32
    state = torch.load(tmp_path / "models" / "generator.pt", weights_only=True)
    from ganseg.gan.build import generator_from_config

    generator = generator_from_config(info["generator"])
    generator.load_state_dict(state)  # the saved weights rebuild the generator
    assert info["weights_sha256"].startswith(manifest.loc[0, "generator_sha256"])

    from mlflow.tracking import MlflowClient

    versions = MlflowClient().search_model_versions("name='ganseg-generator'")
    assert [str(v.version) for v in versions] == ["1"]
    assert versions[0].tags["weights_sha256"] == info["weights_sha256"]


@pytest.mark.slow
def test_rerun_after_a_kill_resumes_and_matches_an_uninterrupted_run(tmp_path, monkeypatch):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    for root in (straight, killed):
        prepared(root / "prepared")
    monkeypatch.chdir(straight)
    assert run_augment(straight, TINY).exit_code == 0

    monkeypatch.chdir(killed)
    original = StepLog.__call__

    def interrupt_at_step_4(self, name, value, step):
        if step >= 4:
            raise KeyboardInterrupt("signal 15")
        original(self, name, value, step)

    monkeypatch.setattr(StepLog, "__call__", interrupt_at_step_4)
    result = run_augment(killed, TINY)
    assert result.exit_code == 130 and "interrupted" in result.stderr
    assert not (killed / "synthetic").exists()  # nothing half-written
    monkeypatch.setattr(StepLog, "__call__", original)
    result = run_augment(killed, TINY)
    assert result.exit_code == 0, result.output
    assert "resumed from step 4 of 6" in result.output  # checkpointed before step 4's row was logged

    a = json.loads((straight / "models" / "generator.json").read_text())["weights_sha256"]
    b = json.loads((killed / "models" / "generator.json").read_text())["weights_sha256"]
    assert a == b
    uninterrupted = torch.load(straight / "models" / "generator.pt", weights_only=True)
    resumed = torch.load(killed / "models" / "generator.pt", weights_only=True)
    difference = max(float((uninterrupted[k].double() - resumed[k].double()).abs().max()) for k in uninterrupted)
    print(f"\naugment, 6 steps straight vs killed at step 4 and resumed from step 4: "
          f"max abs parameter difference {difference} over {len(uninterrupted)} tensors")
    assert difference == 0.0
    assert not (killed / "checkpoints").exists()  # removed once the outputs were written
    first = np.asarray(Image.open(straight / "synthetic" / "images" / "gan_42_00003.png"))
    second = np.asarray(Image.open(killed / "synthetic" / "images" / "gan_42_00003.png"))
    assert np.array_equal(first, second)
    grids = sorted(p.name for p in (killed / "reports" / "samples").glob("*.png"))
    assert grids == [f"step_{s:06d}.png" for s in (0, 2, 4, 6)]  # grids from before the kill kept


@pytest.mark.slow
def test_changed_params_start_fresh(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    prepared(tmp_path / "prepared")
    original = StepLog.__call__

    def interrupt_at_step_4(self, name, value, step):
        if step >= 4:
            raise KeyboardInterrupt("signal 15")
        original(self, name, value, step)

    with monkeypatch.context() as patch:
        patch.setattr(StepLog, "__call__", interrupt_at_step_4)
        assert run_augment(tmp_path, TINY).exit_code == 130  # leaves the checkpoint of step 4
    assert (tmp_path / "checkpoints" / "last.pt").exists()
    result = run_augment(tmp_path, {**TINY, "lr_d": 0.0001})
    assert result.exit_code == 0 and "written for other params or data" in result.stderr
    assert "starting fresh" in result.stderr
    assert json.loads((tmp_path / "metrics.json").read_text())["steps_run"] == 6


@pytest.mark.slow
def test_dcgan_multiclass_writes_palette_masks(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    prepared(tmp_path / "prepared", num_classes=3)
    result = run_augment(tmp_path, {**TINY, "model": "dcgan", "consistency": {"steps": 0}},
                         common={"num_classes": 3})
    assert result.exit_code == 0, result.output
    mask = Image.open(next((tmp_path / "synthetic" / "masks").glob("*.png")))
    assert mask.mode == "P" and set(np.unique(np.asarray(mask))) <= {0, 1, 2}
    manifest = pd.read_csv(tmp_path / "synthetic" / "manifest.csv")
    assert (manifest["transform"] == "noise").all() and (manifest["generator"] == "dcgan").all()
    assert json.loads((tmp_path / "metrics.json").read_text())["mask_consistency"] is None


@pytest.mark.slow
def test_spade_with_two_scales_and_feature_matching_paints_sampled_masks(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    prepared(tmp_path / "prepared")
    augment = {**TINY, "model": "spade", "spade": {"base_channels": 4, "hidden_channels": 8},
               "discriminator": {"base_channels": 8, "layers": 1, "scales": 2}}
    result = run_augment(tmp_path, augment)
    assert result.exit_code == 0, result.output
    manifest = pd.read_csv(tmp_path / "synthetic" / "manifest.csv", dtype=str)
    assert len(manifest) == 10 and (manifest["generator"] == "spade").all()
    assert set(manifest["source_pair_id"]) <= {f"toy_{i:02d}" for i in range(12)}  # the mask sampler's
    history = pd.read_csv(tmp_path / "plots" / "augment.csv")
    assert (history["gan/g_feature_matching"] > 0).all()

    info = json.loads((tmp_path / "models" / "generator.json").read_text())
    assert info["model"] == "spade" and info["generator"]["kind"] == "spade"
    from ganseg.gan.build import generator_from_config

    generator = generator_from_config(info["generator"])
    generator.load_state_dict(torch.load(tmp_path / "models" / "generator.pt", weights_only=True))
    masks = -torch.ones(2, 1, 32, 32)
    noise = torch.randn(2, info["generator"]["latent_dim"], generator=torch.Generator().manual_seed(0))
    images = generator.eval()(masks, noise)
    assert images.shape == (2, 1, 32, 32) and not torch.equal(images[0], images[1])


@pytest.mark.slow
def test_fid_and_kid_are_reported_with_n(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    prepared(tmp_path / "prepared")
    quality = {"fid_kid": True, "max_images": 8, "kid_subset_size": 4, "kid_subsets": 5, "batch_size": 8}
    result = run_augment(tmp_path, {**TINY, "num_samples": 8, "quality": quality})
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["fid"] > 0 and math.isfinite(metrics["kid"])
    assert (metrics["fid_n_real"], metrics["fid_n_fake"], metrics["kid_subset_size"]) == (8, 8, 4)
    assert metrics["feature_extractor"]


def prepared_mixed(root: Path) -> Path:
    """train/: 8 non-square pairs of their own sizes, one smaller than a 32 px patch; val/: 2."""
    images, labels = toy_pairs(10, size=96)
    sizes = [(40, 90), (70, 33), (96, 50), (20, 24), (64, 64), (45, 80), (33, 96), (90, 41), (50, 70), (38, 38)]
    for split, chosen in (("train", range(8)), ("val", range(8, 10))):
        folder = root / split
        (folder / "images").mkdir(parents=True)
        (folder / "masks").mkdir()
        rows = []
        for index in chosen:
            pair_id, (height, width) = f"mixed_{index:02d}", sizes[index]
            pairs.save_image(folder / "images" / f"{pair_id}.png", images[index, 0, :height, :width].numpy())
            pairs.save_mask(folder / "masks" / f"{pair_id}.png", labels[index, :height, :width].numpy(), 1)
            rows.append({"pair_id": pair_id, "image": f"images/{pair_id}.png", "mask": f"masks/{pair_id}.png"})
        pd.DataFrame(rows).to_csv(folder / pairs.MANIFEST, index=False)
    return root


@pytest.mark.slow
def test_native_size_images_train_on_patches_and_write_pairs_of_the_patch_size(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    prepared_mixed(tmp_path / "prepared")
    quality = {"fid_kid": True, "max_images": 8, "kid_subset_size": 4, "kid_subsets": 5, "batch_size": 8}
    result = run_augment(tmp_path, {**TINY, "quality": quality})
    assert result.exit_code == 0, result.output
    # Shorter sides 20..64, median 40.5: 40 is a side the networks take (3 down-samplings: a multiple of 8).
    assert "augment: patch size 40 px (auto; training images' shorter sides 20..64 px, median 40.5)" in result.output
    assert result.stderr.count("images are smaller than") == 1
    assert ("warning: augment: 3 of 8 images are smaller than the 40 px patch along a side; they are padded "
            "(reflected image, ignored mask)") in result.stderr
    loaded = pairs.load_pairs(tmp_path / "synthetic", 1, 1)
    assert len(loaded) == 10 and loaded.uniform_size == (40, 40)
    manifest = pd.read_csv(tmp_path / "synthetic" / "manifest.csv", dtype=str)
    assert list(manifest.columns[:3]) == ["pair_id", "image", "mask"]
    assert set(manifest["source_pair_id"]) <= {f"mixed_{i:02d}" for i in range(8)}
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["patch_size"] == 40 and (metrics["fid_n_real"], metrics["fid_n_fake"]) == (8, 8)
    assert metrics["mask_consistency"]["n_reference"] == 2

    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    augment_runs = [r for r in runs if "augment.patch_size_resolved" in r.data.params]
    assert [r.data.params["augment.patch_size_resolved"] for r in augment_runs] == ["40"]
    assert augment_runs[0].data.params["augment.patch_size"] == "auto"


def test_missing_prepared_data_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run_augment(tmp_path, TINY, data=tmp_path / "nowhere")
    assert result.exit_code == 1 and "manifest not found" in error_line(result)


def test_unknown_augment_key_is_named(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run_augment(tmp_path, {**TINY, "stepz": 3})
    assert result.exit_code == 1 and "unknown key 'augment.stepz'" in error_line(result)


def test_dcgan_size_rule_names_the_key(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    prepared(tmp_path / "prepared", size=48)
    result = run_augment(tmp_path, {**TINY, "model": "dcgan", "patch_size": 48})
    assert result.exit_code == 1 and "augment.model dcgan needs a power-of-two augment.patch_size" in error_line(result)


# -- the consistency filter, with fake scores (no reference segmenter trained) ---------------
def fake_pairs(count: int) -> list:
    from ganseg.gan.synthesis import SyntheticPair

    return [SyntheticPair(i, np.full((1, 8, 8), i, np.uint8), np.zeros((8, 8), np.uint8), 0, None, "t")
            for i in range(count)]


def fake_fit(reference: float | None) -> dict:
    return {"mask_consistency": {"dice": 0.5, "reference_val_dice": reference, "n_synthetic": 10, "n_reference": 4,
                                 "segmenter": "fake"}}


def test_filter_keeps_exactly_the_pairs_at_or_above_the_fraction_of_the_reference_dice():
    from ganseg.config.augment import FilterConfig
    from pipelines.augment import filter_pairs

    scores = torch.tensor([0.05, 0.95, 0.35, 0.45, 0.41, 0.39, 0.8, 0.0, 0.6, 0.2], dtype=torch.float64)
    kept, kept_scores, selection = filter_pairs(FilterConfig(min_relative_dice=0.5), fake_pairs(10), scores,
                                                fake_fit(0.8))  # threshold 0.4
    assert [pair.index for pair in kept] == [1, 3, 4, 6, 8]
    assert kept_scores.tolist() == [0.95, 0.45, 0.41, 0.8, 0.6]
    assert (selection.scored, selection.kept, selection.dropped) == (10, 5, 5)
    assert selection.threshold == pytest.approx(0.4) and selection.kept_dice == pytest.approx(0.642)
    assert "kept 5 of 10 pairs, dropped 5 with consistency Dice < 0.400 (0.5 x reference 0.800" in selection.describe()
    everything, _, off = filter_pairs(FilterConfig(min_relative_dice=0.0), fake_pairs(10), scores, fake_fit(0.8))
    assert len(everything) == 10 and off.dropped == 0 and off.threshold is None


def test_filter_that_drops_every_pair_is_one_line_naming_the_param():
    from ganseg.config.augment import FilterConfig
    from pipelines.augment import filter_pairs

    scores = torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64)
    with pytest.raises(ConfigError) as info:
        filter_pairs(FilterConfig(min_relative_dice=0.9), fake_pairs(3), scores, fake_fit(0.8))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("augment.filter.min_relative_dice 0.9 dropped all 3 synthetic pairs")
    assert "at most 0.300" in message and "lower it" in message
    with pytest.raises(ConfigError, match="no val/ split"):
        filter_pairs(FilterConfig(min_relative_dice=0.5), fake_pairs(3), scores, fake_fit(None))


def test_manifest_has_the_score_of_every_pair():
    from ganseg.config.augment import AugmentConfig
    from ganseg.config.common import CommonConfig
    from pipelines.augment import synthetic_manifest

    scores = torch.tensor([0.25, 0.5], dtype=torch.float64)
    manifest = synthetic_manifest(fake_pairs(2), ["toy_00"], AugmentConfig(), CommonConfig(), "ab" * 32, scores)
    assert manifest["consistency_dice"].tolist() == [0.25, 0.5]
    unscored = synthetic_manifest(fake_pairs(2), ["toy_00"], AugmentConfig(), CommonConfig(), "ab" * 32, None)
    assert unscored["consistency_dice"].isna().all()


@pytest.mark.slow
def test_stage_writes_only_kept_pairs_and_reports_the_counts(tmp_path, monkeypatch):
    import pipelines.augment as stage

    monkeypatch.chdir(tmp_path)
    prepared(tmp_path / "prepared")
    scores = (torch.arange(10, dtype=torch.float64) + 0.5) / 10  # 0.05 .. 0.95

    def fake_consistency(cfg, common, train, val, synthetic, device):
        assert len(synthetic) == 10
        return fake_fit(0.8), scores

    monkeypatch.setattr(stage, "consistency", fake_consistency)
    result = run_augment(tmp_path, {**TINY, "filter": {"min_relative_dice": 0.5}})  # keeps >= 0.4
    assert result.exit_code == 0, result.output
    assert "augment: filter kept 6 of 10 pairs, dropped 4" in result.output
    manifest = pd.read_csv(tmp_path / "synthetic" / "manifest.csv", dtype={"pair_id": str})
    assert manifest["pair_id"].tolist() == [f"gan_42_{i:05d}" for i in range(4, 10)]
    assert manifest["consistency_dice"].tolist() == pytest.approx([0.45, 0.55, 0.65, 0.75, 0.85, 0.95])
    assert len(list((tmp_path / "synthetic" / "images").glob("*.png"))) == 6
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["num_samples"] == 6
    assert metrics["filter"] == {"scored": 10, "kept": 6, "dropped": 4, "min_relative_dice": 0.5, "threshold": 0.4,
                                 "kept_dice": 0.7}
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    logged = next(r.data.metrics for r in runs if "augment/filter_kept" in r.data.metrics)
    assert (logged["augment/filter_kept"], logged["augment/filter_dropped"]) == (6, 4)

    # Every pair below the bar: one line naming the param, nothing written, nothing registered.
    monkeypatch.setattr(stage, "consistency", lambda *args: (fake_fit(0.8), scores / 10))
    (tmp_path / "again").mkdir()
    again = run_augment(tmp_path / "again", {**TINY, "filter": {"min_relative_dice": 0.5}},
                        data=tmp_path / "prepared")
    assert again.exit_code == 1
    assert error_line(again).startswith("error: augment.filter.min_relative_dice 0.5 dropped all 10 synthetic pairs")
    assert not (tmp_path / "again" / "synthetic").exists() and not (tmp_path / "again" / "models").exists()
