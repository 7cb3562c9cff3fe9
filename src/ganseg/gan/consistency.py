"""Mask consistency: do synthetic images respect the masks they were generated from?

A small *reference segmenter* (the project's U-Net, :mod:`ganseg.models.unet`) is trained
briefly on the real training pairs only. Its prediction on each synthetic image is scored
against that image's mask with the metrics library's per-image Dice (:func:`dice_per_image`). For
scale, the same segmenter is scored on real held-out pairs (``reference_dice``): a synthetic
score near the reference means the painted nuclei sit where their masks say, as clearly as
in real images; a much lower score means the generator ignores or blurs its masks.

The segmenter trains on patches of the GAN's patch size (:class:`~ganseg.gan.data.PairSampler`),
and the real held-out pairs it is scored on are patches of that size too (one seeded window
per image, :func:`~ganseg.gan.data.fixed_patches`): the same scale as the synthetic pairs.
IGNORE pixels count in neither the loss nor the Dice.

The number depends on this segmenter (how long it trained, its capacity): compare it
between GAN settings run with the same ``augment.consistency`` block, not across blocks.

The same per-pair score filters the pairs (:func:`fitting_pairs`): a pair is kept when its
Dice reaches a fraction of the reference Dice, a threshold on the segmenter's own scale.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ganseg.data.pairs import IGNORE
from ganseg.gan.data import PairSampler
from ganseg.metrics.segmentation import dice_per_image
from ganseg.models.unet import UNet, UNetConfig
from ganseg.training.checkpoint import TrainState
from ganseg.training.loop import run_steps
from ganseg.training.losses import SegmentationLoss
from ganseg.training.phases import Phase, run_phases


@dataclass(frozen=True)
class ConsistencyResult:
    mask_consistency_dice: float  # mean per-image Dice over synthetic images
    reference_dice: float | None  # the same segmenter on real held-out pairs
    n_synthetic: int
    n_reference: int
    segmenter_steps: int
    pair_dice: torch.Tensor | None = None  # (n_synthetic,) float64, the per-pair scores behind the mean


def train_reference_segmenter(
    images: Sequence[torch.Tensor],  # N x (C, H, W) uint8, real training images, any sizes
    labels: Sequence[torch.Tensor],  # N x (H, W) uint8
    num_classes: int,
    steps: int,
    base_width: int,
    batch_size: int,
    lr: float,
    seed: int,
    device: torch.device,
    patch_size: int,
    foreground_share: float = 0.33,
    label: str | None = "consistency U-Net",
) -> nn.Module:
    """A U-Net fitted for ``steps`` Adam steps (BCE + soft Dice) on flipped/rotated real
    ``patch_size`` patches.

    ``label``: progress over the steps under that name; None = silent.
    """
    torch.manual_seed(seed)
    depth = 3 if patch_size >= 32 and patch_size % 8 == 0 else 2
    model = UNet(UNetConfig(in_channels=images[0].shape[0], num_classes=num_classes, depth=depth,
                            base_width=base_width)).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    criterion = SegmentationLoss("bce_dice")
    # No padding warning of its own: the GAN's sampler has said it of the same images and patch.
    sampler = PairSampler(images, labels, num_classes, batch_size, seed, device, patch_size, foreground_share,
                          augment=True, label=None)

    def segmentation(judge, batch) -> tuple[torch.Tensor, dict]:
        loss, _ = criterion(model((batch.images + 1) / 2), batch.labels)  # U-Net inputs in [0, 1]
        return loss, {"loss": loss.detach()}

    phases = [Phase("seg", model, optimizer, [segmentation])]

    def batches(start: int):
        model.train()
        while True:
            yield sampler.next()

    # The one training loop, as every trainer; one interval (the loss mean) per 25 steps.
    run_steps(TrainState(modules={"unet": model}, optimizers={"unet": optimizer}), steps=steps,
              interval=min(25, max(steps, 1)), batches=batches,
              step_fn=lambda batch, step: run_phases(phases, batch, step, None)[0],
              at_interval=lambda state, means, timing: {"step": state.step, **means},
              progress=None if label is not None else False, label=label or "consistency U-Net")
    return model.eval()


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, num_classes: int, device: torch.device,
            batch_size: int = 64) -> torch.Tensor:
    """(N, C, H, W) uint8 -> (N, H, W) int64 labels."""
    out = []
    for start in range(0, len(images), batch_size):
        logits = model(images[start : start + batch_size].to(device).float() / 255.0).float()
        out.append((logits[:, 0] > 0).long() if num_classes == 1 else logits.argmax(1))
    return torch.cat(out).cpu()


def pair_dice(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, num_classes: int,
              device: torch.device) -> torch.Tensor:
    """(N,) float64: the per-image Dice (metrics library: the evaluate stage's ``dice``) of the
    model's prediction on each image against its labels.

    IGNORE pixels become background in both prediction and truth: true negatives, which no
    foreground Dice counts.
    """
    target = labels.long()
    counted = target != IGNORE
    pred = torch.where(counted, predict(model, images, num_classes, device), 0)
    return dice_per_image(pred, torch.where(counted, target, 0), num_classes).double().cpu()


def mean_dice(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, num_classes: int,
              device: torch.device) -> float:
    """The mean over images of :func:`pair_dice`."""
    return float(pair_dice(model, images, labels, num_classes, device).mean())


def fitting_pairs(scores: torch.Tensor, reference_dice: float, min_relative_dice: float) -> tuple[torch.Tensor, float]:
    """Which pairs fit their masks: ``(keep, threshold)``, ``keep`` a (N,) bool tensor.

    A pair is kept when its score is at least ``min_relative_dice x reference_dice`` (the
    threshold returned); ``min_relative_dice`` 0 keeps every pair.
    """
    threshold = min_relative_dice * reference_dice
    return scores >= threshold, threshold


def mask_consistency(
    segmenter: nn.Module,
    synthetic_images: torch.Tensor,
    synthetic_labels: torch.Tensor,
    reference_images: torch.Tensor | None,
    reference_labels: torch.Tensor | None,
    num_classes: int,
    device: torch.device,
    steps: int,
) -> ConsistencyResult:
    reference = None
    if reference_images is not None and len(reference_images):
        reference = mean_dice(segmenter, reference_images, reference_labels, num_classes, device)
    scores = pair_dice(segmenter, synthetic_images, synthetic_labels, num_classes, device)
    return ConsistencyResult(
        mask_consistency_dice=float(scores.mean()),
        reference_dice=reference,
        n_synthetic=len(synthetic_images),
        n_reference=0 if reference_images is None else len(reference_images),
        segmenter_steps=steps,
        pair_dice=scores,
    )
