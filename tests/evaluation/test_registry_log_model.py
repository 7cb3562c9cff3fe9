"""The real registration path: StageRun.log_model, then evaluate's look-up and loading."""

import json

import pytest
import torch

from ganseg.evaluation.models import load_model
from ganseg.models.model_file import load_unet
from ganseg.tracking import WEIGHTS_SHA256_TAG, Registry, StageRun, file_sha256
from tests.evaluation.fakes import MODEL_NAME, tiny_model_file


@pytest.mark.slow  # exporting the pytorch flavour takes ~15 s on a CPU
def test_logged_model_is_found_by_its_file_and_loads_from_the_registry(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model_file = tiny_model_file(tmp_path / "models" / "unet_real.pt", seed=2)
    config_file = tmp_path / "models" / "unet_real.json"
    config_file.write_text(json.dumps({"variant": "real"}))
    network = load_unet(model_file)
    example = torch.rand(1, 1, 32, 32)
    with StageRun("train", tmp_path) as run:
        version = run.log_model(network, registered_name=MODEL_NAME, weights_file=model_file, config_file=config_file,
                                input_example=example.numpy(), output_example=network(example).detach().numpy(),
                                tags={"variant": "real"})
    assert version == "1"
    registry = Registry(tmp_path)
    found = registry.versions_of_file(MODEL_NAME, model_file)
    assert [v.version for v in found] == ["1"] and found[0].tags[WEIGHTS_SHA256_TAG] == file_sha256(model_file)
    assert found[0].run_id == run.run_id and found[0].tags["variant"] == "real"
    loaded = load_model(f"models:/{MODEL_NAME}/1", torch.device("cpu"))
    torch.testing.assert_close(loaded.logits(example), network(example).detach())
