"""The evaluate command as dvc runs it, on tiny data: outputs, registry decision, re-run, errors."""

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from ganseg.data.provenance import content_hashes
from ganseg.tracking import Registry
from pipelines.__main__ import app
from tests.evaluation.conftest import _store_template, fresh_store  # noqa: F401 - fixtures
from tests.evaluation.fakes import (
    MODEL_NAME,
    client_for,
    register_file,
    tiny_model_file,
    tiny_project,
)
from tests.helpers import write_params

runner = CliRunner()

FAST = {
    "common": {"image_size": 32},
    "evaluate": {"bootstrap": {"resamples": 300}, "overlays": {"count": 2}, "synthetic_quality": {"enabled": False}},
}


def _evaluate(tmp_path: Path, blocks: dict):
    params = write_params(tmp_path / "params.yaml", blocks)
    return runner.invoke(app, ["evaluate", "--params", str(params)])


def _error_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("warning:")]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and "Traceback" not in result.output
    return lines[0]


def _decision(tmp_path: Path) -> dict:
    """The newest evaluate run's logged decision (evaluate/promotion.json in MLflow)."""
    client = client_for(tmp_path)
    experiment = client.get_experiment_by_name("ganseg")
    runs = [r for r in client.search_runs([experiment.experiment_id], order_by=["attributes.start_time DESC"])
            if r.data.tags.get("ganseg.stage") == "evaluate"]
    folder = client.download_artifacts(runs[0].info.run_id, "evaluate/promotion.json", str(tmp_path))
    decision = json.loads(Path(folder).read_text())
    assert runs[0].data.tags["ganseg.registry.decision"] == decision["action"]
    return decision


def test_evaluate_writes_every_output_promotes_and_a_rerun_changes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tiny_project(tmp_path, synthetic=False)
    versions = {v: register_file(tmp_path, tmp_path / "models" / f"unet_{v}.pt", v) for v in ("real", "synthetic")}

    result = _evaluate(tmp_path, FAST)
    assert result.exit_code == 0, result.output

    metrics = json.loads((tmp_path / "metrics" / "evaluate.json").read_text())
    assert metrics["test_images"] == 6
    for variant in ("real", "synthetic"):
        cell = metrics["variants"][variant]
        assert cell["dice_low"] <= cell["dice"] <= cell["dice_high"]
        assert {"iou", "precision", "recall", "hd95"} <= set(cell)
    diff = metrics["differences"]["synthetic_vs_real"]
    assert diff["dice"] == pytest.approx(metrics["variants"]["synthetic"]["dice"] - metrics["variants"]["real"]["dice"], abs=2e-6)
    best = metrics["best_variant"]
    assert metrics["best_dice"] == max(metrics["variants"][v]["dice"] for v in ("real", "synthetic"))

    reports = tmp_path / "reports" / "evaluate"
    table = pd.read_csv(reports / "per_image.csv")
    assert len(table) == 12 and set(table["variant"]) == {"real", "synthetic"}
    assert table.groupby("variant")["dice"].mean()[best] == pytest.approx(metrics["best_dice"], abs=1e-5)
    for picture in ("chart.png", "overlays/real.png", "overlays/synthetic.png"):
        assert (reports / picture).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (tmp_path / "reports" / "evaluation.md").read_text()
    assert "| real |" in report and "synthetic − real" in report and "evaluate/overlays/real.png" in report

    # Registry: the best model is champion, its decision and score are logged.
    registry = Registry(tmp_path)
    assert registry.alias(MODEL_NAME, "champion").version == versions[best]
    decision = _decision(tmp_path)
    assert decision["action"] == "promoted" and decision["candidate_variant"] == best
    assert "evaluate: registry: promoted" in result.stdout
    assert f"`ganseg-unet@champion` is version {versions[best]} ({best}, this run's best" in report

    client = client_for(tmp_path)
    experiment = client.get_experiment_by_name("ganseg")
    run = next(r for r in client.search_runs([experiment.experiment_id]) if r.data.tags.get("ganseg.stage") == "evaluate")
    assert run.data.tags["ganseg.registry.decision"] == "promoted"
    assert run.data.tags["mlflow.parentRunId"]
    real_run = client.get_model_version(MODEL_NAME, versions["real"]).run_id
    assert run.data.tags["ganseg.evaluated.real.run_id"] == real_run
    assert run.data.metrics[f"eval/{best}/dice"] == pytest.approx(metrics["best_dice"], abs=1e-6)
    assert run.data.metrics["registry/candidate_dice"] == pytest.approx(metrics["best_dice"], abs=1e-6)

    # A forced re-run with nothing new: every output byte-identical, no alias moves, no versions.
    outputs = [tmp_path / "metrics" / "evaluate.json", tmp_path / "reports" / "evaluation.md",
               *sorted(p for p in reports.rglob("*") if p.is_file())]
    before = {p: p.read_bytes() for p in outputs}
    again = _evaluate(tmp_path, FAST)
    assert again.exit_code == 0, again.output
    assert {p: p.read_bytes() for p in outputs} == before
    decision = _decision(tmp_path)
    assert decision["action"] == "kept" and decision["aliases_changed"] == []
    assert registry.alias(MODEL_NAME, "champion").version == versions[best]
    assert registry.alias(MODEL_NAME, "challenger") is None
    assert len(client.search_model_versions(f"name = '{MODEL_NAME}'")) == 2


