"""Test builders: tiny model files, tiny prepared data, registry versions without a training run.

``register_file`` creates a model version the way ``StageRun.log_model`` leaves it (the model
file under ``extra_files/``, tagged with its sha256) without exporting the pytorch flavour,
which takes ~15 s per model on a CPU.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import torch
from mlflow.tracking import MlflowClient

from ganseg.data.provenance import RECORD_KEY, content_hashes, digest
from ganseg.models.model_file import save_unet
from ganseg.models.unet import UNet, UNetConfig
from ganseg.tracking import (
    EXPERIMENT_NAME,
    WEIGHTS_SHA256_TAG,
    _init_store,
    file_sha256,
    tracking_uri,
)

MODEL_NAME = "ganseg-unet"


def tiny_model_file(path: Path, seed: int, channels: int = 1, num_classes: int = 1, image_size: int = 32,
                    trained_on: list[str] | None = None) -> Path:
    """A model file; with ``trained_on`` (content hashes) also its JSON config holding the
    training-image record, as the train stage writes it beside the model file."""
    torch.manual_seed(seed)
    network = UNet(UNetConfig(in_channels=channels, num_classes=num_classes, depth=2, base_width=4))
    save_unet(path, network, image_size=image_size, meta={"variant": path.stem})
    if trained_on is not None:
        record = {"digest": digest(trained_on), "images": sorted(trained_on), "counts": {"train": len(trained_on)}}
        path.with_suffix(".json").write_text(json.dumps({RECORD_KEY: record}))
    return path


def register_file(root: Path, model_file: Path, variant: str, name: str = MODEL_NAME) -> str:
    """Register ``model_file`` as a new version of ``name``; returns the version number."""
    uri = tracking_uri(root)
    experiment_id = _init_store(uri)
    client = MlflowClient(uri, registry_uri=uri)
    run = client.create_run(experiment_id, run_name=f"train {variant}")
    client.set_terminated(run.info.run_id)
    source = Path(root) / "fake_artifacts" / run.info.run_id / "model"
    (source / "extra_files").mkdir(parents=True)
    shutil.copy2(model_file, source / "extra_files" / Path(model_file).name)
    config = Path(model_file).with_suffix(".json")
    if config.is_file():
        shutil.copy2(config, source / "extra_files" / config.name)
    try:
        client.get_registered_model(name)
    except Exception:  # noqa: BLE001 - not registered yet
        client.create_registered_model(name)
    version = client.create_model_version(
        name, source.resolve().as_uri(), run_id=run.info.run_id,
        tags={WEIGHTS_SHA256_TAG: file_sha256(model_file), "variant": variant},
    )
    return str(version.version)


def client_for(root: Path) -> MlflowClient:
    uri = tracking_uri(root)
    return MlflowClient(uri, registry_uri=uri)


__all__ = ["EXPERIMENT_NAME", "MODEL_NAME", "client_for", "register_file", "tiny_model_file"]


def write_pair_folder(folder: Path, count: int, size: int = 32, seed: int = 0, channels: int = 1) -> Path:
    """A pair folder as prepare writes it, from the procedural generator (no validation run)."""
    import numpy as np
    import pandas as pd

    from ganseg.config.prepare import SyntheticSourceConfig
    from ganseg.data.pairs import MANIFEST, save_image, save_mask
    from ganseg.data.synthetic import generate_pair

    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    rows = []
    for index in range(count):
        pair = generate_pair(SyntheticSourceConfig(), size, seed, index)
        pair_id = f"s{seed}_{index:03d}"
        image = pair.image[:, :, None]
        if channels == 3:
            image = np.repeat(image, 3, axis=2)
        save_image(folder / "images" / f"{pair_id}.png", image)
        save_mask(folder / "masks" / f"{pair_id}.png", pair.mask.astype(np.uint8), 1)
        rows.append({"pair_id": pair_id, "image": f"images/{pair_id}.png", "mask": f"masks/{pair_id}.png",
                     "content_hash": hashlib.sha256(image.tobytes()).hexdigest()[:16]})
    pd.DataFrame(rows).to_csv(folder / MANIFEST, index=False)
    return folder


def tiny_project(root: Path, size: int = 32, test_count: int = 6, synthetic: bool = True) -> Path:
    """data/prepared/{train,val,test}, data/synthetic and models/unet_{real,synthetic}.pt under ``root``."""
    for split, count, seed in (("train", 10, 1), ("val", 4, 2), ("test", test_count, 3)):
        write_pair_folder(root / "data" / "prepared" / split, count, size, seed)
    if synthetic:
        write_pair_folder(root / "data" / "synthetic", 8, size, seed=9)
    seen = training_images(root)
    tiny_model_file(root / "models" / "unet_real.pt", seed=0, image_size=size, trained_on=seen)
    tiny_model_file(root / "models" / "unet_synthetic.pt", seed=1, image_size=size, trained_on=seen)
    return root


def training_images(root: Path) -> list[str]:
    """The content hashes of a tiny project's train and val pairs: what its models learned from."""
    prepared = Path(root) / "data" / "prepared"
    return content_hashes(prepared / "train") + content_hashes(prepared / "val")
