"""New mask layouts made from the training masks, for the conditional generator to paint.

Each sample starts from one training mask (the *source*) and applies, with albumentations
(nearest-neighbour on labels, so no new label values appear):

- a random flip / 90-degree rotation (the 8 symmetries of the square),
- an affine warp (scale, rotation, translation) with probability ``affine_p``,
- an elastic deformation with probability ``elastic_p`` (nuclei change shape, not just pose),
- a random resized crop with probability ``crop_p`` (zoom into part of the field);

then, with probability ``paste_p``, *combines objects*: up to ``paste_max`` connected
components cut from another training mask (the *donor*) are pasted where they do not overlap
the existing foreground. Sample ``i`` depends only on ``(seed, i)`` and the masks, so any
subset can be regenerated, and the returned description says exactly what produced it.

Training masks have their own sizes; the sampler works on square patches of the GAN's patch
size. :func:`mask_patches` cuts them once, seeded: per training mask as many windows as
patches would tile it (one for a mask of the patch's size), at most
:data:`PATCHES_PER_MASK`, a ``foreground_share`` of them centred on foreground
(:mod:`ganseg.data.patches`). IGNORE pixels (outside the region of interest, padding) become
background there: a synthetic mask is a plain label map, and its image is painted everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import albumentations as A
import numpy as np
import torch
from scipy import ndimage

from ganseg.data.pairs import IGNORE
from ganseg.data.patches import PatchPlan, cut

# Enough windows to show a large mask's layouts, few enough that the pool stays small
# (670 masks x 16 patches of 256 px: 0.7 GB would be too many; 16 of 128 px: 176 MB).
PATCHES_PER_MASK = 16


@dataclass(frozen=True)
class MaskSamplerSettings:
    flips: bool = True
    affine_p: float = 0.7
    scale: tuple[float, float] = (0.85, 1.15)
    rotate: float = 45.0  # degrees, either way
    translate: float = 0.1  # fraction of the side, either way
    elastic_p: float = 0.5
    elastic_alpha: float = 1.0  # displacement, as a fraction of the side
    elastic_sigma: float = 0.08  # smoothness, as a fraction of the side
    crop_p: float = 0.2
    crop_scale: tuple[float, float] = (0.6, 1.0)
    paste_p: float = 0.5
    paste_max: int = 3


@dataclass(frozen=True)
class SampledMask:
    labels: np.ndarray  # (H, W) uint8
    source_index: int
    donor_index: int | None
    transform: str  # e.g. "Transpose;Affine(s=1.04,r=-12.0);paste(2)"


@dataclass(frozen=True)
class MaskPatches:
    labels: np.ndarray  # (M, P, P) uint8, no IGNORE
    sources: np.ndarray  # (M,) int: the training mask each patch was cut from


def mask_patches(masks: Sequence[torch.Tensor], size: int, foreground_share: float, seed: int) -> MaskPatches:
    """A seeded pool of ``size`` patches of (H, W) label maps of any sizes (module docstring)."""
    plan = PatchPlan.for_masks(masks, size, foreground_share, seed)
    rng = np.random.default_rng(seed)
    labels, sources = [], []
    for index, mask in enumerate(masks):
        height, width = mask.shape
        count = min(math.ceil(height / size) * math.ceil(width / size), PATCHES_PER_MASK)
        for _ in range(count):
            top, left = plan.window(index, rng)
            patch = cut(mask.cpu(), top, left, plan.size, fill=IGNORE).numpy()
            labels.append(np.where(patch == IGNORE, 0, patch).astype(np.uint8))
            sources.append(index)
    return MaskPatches(np.stack(labels), np.asarray(sources))


def _affine_words(params: dict) -> str:
    scale = params.get("scale", {})
    s = scale.get("x", 1.0) if isinstance(scale, dict) else float(scale)
    return f"Affine(s={s:.2f},r={float(params.get('rotate', 0.0)):.1f})"


class MaskSampler:
    """Sample novel label maps from ``masks`` (N, H, W) uint8, deterministically per index.

    ``sources`` (N,): the training mask each of ``masks`` came from (:class:`MaskPatches`),
    reported as a sample's ``source_index`` / ``donor_index``; None = ``masks`` are the
    training masks themselves.
    """

    def __init__(self, masks: np.ndarray, settings: MaskSamplerSettings, seed: int,
                 sources: np.ndarray | None = None):
        if masks.ndim != 3 or masks.shape[0] == 0:
            raise ValueError(f"MaskSampler needs (N, H, W) masks with N >= 1, got {masks.shape}")
        self.masks = masks.astype(np.uint8)
        self.sources = np.arange(len(masks)) if sources is None else np.asarray(sources)
        self.settings = settings
        self.seed = seed
        size = masks.shape[1]
        cfg = settings
        transforms: list[A.BasicTransform] = []
        if cfg.flips:
            transforms.append(A.SquareSymmetry(p=1.0) if masks.shape[1] == masks.shape[2] else A.D4(p=1.0))
        transforms += [
            A.Affine(scale=cfg.scale, rotate=(-cfg.rotate, cfg.rotate),
                     translate_percent=(-cfg.translate, cfg.translate), p=cfg.affine_p),
            A.ElasticTransform(alpha=cfg.elastic_alpha * size, sigma=cfg.elastic_sigma * size, p=cfg.elastic_p),
            A.RandomResizedCrop(size=masks.shape[1:], scale=cfg.crop_scale, ratio=(0.9, 1.1), p=cfg.crop_p),
        ]
        self.compose = A.Compose(transforms, save_applied_params=True, seed=seed)

    def __len__(self) -> int:
        return len(self.masks)

    def sample(self, index: int) -> SampledMask:
        rng = np.random.default_rng([self.seed, index])
        source = int(rng.integers(len(self.masks)))
        mask = self.masks[source]
        self.compose.set_random_seed(int(rng.integers(2**31 - 1)))
        result = self.compose(image=mask, mask=mask)
        labels = np.ascontiguousarray(result["mask"], dtype=np.uint8)
        words = []
        for name, params in result.get("applied_transforms", []):
            words.append(_affine_words(params) if name == "Affine" else name)
        donor = None
        if self.settings.paste_max > 0 and rng.uniform() < self.settings.paste_p:
            donor = int(rng.integers(len(self.masks)))
            labels, pasted = paste_objects(labels, self.masks[donor], self.settings.paste_max, rng)
            words.append(f"paste({pasted})")
        return SampledMask(labels, int(self.sources[source]), None if donor is None else int(self.sources[donor]),
                           ";".join(words) or "identity")


def paste_objects(
    labels: np.ndarray, donor: np.ndarray, most: int, rng: np.random.Generator, tries: int = 10
) -> tuple[np.ndarray, int]:
    """Paste up to ``most`` connected objects of ``donor`` into free space of ``labels``.

    Objects keep their class. A placement is accepted when the object stays at least one
    pixel away from all foreground; an object that finds no such place in ``tries`` random
    positions is left out, and the returned count says how many were pasted.
    """
    out = labels.copy()
    height, width = out.shape
    components, count = ndimage.label(donor > 0)
    if count == 0:
        return out, 0
    chosen = rng.permutation(np.arange(1, count + 1))[:most]
    pasted = 0
    for component in chosen:
        ys, xs = np.nonzero(components == component)
        top, left = ys.min(), xs.min()
        obj_h, obj_w = ys.max() - top + 1, xs.max() - left + 1
        if obj_h >= height or obj_w >= width:
            continue
        shape = components[top : top + obj_h, left : left + obj_w] == component  # (h, w)
        values = donor[top : top + obj_h, left : left + obj_w][shape]
        blocked = ndimage.binary_dilation(out > 0, iterations=1)  # foreground + 1 px margin
        for _ in range(tries):
            y = int(rng.integers(0, height - obj_h + 1))
            x = int(rng.integers(0, width - obj_w + 1))
            if not blocked[y : y + obj_h, x : x + obj_w][shape].any():
                out[y : y + obj_h, x : x + obj_w][shape] = values
                pasted += 1
                break
    return out, pasted
