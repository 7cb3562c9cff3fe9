"""The model file: a plain dict saved atomically, rebuilt from its own config.

Layout (``torch.save`` of a dict, loadable with ``weights_only=True``)::

    {
      "format": "ganseg-unet/1",
      "config": {...},          # UNetConfig as a dict: enough to rebuild the network
      "image_size": 64,         # side of the patches it was trained at: the sliding window's tile (None when unknown)
      "state_dict": {...},      # CPU tensors of the bare module (no DDP / compile wrappers)
      "meta": {...},            # free-form facts: input convention, epoch, val Dice, variant
    }

Inputs the saved network expects: float32 (B, C, H, W) = uint8 image / 255. Outputs: logits
(B, K, H, W); binary (K = 1): foreground where sigmoid > 0.5 (logit > 0), multi-class: argmax.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ganseg import io
from ganseg.errors import DataError
from ganseg.models import build_unet
from ganseg.models.unet import UNetConfig

FORMAT = "ganseg-unet/1"
INPUT_CONVENTION = "float32 (B, C, H, W) = uint8 image / 255; output logits (B, K, H, W)"

UNET_MODEL_NAME = "ganseg-unet"  # the registered model that train and finetune add versions to


def bare_module(model: nn.Module) -> nn.Module:
    """Strip DistributedDataParallel (``.module``) and torch.compile (``._orig_mod``) wrappers."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def model_file_dict(
    model: nn.Module, image_size: int | None = None, meta: dict[str, Any] | None = None
) -> dict[str, Any]:
    bare = bare_module(model)
    config: UNetConfig = bare.config
    return {
        "format": FORMAT,
        "config": config.as_dict(),
        "image_size": image_size,
        "state_dict": {name: tensor.detach().cpu().clone() for name, tensor in bare.state_dict().items()},
        "meta": {"input": INPUT_CONVENTION, **(meta or {})},
    }


def save_unet(
    path: Path, model: nn.Module, image_size: int | None = None, meta: dict[str, Any] | None = None
) -> None:
    """Write the model file atomically: a kill leaves the previous file (or none), never half."""
    io.torch_save(model_file_dict(model, image_size, meta), Path(path))


def best_epoch_saver(path: Path, model: nn.Module, patch_size: int, variant: str) -> Callable[[Any], None]:
    """``fit``'s ``on_improve`` for train and finetune: the model file of the best epoch so far. Its
    ``meta.patch_size`` is what finetune reads back as the patch its start model was trained at."""
    return lambda state: save_unet(path, model, patch_size, {
        "variant": variant, "epoch": state.best_epoch, "val_dice": state.best_metric, "patch_size": patch_size,
    })


def read_model_file(path: Path) -> dict[str, Any]:
    """The model file's dict, loaded without unpickling code; one-line errors on bad files."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: model file not found (run the train stage first)")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same report
        raise DataError(f"{path}: not a readable model file ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise DataError(f"{path}: not a ganseg U-Net file (format {found!r}, expected {FORMAT!r})")
    return data


def unet_config_from_dict(values: dict[str, Any]) -> UNetConfig:
    known = {f.name for f in fields(UNetConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise DataError(f"model config has unknown keys {unknown}; written by a newer ganseg?")
    return UNetConfig(**values)


def load_unet(path: Path, device: torch.device | str = "cpu") -> nn.Module:
    """Rebuild the network from the file's config, load its weights, return it in eval mode."""
    data = read_model_file(path)
    model = build_unet(unet_config_from_dict(data["config"]))
    try:
        model.load_state_dict(data["state_dict"])
    except RuntimeError as exc:
        raise DataError(f"{path}: weights do not fit the stored config ({str(exc).splitlines()[0]})") from None
    return model.to(device).eval()


def read_model_config(model_path: Path) -> dict | None:
    """The JSON config written beside a model file (``unet_real.json`` beside ``unet_real.pt``:
    the U-Net, the resolved params, the training-image record), or None when there is none."""
    beside = Path(model_path).with_suffix(".json")
    if not beside.is_file():
        return None
    try:
        return json.loads(beside.read_text())
    except (OSError, ValueError):
        raise DataError(f"{beside}: not a readable JSON model config") from None
