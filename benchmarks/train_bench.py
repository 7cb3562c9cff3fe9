"""U-Net training speed: our step against a naive loop and against the machine's matmul peak.

    .venv/bin/python benchmarks/train_bench.py [--params params.yaml] [--steps 8] [--repeats 5]
                                               [--variants] [--compile]

Everything is measured in one run, in alternating blocks of ``--steps`` iterations, so that a
shared machine whose load changes slows every contender alike; each figure is the median
block. One iteration = one batch of ``train.batch_size`` pairs at ``common.image_size``, one
forward, loss, backward and optimiser step of the U-Net built from the ``train`` block (same
initial weights everywhere).

- peak: a float32 2048x2048 matrix multiply (MKL, `benchmarks/peak.py`) on the same threads: the machine's
  practical FLOP ceiling. bf16 is timed too, to show why ``auto`` stays fp32 on CPU.
- ours: the train stage's step as it runs (:class:`ganseg.training.loop.SegmentationStep` fed
  by :class:`ganseg.training.data.PairDataset`: pairs decoded once, uint8 tensors in memory,
  albumentations per sample, precision and memory format from ``common``/``train`` via
  ``ganseg.runtime``), including the data loading; plus the step alone on a fixed batch.
- naive: the seed tutorials' loop: a Dataset that opens and decodes the PNGs of every pair at
  every step and applies the same albumentations, fp32, NCHW, BCE + Dice, ``.item()`` on the
  loss every step.

Achieved GFLOP/s = FLOPs of one step counted by ``torch.utils.flop_counter.FlopCounterMode``
(convolutions and matmuls, forward + backward) / measured step time.
``--variants`` also times channels_last and bf16 autocast on this device; ``--compile`` times
torch.compile (its one-off compilation is reported separately, not averaged in).
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torch.utils.flop_counter import FlopCounterMode

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "src"))

from benchmarks.peak import matmul_gflops
from ganseg.config import load_params
from ganseg.data import pairs as pair_files
from ganseg.data.pairs import load_pairs, read_manifest, read_mask_labels
from ganseg.data.synthetic import generate_pair
from ganseg.models import UNetConfig, build_unet
from ganseg.runtime import select_device, select_precision
from ganseg.training.data import EpochSampler, PairDataset, build_augmentation
from ganseg.training.hardware import memory_format_for
from ganseg.training.loop import SegmentationStep
from ganseg.training.losses import SegmentationLoss
from ganseg.training.optim import build_optimizer


# -- the naive loop --------------------------------------------------------------------------
class PngPairs(Dataset):
    """The tutorials' dataset: open and decode both PNGs of a pair at every step."""

    def __init__(self, folder: Path, channels: int, num_classes: int, transform):
        self.folder = Path(folder)
        self.rows = read_manifest(self.folder).to_dict("records")
        self.mode = "L" if channels == 1 else "RGB"
        self.num_classes = num_classes
        self.transform = transform

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int):
        row = self.rows[index]
        image = np.asarray(Image.open(self.folder / row["image"]).convert(self.mode))
        mask = read_mask_labels(self.folder / row["mask"], self.num_classes)
        if image.ndim == 2:
            image = image[:, :, None]
        if self.transform is not None:
            out = self.transform(image=image, mask=mask)
            image, mask = out["image"], out["mask"]
        image = torch.as_tensor(np.ascontiguousarray(image), dtype=torch.float32).permute(2, 0, 1) / 255.0
        return image, torch.as_tensor(np.ascontiguousarray(mask), dtype=torch.long)


