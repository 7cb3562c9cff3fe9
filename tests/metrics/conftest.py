"""Fixtures for the metrics tests: no network, an empty torch hub cache, shared Inception passes.

Inception on CPU costs ~0.3 s per image here, so the image sets are small (8 images each) and
their features are computed once per session and shared.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage

from ganseg.config.prepare import SyntheticSourceConfig
from ganseg.data.synthetic import generate_pair
from ganseg.metrics.inception import extract_features, load_fid_helper_extractor
from tests.metrics.inception_reference import save_transplanted_weights

# The user's real torch hub cache, read before the tests point TORCH_HOME elsewhere.
REAL_TORCH_HUB = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch")) / "hub"

IMAGES_PER_SET = 8
IMAGE_SIZE = 48


class NetworkAccessInTests(RuntimeError):
    """Not an OSError on purpose: code under test must not be able to swallow it."""


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise NetworkAccessInTests(f"a metrics test tried to reach the network: {args[:2]}")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.fixture(autouse=True)
def _empty_torch_home(tmp_path, monkeypatch):
    """No torch-fidelity weights in the hub cache unless a test puts them there."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))


def _synthetic_images(seed: int) -> torch.Tensor:
    cfg = SyntheticSourceConfig()
    images = [generate_pair(cfg, IMAGE_SIZE, seed, index).image for index in range(IMAGES_PER_SET)]
    return torch.from_numpy(np.stack(images))[:, None]  # (N, 1, H, W) uint8


@pytest.fixture(scope="session")
def real_images() -> torch.Tensor:
    return _synthetic_images(seed=11)


@pytest.fixture(scope="session")
def blurred_images(real_images) -> torch.Tensor:
    blurred = ndimage.gaussian_filter(real_images.numpy().astype(np.float64), sigma=(0, 0, 2.0, 2.0))
    return torch.from_numpy(np.clip(np.rint(blurred), 0, 255).astype(np.uint8))


@pytest.fixture(scope="session")
def noised_images(real_images) -> torch.Tensor:
    noise = np.random.default_rng(0).normal(0.0, 2.0, size=real_images.shape)
    return torch.from_numpy(np.clip(np.rint(real_images.numpy() + noise), 0, 255).astype(np.uint8))


@pytest.fixture(scope="session")
def extractor():
    """The default offline extractor (fid-helper's TorchScript weights)."""
    return load_fid_helper_extractor(device="cpu")


@pytest.fixture(scope="session")
def features(extractor, real_images, blurred_images, noised_images) -> dict[str, torch.Tensor]:
    """pool3 features (8, 2048) of each image set, batch size 8; "real_batch3": batch size 3."""
    sets = {"real": real_images, "blurred": blurred_images, "noised": noised_images}
    out = {name: extract_features(images, extractor, batch_size=8) for name, images in sets.items()}
    out["real_batch3"] = extract_features(real_images, extractor, batch_size=3)
    return out


@pytest.fixture(scope="session")
def transplanted_weights(tmp_path_factory) -> Path:
    """torch-fidelity-format weights: fid-helper's pool3 tensors + a random classifier head."""
    return save_transplanted_weights(tmp_path_factory.mktemp("inception"))
