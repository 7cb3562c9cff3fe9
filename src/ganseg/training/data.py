"""Training data in memory: decoded once, cut into patches, augmented per sample, mixed real
+ synthetic.

Images keep their own sizes; each sample is a random patch of ``patch_size`` cut from one of
them (:mod:`ganseg.data.patches`: a share centred on foreground, padding where the image is
smaller), then augmented. Without a patch size a sample is the whole image (pairs of one size).

Randomness lives in one place: :class:`EpochSampler` draws, from ``(seed, epoch)`` alone, the
order of the epoch's samples and one augmentation seed per sample. The data set applies the
augmentation with generators seeded from that number. So an epoch's batches are the same
whatever the worker count, the process count (DDP shards the same global order) or whether the
run was resumed: a resumed run repeats exactly what the uninterrupted run would have done.

Real + synthetic mix (``synthetic_ratio`` r): every epoch draws all real pairs once plus
round(r x real) synthetic pairs, shuffled together. The synthetic draw walks a fresh
permutation of the synthetic pool each epoch (wrapping into further permutations when the pool
is smaller than the draw), so no synthetic pair repeats before the pool is used up.

Pretrain schedule (:meth:`EpochSampler.pretrain`): the same epoch length, but every sample of a
batch before the switch step is synthetic and every later one real. Each kind walks its own
endless chain of permutations across epochs (synthetic pair k of the run is the k-th item of
that chain), so the synthetic phase visits the whole pool before any pair repeats. The batch of
each sample follows from its position (the DataLoader batches the sampler's order in turn), so
the order is still a function of ``(seed, epoch)`` and the schedule alone.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

import albumentations as A
import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ganseg.config.train import AugmentationConfig
from ganseg.data.patches import PatchPlan, cut_pair

SeededIndex = tuple[int, int]  # (sample index, augmentation seed)


def build_augmentation(cfg: AugmentationConfig) -> A.Compose | None:
    """The albumentations pipeline from the params; None when every probability is 0.

    Geometric transforms move image and mask together (mask: nearest neighbour, so labels
    stay labels); intensity transforms touch the image only. Elastic deformation follows the
    U-Net paper's advice for few training images. Borders are filled by reflection so that a
    rotated image shows no black corners the network would learn to ignore.
    """
    transforms: list[A.BasicTransform] = []

    def add(transform: type[A.BasicTransform], p: float, **settings) -> None:
        if p > 0:  # left out at 0: no transform at all is a None pipeline
            transforms.append(transform(p=p, **settings))

    add(A.HorizontalFlip, cfg.hflip)
    add(A.VerticalFlip, cfg.vflip)
    add(A.RandomRotate90, cfg.rotate90)
    add(A.Affine, cfg.affine.p, scale=cfg.affine.scale, translate_percent=(-cfg.affine.translate, cfg.affine.translate),
        rotate=(-cfg.affine.rotate, cfg.affine.rotate), border_mode=cv2.BORDER_REFLECT_101)
    add(A.ElasticTransform, cfg.elastic.p, alpha=cfg.elastic.alpha, sigma=cfg.elastic.sigma,
        border_mode=cv2.BORDER_REFLECT_101)
    add(A.RandomBrightnessContrast, cfg.brightness_contrast.p, brightness_limit=cfg.brightness_contrast.brightness,
        contrast_limit=cfg.brightness_contrast.contrast)
    if cfg.noise.std > 0:
        add(A.GaussNoise, cfg.noise.p, std_range=(0.0, cfg.noise.std))
    return A.Compose(transforms, seed=0) if transforms else None


class PairDataset(Dataset):
    """In-memory pairs: per image a uint8 ``(C, H, W)`` image and ``(H, W)`` label map (a list,
    sizes may differ, or stacked tensors).

    Indexed by ``(index, seed)`` from :class:`EpochSampler`; returns uint8 ``(C, P, P)`` and
    ``(P, P)`` tensors, P the patch side (scaling to float happens on the device, see
    :func:`batch_to_device`). The window and the augmentation are both drawn from ``seed``,
    from separate streams, so a whole-image patch leaves the augmentation as it was.
    """

    def __init__(self, images: Sequence[torch.Tensor], masks: Sequence[torch.Tensor],
                 transform: A.Compose | None = None, patches: PatchPlan | None = None):
        if len(images) != len(masks):
            raise ValueError(f"{len(images)} images but {len(masks)} masks")
        for image, mask in zip(images, masks):
            if image.dtype != torch.uint8 or mask.dtype != torch.uint8:
                raise ValueError("images and masks must be uint8 tensors")
            if image.ndim != 3 or tuple(mask.shape) != tuple(image.shape[1:]):
                raise ValueError(f"an image (C, H, W) and its mask (H, W) do not match: "
                                 f"{tuple(image.shape)} vs {tuple(mask.shape)}")
        if patches is None and len({tuple(image.shape) for image in images}) > 1:
            raise ValueError("images of several sizes need a patch size to be batched")
        self.images = images
        self.masks = masks
        self.transform = transform
        self.patches = patches

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key: SeededIndex | int) -> tuple[torch.Tensor, torch.Tensor]:
        index, seed = key if isinstance(key, tuple) else (key, 0)
        image, mask = self.images[index], self.masks[index]
        if self.patches is not None:
            top, left = self.patches.window(index, np.random.default_rng([seed, 1]))
            image, mask = cut_pair(image, mask, top, left, self.patches.size)
        if self.transform is None:
            return image.contiguous(), mask.contiguous()
        # Both generators albumentations draws from, seeded per sample (see the module doc).
        self.transform.set_random_state(np.random.default_rng(seed), random.Random(seed))
        out = self.transform(image=image.permute(1, 2, 0).numpy(), mask=mask.numpy())
        augmented = np.ascontiguousarray(out["image"])
        if augmented.ndim == 2:  # some OpenCV ops drop a single channel axis
            augmented = augmented[:, :, None]
        return (
            torch.from_numpy(augmented).permute(2, 0, 1).contiguous(),
            torch.from_numpy(np.ascontiguousarray(out["mask"])),
        )


class EpochSampler(Sampler[SeededIndex]):
    """Yields ``(index, augmentation seed)``; see the module docstring for the mix.

    Indices ``0 .. num_real - 1`` are real pairs, ``num_real ..`` synthetic ones (the order of
    :class:`PairDataset` built from ``torch.cat([real, synthetic])``). With ``world_size > 1``
    each rank takes every ``world_size``-th sample of the same global order, padded with its
    first samples to a multiple of ``world_size`` (as ``DistributedSampler`` does).
    """

    def __init__(
        self,
        num_real: int,
        num_synthetic: int = 0,
        synthetic_ratio: float = 0.0,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = True,
    ):
        if num_real < 1:
            raise ValueError("need at least one real pair")
        if synthetic_ratio > 0 and num_synthetic == 0:
            raise ValueError("synthetic_ratio > 0 but there are no synthetic pairs")
        self.num_real = num_real
        self.num_synthetic = num_synthetic
        self.synthetic_per_epoch = round(synthetic_ratio * num_real) if num_synthetic else 0
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.shuffle = shuffle
        self.epoch = 0
        self.until_step: int | None = None  # pretrain: batches of steps 1..until_step are synthetic
        self.batch_size = 1

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def pretrain(self, until_step: int, batch_size: int) -> None:
        """Schedule "pretrain": the batches of steps ``1..until_step`` (1-based, counted from the
        run's first batch) draw synthetic pairs only, every later batch real pairs only.

        ``batch_size``: the DataLoader's (per process), which maps a sample to its step. The
        epoch length (``len``) stays that of the mix, so the run's plan does not change.
        """
        if not self.num_synthetic:
            raise ValueError("the pretrain schedule needs synthetic pairs")
        self.until_step, self.batch_size = until_step, batch_size

    def epoch_order(self, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The global ``(indices, seeds)`` of one epoch, before sharding."""
        if self.until_step is not None:
            return self._pretrain_order(epoch)
        generator = torch.Generator().manual_seed(hash_seed(self.seed, epoch))
        chosen = [torch.arange(self.num_real)]
        if self.synthetic_per_epoch:
            rounds = -(-self.synthetic_per_epoch // self.num_synthetic)  # ceil
            pool = torch.cat([torch.randperm(self.num_synthetic, generator=generator) for _ in range(rounds)])
            chosen.append(self.num_real + pool[: self.synthetic_per_epoch])
        indices = torch.cat(chosen)
        if self.shuffle:
            indices = indices[torch.randperm(len(indices), generator=generator)]
        seeds = torch.randint(0, 2**62, (len(indices),), generator=generator)
        return indices, seeds

    def _pretrain_order(self, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        # Rank r's q-th sample is global position q * world_size + r, in batch q // batch_size:
        # the positions before the switch are a prefix of the epoch, and of the whole run. The
        # order is made at the sharded length (a multiple of world_size), so no sample is padded
        # in from the other phase.
        total = len(self) * self.world_size
        per_epoch = -(-len(self) // self.batch_size)  # batches per epoch (drop_last off)

        def synthetic_positions(e: int) -> int:
            return min(max(self.until_step - e * per_epoch, 0) * self.batch_size * self.world_size, total)

        switch_epoch = self.until_step // per_epoch
        synthetic_before = min(epoch * total, switch_epoch * total + synthetic_positions(switch_epoch))
        synthetic_now = synthetic_positions(epoch)
        synthetic = self.num_real + self._walk(self.num_synthetic, synthetic_before, synthetic_now, stream=1)
        real = self._walk(self.num_real, epoch * total - synthetic_before, total - synthetic_now, stream=2)
        generator = torch.Generator().manual_seed(hash_seed(self.seed, epoch))
        return torch.cat([synthetic, real]), torch.randint(0, 2**62, (total,), generator=generator)

    def _walk(self, size: int, start: int, count: int, stream: int) -> torch.Tensor:
        """Items ``start .. start + count`` of an endless chain of permutations of ``range(size)``."""
        if count == 0:
            return torch.empty(0, dtype=torch.long)
        first, last = start // size, (start + count - 1) // size
        chain = torch.cat([torch.randperm(size, generator=torch.Generator().manual_seed(hash_seed(self.seed, stream, r)))
                           for r in range(first, last + 1)])
        offset = start - first * size
        return chain[offset : offset + count]

    def _shard(self) -> tuple[torch.Tensor, torch.Tensor]:
        indices, seeds = self.epoch_order(self.epoch)
        padding = -len(indices) % self.world_size
        if padding:
            indices = torch.cat([indices, indices[:padding]])
            seeds = torch.cat([seeds, seeds[:padding]])
        return indices[self.rank :: self.world_size], seeds[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[SeededIndex]:
        indices, seeds = self._shard()
        return iter(zip(indices.tolist(), seeds.tolist()))

    def __len__(self) -> int:
        total = self.num_real + self.synthetic_per_epoch
        return (total + self.world_size - 1) // self.world_size


def seeded_loader(dataset: Dataset, sampler: EpochSampler, *, batch_size: int, num_workers: int,
                  device: torch.device, seed: int) -> DataLoader:
    """The segmenters' training loader: batches in the sampler's order, workers kept across epochs."""
    return DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
        persistent_workers=num_workers > 0, pin_memory=device.type == "cuda",
        # Its own generator: starting an epoch's iterator must not draw from the global RNG
        # (dropout's), or a run resumed inside an epoch would not match an uninterrupted one.
        generator=torch.Generator().manual_seed(seed),
    )


def hash_seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from several integers (numpy's SeedSequence hashing)."""
    return int(np.random.SeedSequence([int(p) & 0xFFFFFFFFFFFFFFFF for p in parts]).generate_state(2, np.uint64)[0] >> 1)


def batch_to_device(
    batch: tuple[torch.Tensor, torch.Tensor],
    device: torch.device,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (B, C, H, W) images and (B, H, W) labels -> float images in [0, 1] and long labels.

    The uint8 -> float conversion runs on the device: a quarter of the bytes cross the bus.
    """
    images, labels = batch
    images = images.to(device, non_blocking=True).float().div_(255.0)
    if memory_format != torch.contiguous_format:
        images = images.contiguous(memory_format=memory_format)
    return images, labels.to(device, non_blocking=True).long()
