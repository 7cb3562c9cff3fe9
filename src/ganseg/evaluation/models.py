"""A trained segmentation model, ready for inference, from a model file or a registry URI.

A model file is the plain dict the train stage writes (:mod:`ganseg.models.model_file`),
read with ``torch.load(weights_only=True)``: nothing is unpickled. A registry URI
(``models:/ganseg-unet@champion`` or ``models:/ganseg-unet/3``) is resolved by
``ganseg.tracking.Registry``, which downloads only the weights and config files stored with
the version (never the pickled MLflow pytorch flavour).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ganseg.errors import GansegError
from ganseg.runtime import autocast

MODEL_URI_PREFIX = "models:/"


@dataclass
class SegmentationModel:
    """An eval-mode network plus what inference needs to know about it."""

    network: nn.Module
    in_channels: int
    num_classes: int  # 1 = binary (one sigmoid map), K >= 2 = K softmax maps
    # Window side it was trained on: its JSON config's patch_size, else the model file's image_size;
    # None when neither is recorded.
    patch_size: int | None
    source: str  # the path or URI it came from
    device: torch.device
    dtype: torch.dtype = torch.float32  # autocast dtype; float32 = none
    registry_version: Any = None  # ganseg.tracking.ModelVersion when loaded from the registry
    config: dict | None = None  # the JSON config stored beside the model file (``<name>.json``), if any

    @torch.no_grad()
    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """float (B, C, H, W) in [0, 1] -> float32 logits (B, K, H, W) on the CPU."""
        with autocast(self.device, self.dtype):
            out = self.network(images.to(self.device, non_blocking=True))
        return out.float().cpu()


def images_to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, C, H, W) -> float (B, C, H, W) in [0, 1], the scaling the U-Net was trained on."""
    return images.float().div_(255.0)


def load_model(
    source: str | Path,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
    registry_root: Path | None = None,
) -> SegmentationModel:
    """Load a model file path or a ``models:/`` URI (of the registry under ``registry_root``,
    default the current folder) for inference on ``device``."""
    text = str(source)
    if text.startswith(MODEL_URI_PREFIX):
        return _load_registered(text, device, dtype, registry_root or Path.cwd())
    return load_model_file(Path(source), device, dtype)


def load_model_file(
    path: Path, device: torch.device, dtype: torch.dtype = torch.float32, source: str | None = None
) -> SegmentationModel:
    """A train-stage model file (``ganseg.models.model_file``) ready for inference on ``device``."""
    from ganseg.models.model_file import load_unet, read_model_config, read_model_file, unet_config_from_dict

    data = read_model_file(Path(path))
    unet = unet_config_from_dict(data["config"])
    config = read_model_config(Path(path))
    patch_size = (config or {}).get("patch_size") or data.get("image_size")
    return SegmentationModel(
        config=config,
        network=load_unet(Path(path), device),
        in_channels=unet.in_channels,
        num_classes=unet.num_classes,
        patch_size=int(patch_size) if patch_size else None,
        source=source or str(path),
        device=device,
        dtype=dtype,
    )


def _load_registered(uri: str, device: torch.device, dtype: torch.dtype, root: Path) -> SegmentationModel:
    from ganseg.tracking import Registry

    registry = Registry(root)
    version = registry.resolve(uri)
    with tempfile.TemporaryDirectory(prefix="ganseg-model-") as folder:
        files = registry.download_model_files(version, Path(folder))
        model = load_model_file(_model_file_in(files, uri), device, dtype, source=f"{uri} (version {version.version})")
    model.registry_version = version
    return model


def _model_file_in(folder: Path, uri: str) -> Path:
    """The weights file among a version's extra files (the ``.pt``; the JSON is its config)."""
    candidates = sorted(p for p in Path(folder).rglob("*") if p.suffix in (".pt", ".pth"))
    if len(candidates) != 1:
        found = ", ".join(p.name for p in Path(folder).rglob("*") if p.is_file()) or "none"
        raise GansegError(f"{uri}: expected one .pt weights file stored with the version, found: {found}")
    return candidates[0]
