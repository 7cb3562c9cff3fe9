"""A crafted ``.pt`` whose unpickling runs code: given as ``predict --model`` and as a train
checkpoint, it is refused and its payload never runs (every load is ``weights_only=True``)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from pipelines.__main__ import app
from tests.helpers import write_params
from tests.pipelines.test_train_cli import TINY, make_project, train_args

runner = CliRunner()


pytestmark = pytest.mark.usefixtures("single_thread")


class Payload:
    """Unpickling this creates ``sentinel``: proof that arbitrary code ran."""

    def __init__(self, sentinel: Path):
        self.sentinel = str(sentinel)

    def __reduce__(self):
        return (open, (self.sentinel, "w"))


def _write_malicious(path: Path, sentinel: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:  # a torch.save-compatible legacy pickle with the payload inside
        pickle.dump({"format": "ganseg-unet/1", "state_dict": Payload(sentinel)}, handle, protocol=2)
    return path




@pytest.mark.reliability
def test_malicious_model_given_to_predict_is_refused_without_running_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sentinel = tmp_path / "PWNED"
    model = _write_malicious(tmp_path / "evil.pt", sentinel)
    inputs = tmp_path / "in"
    inputs.mkdir()
    Image.fromarray(np.zeros((32, 32), dtype=np.uint8)).save(inputs / "a.png")
    params = write_params(tmp_path / "params.yaml", {"common": {"image_size": 32}})
    result = runner.invoke(app, ["predict", "--model", str(model), "--input", str(inputs),
                                 "--output", str(tmp_path / "out"), "--params", str(params)])
    assert result.exit_code != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("error: ") and "evil.pt" in lines[-1], result.stderr
    assert "Traceback" not in result.output
    assert not sentinel.exists()
    assert not (tmp_path / "out" / "masks").exists() or not any((tmp_path / "out" / "masks").iterdir())
    print(f"\nmalicious predict --model: exit {result.exit_code}, '{lines[-1][:90]}', payload ran: {sentinel.exists()}")


@pytest.mark.reliability
def test_malicious_checkpoint_is_not_resumed_and_never_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_project(tmp_path, TINY)
    sentinel = tmp_path / "PWNED"
    _write_malicious(tmp_path / "checkpoints" / "train_real" / "last.pt", sentinel)
    result = runner.invoke(app, train_args("real"))
    assert not sentinel.exists()
    # Either refused with one line naming the file, or ignored (start fresh) with a word on why.
    if result.exit_code != 0:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert lines[-1].startswith("error: ") and "last.pt" in lines[-1], result.stderr
    else:
        assert "last.pt" in result.stderr and (tmp_path / "models" / "unet_real.pt").is_file()
    print(f"\nmalicious train checkpoint: exit {result.exit_code}, payload ran: {sentinel.exists()}")
