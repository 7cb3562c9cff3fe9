"""The segmentation GAN's losses, plugged into the augment stage's GAN loss interface.

Supervised part. :class:`SegmentationTask` is a :class:`ganseg.gan.tasks.GanTask`: the U-Net
is the generator, the discriminator judges (image, mask) pairs, real = (image, ground-truth
mask), fake = (image, predicted soft mask). :class:`ganseg.gan.trainer.GanLoss` built with
this task gives the discriminator loss (objective + penalties, instance noise, image pool)
and the generator loss ``adv_weight x adversarial + seg_weight x segmentation`` unchanged.

Semi-supervised part (:class:`SemiSupervisedLoss`, after Hung et al. 2018). For unlabeled
images the U-Net's prediction is judged by the same discriminator; the U-Net gets

    unlabeled.adv_weight x adversarial loss            (look like a ground-truth mask)
  + unlabeled.self_training_weight x self-training loss (agree with its own hard labels on
                                                          the pixels D trusts)

where a pixel is trusted when the discriminator's confidence (:func:`confidence_map`) there
exceeds ``confidence_threshold``. The discriminator itself only learns from labelled pairs,
so its confidence stays anchored to ground truth.

Encodings: images enter the discriminator in [-1, 1]; masks as channels in [-1, 1]: the
ground truth as ``ganseg.gan.data.encode_masks`` writes it (one channel when binary, K one-hot
channels otherwise), predictions as ``2 p - 1`` of their sigmoid / softmax probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ganseg.gan.data import encode_masks
from ganseg.gan.losses import GanLoss, GanObjective, Logits, Stats
from ganseg.training.dice import logits_to_labels
from ganseg.training.losses import SegmentationLoss


@dataclass
class LabeledBatch:
    images: torch.Tensor  # (B, C, H, W) float in [0, 1], the U-Net's input convention
    labels: torch.Tensor | None  # (B, H, W) long class per pixel; None for unlabeled images

    def __len__(self) -> int:
        return self.images.shape[0]


def soft_masks(logits: torch.Tensor) -> torch.Tensor:
    """(B, K, H, W) logits -> probabilities (B, Cm, H, W): sigmoid when K = 1, else softmax."""
    return torch.sigmoid(logits) if logits.shape[1] == 1 else torch.softmax(logits, dim=1)


def pair_inputs(images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Images (B, C, H, W) in [0, 1] and encoded masks (B, Cm, H, W) in [-1, 1] -> the stacked
    pair (B, C + Cm, H, W) in [-1, 1], image channels first."""
    return torch.cat([images * 2 - 1, masks.to(images.dtype)], dim=1)


class SegmentationTask:
    """The U-Net as a GAN generator (see the module docstring); ``generate`` returns logits."""

    def __init__(self, criterion: SegmentationLoss, num_classes: int, seg_weight: float = 1.0):
        self.criterion = criterion
        self.num_classes = num_classes
        self.seg_weight = seg_weight

    def generate(self, generator: nn.Module, batch: LabeledBatch) -> torch.Tensor:
        return generator(batch.images)  # (B, K, H, W) logits

    def real_inputs(self, batch: LabeledBatch) -> torch.Tensor:
        return pair_inputs(batch.images, encode_masks(batch.labels, self.num_classes))

    def fake_inputs(self, batch: LabeledBatch, generated: torch.Tensor) -> torch.Tensor:
        return pair_inputs(batch.images, soft_masks(generated.float()) * 2 - 1)

    def image_channels(self, batch: LabeledBatch) -> slice:
        return slice(0, batch.images.shape[1])

    def generator_loss(self, batch: LabeledBatch, generated: torch.Tensor) -> tuple[torch.Tensor, Stats]:
        loss, stats = self.criterion(generated, batch.labels)
        return self.seg_weight * loss, {f"train/{name}": value for name, value in stats.items()}


def confidence_map(objective: GanObjective, logits: Logits, size: tuple[int, int]) -> torch.Tensor:
    """Discriminator logits (B, 1, h, w) -> confidence in [0, 1] per pixel, (B, H, W).

    A patch map is up-sampled bilinearly to ``size``, then squashed by the objective's own
    :meth:`~ganseg.gan.losses.GanObjective.confidence` (0.5 at its decision boundary). A
    multi-scale discriminator's maps are each made so, then averaged (every scale counts equally).
    """
    if not isinstance(logits, torch.Tensor):
        return torch.stack([confidence_map(objective, scale, size) for scale in logits]).mean(dim=0)
    logits = logits.detach().float()  # a weight, never a path for gradients
    if tuple(logits.shape[-2:]) != tuple(size):
        logits = F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)
    return objective.confidence(logits)[:, 0]  # (B, H, W)


def self_training_loss(logits: torch.Tensor, trusted: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of ``logits`` (B, K, H, W) towards their own hard labels, averaged over
    the ``trusted`` pixels (B, H, W) bool; 0 (with a graph) when no pixel is trusted."""
    logits = logits.float()
    pseudo = logits_to_labels(logits.detach()).long()  # (B, H, W)
    if logits.shape[1] == 1:
        per_pixel = F.binary_cross_entropy_with_logits(logits[:, 0], pseudo.float(), reduction="none")
    else:
        per_pixel = F.cross_entropy(logits, pseudo, reduction="none")
    weight = trusted.float()
    return (per_pixel * weight).sum() / weight.sum().clamp_min(1.0)


class SemiSupervisedLoss:
    """The unlabeled terms of the U-Net's loss (see the module docstring)."""

    def __init__(
        self,
        gan_loss: GanLoss,
        adv_weight: float = 0.001,
        self_training_weight: float = 0.1,
        confidence_threshold: float = 0.2,
    ):
        self.gan_loss = gan_loss
        self.adv_weight = adv_weight
        self.self_training_weight = self_training_weight
        self.confidence_threshold = confidence_threshold

    def __call__(
        self, unet: nn.Module, discriminator: nn.Module, images: torch.Tensor, step: int
    ) -> tuple[torch.Tensor, Stats]:
        """``images``: (B, C, H, W) float in [0, 1] without labels -> (loss, ``semi/`` stats)."""
        task, unlabeled = self.gan_loss.task, LabeledBatch(images, None)
        with self.gan_loss.autocast():
            logits = task.generate(unet, unlabeled)  # (B, K, H, W)
            fake_inputs = task.fake_inputs(unlabeled, logits)
            d_logits = self.gan_loss.judge(discriminator, fake_inputs, step, unlabeled)  # (B, 1, h, w)
        adversarial, _ = self.gan_loss.objective.g_loss(d_logits)
        if self.gan_loss.augment is not None:
            # Translation and cutout move D's map off the prediction's pixels: trust needs a
            # look at the un-augmented pair.
            with torch.no_grad(), self.gan_loss.autocast():
                d_logits = discriminator(fake_inputs.detach())
        confidence = confidence_map(self.gan_loss.objective, d_logits, images.shape[-2:])
        trusted = confidence > self.confidence_threshold  # (B, H, W)
        self_training = self_training_loss(logits, trusted)
        loss = self.adv_weight * adversarial + self.self_training_weight * self_training
        return loss, {
            "semi/loss": loss.detach(),
            "semi/adv": adversarial.detach(),
            "semi/self_training": self_training.detach(),
            "semi/trusted_fraction": trusted.float().mean(),
            "semi/confidence": confidence.mean(),
        }