def naive_dice_loss(probs: torch.Tensor, target: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    inter = 2 * (probs * target).sum(dim=(-1, -2))
    sets = probs.sum(dim=(-1, -2)) + target.sum(dim=(-1, -2))
    return 1 - ((inter + eps) / (sets + eps)).mean()


class NaiveLoop:
    def __init__(self, model: nn.Module, loader: DataLoader, lr: float, weight_decay: float, grad_clip):
        self.model = model
        self.loader = loader
        self.iterator = iter(loader)
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
        self.criterion = nn.BCEWithLogitsLoss()
        self.grad_clip = grad_clip
        self.epoch_loss = 0.0

    def __call__(self) -> None:
        try:
            images, masks = next(self.iterator)
        except StopIteration:
            self.iterator = iter(self.loader)
            images, masks = next(self.iterator)
        logits = self.model(images)
        loss = self.criterion(logits.squeeze(1), masks.float())
        loss = loss + naive_dice_loss(torch.sigmoid(logits.squeeze(1)), masks.float())
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.optimizer.step()
        self.epoch_loss += loss.item()


# -- our loop --------------------------------------------------------------------------------
class OurLoop:
    """The stage's step fed by its in-memory loader (``fixed_batch``: the step alone)."""

    def __init__(self, step: SegmentationStep, loader: DataLoader | None, fixed_batch=None):
        self.step = step
        self.loader = loader
        self.iterator = iter(loader) if loader is not None else None
        self.fixed_batch = fixed_batch

    def __call__(self) -> None:
        if self.fixed_batch is not None:
            self.step(self.fixed_batch)
            return
        try:
            batch = next(self.iterator)
        except StopIteration:
            self.loader.sampler.set_epoch(self.loader.sampler.epoch + 1)
            self.iterator = iter(self.loader)
            batch = next(self.iterator)
        self.step(batch)


def time_block(loop, steps: int, device: torch.device) -> float:
    """Iterations per second over ``steps`` iterations."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        loop()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps / (time.perf_counter() - start)


def step_flops(step: SegmentationStep, batch) -> int:
    with FlopCounterMode(display=False) as counter:
        step(batch)
    return counter.get_total_flops()


def ensure_data(params_path: Path, folder: Path, count: int, image_size: int, channels: int, seed: int) -> Path:
    """data/prepared/train when it exists at the right size; else generated pairs in ``folder``."""
    prepared = REPO / "data" / "prepared" / "train"
    if (prepared / "manifest.csv").is_file():
        first = read_manifest(prepared).iloc[0]
        if Image.open(prepared / first["image"]).size == (image_size, image_size):
            return prepared
    import pandas as pd

    from ganseg.config.prepare import SyntheticSourceConfig

    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(exist_ok=True)
    rows = []
    for index in range(count):
        pair = generate_pair(SyntheticSourceConfig(), image_size, seed, index)
        image = pair.image[:, :, None].repeat(channels, axis=2)
        pair_files.save_image(folder / "images" / f"{pair.pair_id}.png", image)
        pair_files.save_mask(folder / "masks" / f"{pair.pair_id}.png", pair.mask.astype(np.uint8), 1)
        rows.append({"pair_id": pair.pair_id, "image": f"images/{pair.pair_id}.png",
                     "mask": f"masks/{pair.pair_id}.png"})
    pd.DataFrame(rows).to_csv(folder / "manifest.csv", index=False)
    return folder


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=REPO / "params.yaml")
    parser.add_argument("--steps", type=int, default=8, help="iterations per timed block")
    parser.add_argument("--repeats", type=int, default=5, help="alternating blocks per contender")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--variants", action="store_true", help="also time channels_last and bf16")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile")
    args = parser.parse_args(argv)

    params = load_params(args.params)
    common, cfg = params.common, params.train
    torch.manual_seed(common.seed)
    device = select_device(common.device)
    dtype = select_precision(common.precision, device)
    memory_format = memory_format_for(cfg.channels_last, device)
    if common.num_classes != 1:
        raise SystemExit("train_bench times the binary setting (common.num_classes: 1)")

    import tempfile

    with tempfile.TemporaryDirectory(prefix="train-bench-") as tmp:
        folder = ensure_data(args.params, Path(tmp) / "pairs", 112, common.image_size, common.channels, common.seed)
        pairs = load_pairs(folder, common.channels, common.num_classes)
        base = build_unet(UNetConfig(
            in_channels=common.channels, num_classes=common.num_classes, depth=cfg.model.depth,
            base_width=cfg.model.base_width, upsampling=cfg.model.upsampling,
            batch_norm=cfg.model.batch_norm, dropout=cfg.model.dropout, encoder=cfg.model.encoder,
        ))
        transform = build_augmentation(cfg.augmentation)

        def ours(fmt: torch.memory_format, precision: torch.dtype, fixed: bool = False, compiled: bool = False):
            model = copy.deepcopy(base).to(device, memory_format=fmt)
            optimizer = build_optimizer(model.parameters(), cfg.optimizer, cfg.lr, cfg.weight_decay)
            network = torch.compile(model) if compiled else model
            step = SegmentationStep(network, SegmentationLoss(cfg.loss), optimizer, device=device,
                                    dtype=precision, grad_clip=cfg.grad_clip, memory_format=fmt)
            loader = DataLoader(PairDataset(pairs.images, pairs.masks, transform), batch_size=cfg.batch_size,
                                sampler=EpochSampler(len(pairs), seed=common.seed), num_workers=cfg.num_workers)
            batch = (pairs.images[: cfg.batch_size], pairs.masks[: cfg.batch_size])
            return OurLoop(step, None if fixed else loader, batch if fixed else None), step, batch

        naive_loader = DataLoader(PngPairs(folder, common.channels, common.num_classes, transform),
                                  batch_size=cfg.batch_size, shuffle=True, num_workers=cfg.num_workers)
        naive = NaiveLoop(copy.deepcopy(base).to(device), naive_loader, cfg.lr, cfg.weight_decay, cfg.grad_clip)
        our_loop, _, fixed_batch = ours(memory_format, dtype)
        step_only, _, _ = ours(memory_format, dtype, fixed=True)
        flops = step_flops(ours(torch.contiguous_format, torch.float32, fixed=True)[1], fixed_batch)

        contenders = {"naive": naive, "ours": our_loop, "ours_step_only": step_only}
        if args.variants:
            other = torch.contiguous_format if memory_format == torch.channels_last else torch.channels_last
            contenders[f"step_{_fmt_name(other)}"] = ours(other, dtype, fixed=True)[0]
            if dtype != torch.bfloat16:
                contenders["step_bf16"] = ours(memory_format, torch.bfloat16, fixed=True)[0]
        compile_s = None
        if args.compile:
            compiled_loop = ours(memory_format, dtype, fixed=True, compiled=True)[0]
            start = time.perf_counter()
            compiled_loop()
            compile_s = time.perf_counter() - start
            contenders["step_compiled"] = compiled_loop

        for loop in contenders.values():
            time_block(loop, args.warmup, device)
        peaks, speeds = [], {name: [] for name in contenders}
        peak_bf16 = matmul_gflops(torch.bfloat16, device, size=512 if device.type == "cpu" else 2048, repeats=1)
        for _ in range(args.repeats):
            peaks.append(matmul_gflops(torch.float32, device))
            for name, loop in contenders.items():
                speeds[name].append(time_block(loop, args.steps, device) * cfg.batch_size)

    peak = statistics.median(peaks)
    images_per_s = {name: statistics.median(values) for name, values in speeds.items()}
    gflops_per_image = flops / cfg.batch_size / 1e9
    achieved = images_per_s["ours_step_only"] * gflops_per_image
    achieved_loop = images_per_s["ours"] * gflops_per_image
    threads = torch.get_num_threads()
    print(f"device {device} ({threads} threads, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'default')}), "
          f"{common.image_size}x{common.image_size}x{common.channels}, batch {cfg.batch_size}, U-Net "
          f"{cfg.model.encoder} depth {cfg.model.depth} width {cfg.model.base_width}, "
          f"{gflops_per_image:.3f} GFLOP per image per step (fwd+bwd, FlopCounterMode)")
    print(f"ours uses: precision {str(dtype).removeprefix('torch.')} ({common.precision}), "
          f"{_fmt_name(memory_format)} ({cfg.channels_last}), in-memory uint8 pairs + albumentations, "
          f"{cfg.num_workers} loader workers")
    print(f"matmul peak fp32: {peak:7.1f} GFLOP/s  (blocks {_fmt(peaks)});  bf16: {peak_bf16:.1f} GFLOP/s")
    for name, value in images_per_s.items():
        print(f"{name:16s} {value:8.1f} images/s  {value * gflops_per_image:6.1f} GFLOP/s  "
              f"blocks {_fmt(speeds[name])}")
    if compile_s is not None:
        print(f"torch.compile: first step (compilation) took {compile_s:.1f}s")
    print(f"speed-up over naive: {images_per_s['ours'] / images_per_s['naive']:.2f}x (whole loop), "
          f"{images_per_s['ours_step_only'] / images_per_s['naive']:.2f}x (step alone)")
    print(f"ours: {achieved:.1f} GFLOP/s = {100 * achieved / peak:.0f}% of the measured matmul peak (step alone); "
          f"{100 * achieved_loop / peak:.0f}% with data loading")
    return {"peak": peak, **images_per_s, "gflops_step": achieved, "fraction_of_peak": achieved / peak}


def _fmt_name(memory_format: torch.memory_format) -> str:
    return "channels_last" if memory_format == torch.channels_last else "NCHW"


def _fmt(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:.1f}" for v in values) + "]"


if __name__ == "__main__":
    main()
