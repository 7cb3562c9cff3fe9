"""Where pretrained encoder weights come from: a local file or the torch cache, never the net.

torchvision keeps downloaded weights in ``<torch hub dir>/checkpoints/<file name of the URL>``
(``~/.cache/torch/hub/checkpoints/resnet18-f37072fd.pth`` by default, ``$TORCH_HOME`` moves
it). We look there, and only there, unless the user names a file.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ganseg.errors import ConfigError, DataError


def cached_weights_path(encoder: str) -> Path:
    """The torch-cache file torchvision would have downloaded for ``encoder``."""
    from torchvision import models as tv_models

    enum_name = {"resnet18": "ResNet18_Weights", "resnet34": "ResNet34_Weights",
                 "resnet50": "ResNet50_Weights"}[encoder]
    url = getattr(tv_models, enum_name).DEFAULT.url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def find_pretrained(encoder: str, explicit: Path | None) -> Path | None:
    """An explicit file (which must exist), else the cached file if present, else None."""
    if explicit is not None:
        if not Path(explicit).is_file():
            raise ConfigError(
                f"train.model.pretrained_path: {explicit} does not exist (point it at a torchvision "
                f"{encoder} state dict, or set it to null to look in the torch cache)"
            )
        return Path(explicit)
    cached = cached_weights_path(encoder)
    return cached if cached.is_file() else None


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A torchvision-style state dict, loaded without unpickling code (``weights_only``)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same one-line report
        raise DataError(f"{path}: cannot read pretrained weights ({type(exc).__name__}: {exc})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise DataError(f"{path}: expected a state dict of tensors")
    return state