def test_better_champion_from_elsewhere_keeps_its_alias(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tiny_project(tmp_path, synthetic=False)
    for variant in ("real", "synthetic"):
        register_file(tmp_path, tmp_path / "models" / f"unet_{variant}.pt", variant)
    # The champion: the best of this run's models, registered from another run.
    first = _evaluate(tmp_path, FAST)
    assert first.exit_code == 0, first.output
    best = json.loads((tmp_path / "metrics" / "evaluate.json").read_text())["best_variant"]
    champion = Registry(tmp_path).alias(MODEL_NAME, "champion").version
    # Now this run only has the weaker model: it must become challenger, after re-scoring the champion.
    weaker_variant = next(v for v in ("real", "synthetic") if v != best)
    blocks = {**FAST, "evaluate": {**FAST["evaluate"], "variants": [weaker_variant], "baseline": weaker_variant}}
    weaker = _evaluate(tmp_path, blocks)
    assert weaker.exit_code == 0, weaker.output
    decision = _decision(tmp_path)
    assert decision["action"] == "challenger", decision
    assert decision["champion_dice"] >= decision["candidate_dice"]
    assert Registry(tmp_path).alias(MODEL_NAME, "champion").version == champion
    assert Registry(tmp_path).alias(MODEL_NAME, "challenger").version == decision["candidate_version"]
    report = (tmp_path / "reports" / "evaluation.md").read_text()
    assert f"`ganseg-unet@champion` stays version {champion}" in report and "`ganseg-unet@challenger` is version" in report


def test_champion_trained_on_this_test_split_is_not_compared_on_it(tmp_path, monkeypatch):
    """Issue 18.1: a champion from another split (e.g. another seed) whose training images are
    this run's test images: the registry refuses the comparison and says why in one line."""
    monkeypatch.chdir(tmp_path)
    tiny_project(tmp_path, synthetic=False)
    test_images = content_hashes(tmp_path / "data" / "prepared" / "test")
    other = tiny_model_file(tmp_path / "elsewhere" / "unet_real.pt", seed=5, trained_on=test_images[:2])
    champion = register_file(tmp_path, other, "real")
    Registry(tmp_path).set_alias(MODEL_NAME, "champion", champion)
    for variant in ("real", "synthetic"):
        register_file(tmp_path, tmp_path / "models" / f"unet_{variant}.pt", variant)
    result = _evaluate(tmp_path, FAST)
    assert result.exit_code == 0, result.output
    decision = _decision(tmp_path)
    assert decision["action"] == "refused", decision
    assert f"champion v{champion} trained on 2 of this run's test images" in decision["reason"]
    assert decision["champion_dice"] is None  # never scored on its own training images
    assert Registry(tmp_path).alias(MODEL_NAME, "champion").version == champion
    assert "evaluate: registry: refused: the champion" in result.stdout
    report = (tmp_path / "reports" / "evaluation.md").read_text()
    assert "Registry not updated: the champion" in report and "Rule: promote only when" in report


def test_a_finetune_that_kept_its_start_weights_is_one_model_not_two(tmp_path, monkeypatch):
    """Issue 18.7: adversarial = synthetic (same weights) is named once, with no verdict of its own."""
    monkeypatch.chdir(tmp_path)
    tiny_project(tmp_path, synthetic=False)
    models = tmp_path / "models"
    shutil.copy2(models / "unet_synthetic.pt", models / "unet_adversarial.pt")
    config = json.loads((models / "unet_synthetic.json").read_text())
    (models / "unet_adversarial.json").write_text(json.dumps({**config, "started_from": "models/unet_synthetic.pt"}))
    blocks = {**FAST, "evaluate": {**FAST["evaluate"], "variants": ["real", "synthetic", "adversarial"],
                                   "registry": {"enabled": False}}}
    result = _evaluate(tmp_path, blocks)
    assert result.exit_code == 0, result.output
    report = (tmp_path / "reports" / "evaluation.md").read_text()
    assert "`adversarial` = `synthetic` (fine-tuning kept its start weights)" in report
    assert "| adversarial |" not in report and "adversarial −" not in report
    assert "synthetic** = adversarial |" in report  # the one row names both
    assert "evaluate: adversarial: identical weights to synthetic" in result.stdout
    metrics = json.loads((tmp_path / "metrics" / "evaluate.json").read_text())
    assert metrics["identical_weights"] == {"adversarial": "synthetic"}
    assert metrics["test_images_seen_in_training"] == {"real": 0, "synthetic": 0, "adversarial": 0}


def test_missing_variant_is_an_error_or_reported(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tiny_project(tmp_path, synthetic=False)
    blocks = {**FAST, "evaluate": {**FAST["evaluate"], "variants": ["real", "synthetic", "adversarial"]}}
    result = _evaluate(tmp_path, blocks)
    assert result.exit_code == 1
    line = _error_line(result)
    assert "unet_adversarial.pt" in line and "evaluate.variants" in line and "on_missing" in line
    assert not (tmp_path / "metrics" / "evaluate.json").exists()

    blocks["evaluate"]["on_missing"] = "skip"
    result = _evaluate(tmp_path, blocks)
    assert result.exit_code == 0, result.output
    report = (tmp_path / "reports" / "evaluation.md").read_text()
    assert "`adversarial` not evaluated" in report
    assert set(json.loads((tmp_path / "metrics" / "evaluate.json").read_text())["variants"]) == {"real", "synthetic"}


def test_model_for_other_data_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tiny_project(tmp_path, synthetic=False)
    tiny_model_file(tmp_path / "models" / "unet_synthetic.pt", seed=1, channels=3)
    result = _evaluate(tmp_path, FAST)
    assert result.exit_code == 1
    assert "unet_synthetic.pt: model takes 3-channel images but common.channels is 1" in _error_line(result)


def test_untracked_run_still_writes_outputs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tiny_project(tmp_path, synthetic=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # nothing listens
    result = _evaluate(tmp_path, FAST)
    assert result.exit_code == 0, result.output
    assert "registry not updated" in result.stderr
    assert "Registry not updated: registry unavailable" in (tmp_path / "reports" / "evaluation.md").read_text()


@pytest.mark.parametrize("mirror", [True, False])
def test_mirroring_setting_reaches_every_segmentation_and_the_report(tmp_path, monkeypatch, mirror):
    import pipelines.evaluate as stage

    monkeypatch.chdir(tmp_path)
    tiny_project(tmp_path, synthetic=False)
    settings = []
    real_predict = stage.predict_labels

    def recording_predict(*args, **kwargs):
        settings.append(kwargs.get("mirror"))
        return real_predict(*args, **kwargs)

    monkeypatch.setattr(stage, "predict_labels", recording_predict)
    result = _evaluate(tmp_path, {**FAST, "evaluate": {**FAST["evaluate"], "mirror": mirror}})
    assert result.exit_code == 0, result.output
    assert settings and set(settings) == {mirror}, settings
    report = (tmp_path / "reports" / "evaluation.md").read_text()
    assert ("test-time mirroring" in report) is mirror


@pytest.mark.slow
def test_synthetic_quality_reports_fid_kid_with_n_and_is_reason(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tiny_project(tmp_path, synthetic=True)
    blocks = {**FAST, "evaluate": {**FAST["evaluate"], "registry": {"enabled": False}, "synthetic_quality": {
        "max_images": 8, "kid_subset_size": 4, "kid_subsets": 5, "batch_size": 8}}}
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))  # no IS weights here, whatever the machine has
    result = _evaluate(tmp_path, blocks)
    assert result.exit_code == 0, result.output
    synthetic = json.loads((tmp_path / "metrics" / "evaluate.json").read_text())["synthetic"]
    assert synthetic["n_real"] == 8 and synthetic["n_synthetic"] == 8 and synthetic["reference_n"] == 8
    assert synthetic["fid"] > 0 and synthetic["inception_score"] is None
    assert 0 <= synthetic["mask_consistency_dice"] <= 1 and synthetic["mask_consistency_n"] == 8
    report = (tmp_path / "reports" / "evaluation.md").read_text()
    assert "- inception_score: not computed: " in report  # too few images here, or no weights
    assert "| synthetic vs real train | 8 vs 8 |" in report
