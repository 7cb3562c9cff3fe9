"""The model file: a plain dict, atomically written, rebuilt from its own config."""

from __future__ import annotations

import pickle

import pytest
import torch

from ganseg.errors import DataError
from ganseg.models import UNetConfig, build_unet
from ganseg.models.model_file import FORMAT, bare_module, load_unet, read_model_file, save_unet


def test_round_trip_rebuilds_the_same_network(tmp_path):
    config = UNetConfig(in_channels=3, num_classes=3, depth=2, base_width=4, upsampling="transpose")
    model = build_unet(config).eval()
    path = tmp_path / "unet.pt"
    save_unet(path, model, image_size=32, meta={"variant": "real", "val_dice": 0.5})
    loaded = load_unet(path)
    images = torch.rand(2, 3, 32, 32)
    assert torch.equal(loaded(images), model(images))
    assert not loaded.training and loaded.config == config
    data = read_model_file(path)
    assert data["format"] == FORMAT and data["image_size"] == 32
    assert data["config"]["upsampling"] == "transpose" and data["meta"]["variant"] == "real"
    assert [p.name for p in tmp_path.iterdir()] == ["unet.pt"]  # no temporary left behind


def test_resnet_variant_round_trips(tmp_path):
    model = build_unet(UNetConfig(encoder="resnet18", base_width=4)).eval()
    save_unet(tmp_path / "m.pt", model)
    images = torch.rand(1, 1, 32, 32)
    assert torch.equal(load_unet(tmp_path / "m.pt")(images), model(images))


def test_wrappers_are_stripped_before_saving(tmp_path):
    model = build_unet(UNetConfig(depth=1, base_width=2))

    class Compiled(torch.nn.Module):  # what torch.compile's wrapper exposes
        def __init__(self, inner):
            super().__init__()
            self._orig_mod = inner

    assert bare_module(Compiled(model)) is model
    save_unet(tmp_path / "m.pt", Compiled(model))
    assert not any(k.startswith("_orig_mod") for k in read_model_file(tmp_path / "m.pt")["state_dict"])


def test_bad_files_fail_in_one_line(tmp_path):
    with pytest.raises(DataError, match="model file not found"):
        read_model_file(tmp_path / "absent.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a readable model file"):
        read_model_file(tmp_path / "junk.pt")
    torch.save({"state_dict": {}, "config": {}}, tmp_path / "other.pt")
    with pytest.raises(DataError, match="not a ganseg U-Net file"):
        read_model_file(tmp_path / "other.pt")


class Evil:  # a pickled object: weights_only loading must refuse to run its code
    def __reduce__(self):
        return (print, ("pwned",))


def test_pickled_code_is_never_executed(tmp_path, capsys):
    with open(tmp_path / "evil.pt", "wb") as handle:
        pickle.dump({"format": FORMAT, "payload": Evil()}, handle, protocol=2)
    with pytest.raises(DataError):
        read_model_file(tmp_path / "evil.pt")
    assert "pwned" not in capsys.readouterr().out


def test_weights_that_do_not_fit_the_config_are_reported(tmp_path):
    model = build_unet(UNetConfig(depth=2, base_width=4))
    save_unet(tmp_path / "m.pt", model)
    data = read_model_file(tmp_path / "m.pt")
    data["config"]["base_width"] = 8
    torch.save(data, tmp_path / "m.pt")
    with pytest.raises(DataError, match="weights do not fit the stored config"):
        load_unet(tmp_path / "m.pt")
