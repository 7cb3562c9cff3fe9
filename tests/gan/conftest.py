"""Tiny data and builders for the GAN tests: 32x32 pairs, narrow networks, a few steps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ganseg.config.augment import AugmentConfig
from ganseg.config.prepare import SyntheticSourceConfig
from ganseg.data.synthetic import generate_pair
from ganseg.gan.build import (
    build_gan_objective,
    build_networks,
    build_optimizers,
    build_stabilisers,
)
from ganseg.gan.data import PairSampler
from ganseg.gan.ema import Ema
from ganseg.gan.losses import GanLoss
from ganseg.gan.trainer import GanParts
from ganseg.training.checkpoint import CheckpointManager

SIZE = 32


def toy_pairs(count: int = 12, size: int = SIZE, num_classes: int = 1, seed: int = 0):
    """(N, 1, S, S) uint8 images and (N, S, S) uint8 labels from the procedural generator.

    Multi-class: nuclei in the left half are class 1, in the right half class 2.
    """
    images, labels = [], []
    for index in range(count):
        pair = generate_pair(SyntheticSourceConfig(nuclei_min=2, nuclei_max=5), size, seed, index)
        mask = pair.mask.astype(np.uint8)
        if num_classes > 1:
            mask = mask * np.where(np.arange(size) < size // 2, 1, 2)[None, :].astype(np.uint8)
        images.append(pair.image[None])
        labels.append(mask)
    return torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(labels))


def tiny_config(**overrides) -> AugmentConfig:
    base = {
        "steps": 6,
        "batch_size": 4,
        "log_interval": 2,
        "sample_interval": 2,
        "checkpoint_interval": 2,
        "pix2pix": {"base_channels": 8, "depth": 3},
        "dcgan": {"base_channels": 8, "latent_dim": 8},
        "discriminator": {"base_channels": 8, "layers": 2},
        "channels_last": "off",
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    return AugmentConfig.model_validate(base)


class TinyRun:
    """Everything ``train_gan`` needs for a tiny config, built as the stage builds it."""

    def __init__(self, cfg: AugmentConfig, folder: Path, num_classes: int = 1, seed: int = 0,
                 objective=None):
        torch.manual_seed(seed)
        images, labels = toy_pairs(num_classes=num_classes)
        nets = build_networks(cfg, SIZE, 1, num_classes)
        self.cfg = cfg
        self.g_opt, self.d_opt = build_optimizers(nets.generator, nets.discriminator, cfg)
        self.stabilisers = build_stabilisers(cfg.objective, cfg.steps)
        self.loss = GanLoss(nets.task, objective or build_gan_objective(cfg.objective),
                            self.stabilisers.penalties, self.stabilisers.instance_noise, self.stabilisers.pool,
                            augment=self.stabilisers.augment)
        self.parts = GanParts(nets.generator, nets.discriminator, self.g_opt, self.d_opt,
                              Ema(nets.generator, cfg.ema_decay))
        self.sampler = PairSampler(images, labels, num_classes, cfg.batch_size, seed, torch.device("cpu"), SIZE)
        self.checkpointer = CheckpointManager(Path(folder) / "checkpoints", "test")
        self.logged: list[tuple[str, float, int]] = []

    def log(self, name: str, value: float, step: int) -> None:
        self.logged.append((name, value, step))


@pytest.fixture(autouse=True)
def _single_thread(single_thread):
    """Every test here runs on one torch thread (tests/conftest.py)."""


@pytest.fixture
def tiny_run(tmp_path):
    def make(cfg: AugmentConfig | None = None, **kwargs) -> TinyRun:
        return TinyRun(cfg or tiny_config(), tmp_path, **kwargs)

    return make
