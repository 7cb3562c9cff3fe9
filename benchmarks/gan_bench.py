"""pix2pix training speed: the augment stage's loop against a naive loop, in the same run.

    .venv/bin/python benchmarks/gan_bench.py [--params params.yaml] [--steps 20] [--repeats 5]
    .venv/bin/python benchmarks/gan_bench.py --measure patches [--whole-size 256 --patch-size 64]

``--measure loops`` (part of the default ``all``): both loops train the same networks (built from
the ``augment`` block with whole ``common.image_size`` images as the patch, same initial weights) on the same training pairs, one iteration = one batch, one D step and
one G step. They run in alternating blocks of ``--steps`` iterations so that a machine whose
load changes (shared CPUs) slows both alike; the median block speed of each is reported.

- naive: the seed tutorial's structure. A DataLoader decodes PNGs and applies the random flip
  per sample per step; fp32, NCHW; instance norm as ``nn.InstanceNorm2d`` (the same function
  and weights as ganseg's); the discriminator judges real and fake in separate calls;
  ``BCEWithLogitsLoss`` against fresh ``ones_like`` / ``zeros_like`` targets; the G step
  also computes D's weight gradients (thrown away by the next ``zero_grad``); ``.item()``
  on both losses every step.
- ganseg: :func:`ganseg.gan.trainer.gan_step` as the stage runs it: pairs decoded once and
  kept on the device, flips as tensor ops, instance norm through ``nn.GroupNorm``'s faster
  kernel (one channel per group), D's weights frozen during the G step, stats
  accumulated on the device (one sync per log interval), the EMA generator updated, and the
  device's precision (bf16 autocast on CUDA, fp32 on CPU) and memory layout
  (``augment.channels_last``).

It also counts the FLOPs of one iteration of each loop (``torch.utils.flop_counter``:
convolutions and matmuls, forward + backward; the naive loop's are higher because its G step
also builds D's weight gradients) and times a float32 2048x2048 matrix multiply on the same
threads, the machine's practical FLOP ceiling. From them: the share of that peak each loop
achieves, and the largest speed-up over the naive loop that ganseg's FLOPs would allow at
100% of the peak. Where that ceiling is below a target, no loop on this device reaches it.

``--measure patches`` (part of ``all``): what training on patches costs and buys (issue 16).
The stage's loop on the same ``--whole-size`` px pairs, once with ``patch_size`` =
``--patch-size`` (random windows, as the stage cuts them) and once with the whole image as the
patch (the baseline, before issue 16), in alternating blocks of ``--patch-steps``; seconds per
step of each and their ratio, and the distinct training samples one image gives (window
positions x 8 dihedral views). About a minute on 2 CPU cores at the defaults.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.peak import matmul_gflops
from ganseg.config import load_params
from ganseg.config.augment import AugmentConfig
from ganseg.data import pairs
from ganseg.data.synthetic import generate_pair
from ganseg.gan.trainer import build_phases, gan_step
from ganseg.runtime import select_device, select_precision
from pipelines.augment import build_run


# -- the naive loop --------------------------------------------------------------------------
def with_instance_norm(module: nn.Module) -> nn.Module:
    """Swap each one-channel-per-group GroupNorm for the InstanceNorm2d a tutorial would use
    (same function, same affine weights)."""
    for name, child in module.named_children():
        if isinstance(child, nn.GroupNorm) and child.num_groups == child.num_channels:
            replacement = nn.InstanceNorm2d(child.num_channels, eps=child.eps, affine=True)
            with torch.no_grad():
                replacement.weight.copy_(child.weight)
                replacement.bias.copy_(child.bias)
            setattr(module, name, replacement.to(child.weight.device))
        else:
            with_instance_norm(child)
    return module


class PngPairs(torch.utils.data.Dataset):
    """The tutorial's dataset: open, decode, flip and normalise every pair at every step."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.manifest = pairs.read_manifest(self.folder)

    def __len__(self) -> int:
        return len(self.manifest)

    def __getitem__(self, index: int):
        row = self.manifest.iloc[index]
        image = np.asarray(Image.open(self.folder / row["image"]).convert("L"), dtype=np.float32)
        mask = (np.asarray(Image.open(self.folder / row["mask"]).convert("L")) > 127).astype(np.float32)
        if np.random.rand() < 0.5:
            image, mask = image[:, ::-1], mask[:, ::-1]
        image = torch.from_numpy(image.copy())[None] / 127.5 - 1  # (1, H, W) in [-1, 1]
        mask = torch.from_numpy(mask.copy())[None] * 2 - 1
        return mask, image


class NaiveLoop:
    def __init__(self, generator: nn.Module, discriminator: nn.Module, folder: Path, batch_size: int,
                 lr_g: float, lr_d: float, betas, lambda_l1: float, device: torch.device):
        self.generator, self.discriminator, self.device = generator, discriminator, device
        self.g_opt = torch.optim.Adam(generator.parameters(), lr=lr_g, betas=betas)
        self.d_opt = torch.optim.Adam(discriminator.parameters(), lr=lr_d, betas=betas)
        self.loader = torch.utils.data.DataLoader(PngPairs(folder), batch_size=batch_size, shuffle=True,
                                                  drop_last=True, num_workers=0)
        self.batches = iter(self.loader)
        self.bce, self.l1, self.lambda_l1 = nn.BCEWithLogitsLoss(), nn.L1Loss(), lambda_l1
        self.losses: list[tuple[float, float]] = []

    def step(self) -> None:
        try:
            masks, images = next(self.batches)
        except StopIteration:
            self.batches = iter(self.loader)
            masks, images = next(self.batches)
        masks, images = masks.to(self.device), images.to(self.device)
        fake = self.generator(masks)

        self.d_opt.zero_grad()
        pred_real = self.discriminator(torch.cat([masks, images], 1))
        loss_real = self.bce(pred_real, torch.ones_like(pred_real))
        pred_fake = self.discriminator(torch.cat([masks, fake.detach()], 1))
        loss_fake = self.bce(pred_fake, torch.zeros_like(pred_fake))
        d_loss = (loss_real + loss_fake) * 0.5
        d_loss.backward()
        self.d_opt.step()

        self.g_opt.zero_grad()
        pred_fake = self.discriminator(torch.cat([masks, fake], 1))
        g_loss = self.bce(pred_fake, torch.ones_like(pred_fake)) + self.lambda_l1 * self.l1(fake, images)
        g_loss.backward()
        self.g_opt.step()
        self.losses.append((d_loss.item(), g_loss.item()))


# -- the ganseg loop -------------------------------------------------------------------------
class GansegLoop:
    def __init__(self, run, g_interval: int):
        self.run, self.g_interval = run, g_interval
        self.phases = build_phases(run.parts, run.loss, g_interval, run.constraints)
        self.scaler = torch.amp.GradScaler(run.loss.device.type, enabled=run.loss.dtype == torch.float16)
        self.sums: dict[str, torch.Tensor] = {}
        self.iteration = 0
        run.parts.generator.train()
        run.parts.discriminator.train()

    def step(self) -> None:
        self.iteration += 1
        stats = gan_step(self.run.parts.generator, self.phases, self.run.loss, self.run.sampler.next(),
                         self.iteration, self.g_interval, self.scaler)
        for name, value in stats.items():  # summed on the device, as the training loop does
            self.sums[name] = self.sums[name] + value.detach() if name in self.sums else value.detach()
        if self.iteration % 10 == 0:  # the stage's log interval: the one sync
            torch.stack(list(self.sums.values())).cpu().tolist()
            self.sums = {}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_block(loop, steps: int, device: torch.device) -> float:
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        loop.step()
    synchronize(device)
    return steps / (time.perf_counter() - start)


def iteration_flops(loop) -> int:
    """FLOPs of one training iteration of ``loop`` (it trains one more step while counted)."""
    with FlopCounterMode(display=False) as counter:
        loop.step()
    return counter.get_total_flops()


def ensure_pairs(folder: Path | None, size: int, scratch: Path, count: int = 112) -> Path:
    """The prepared training pairs, or (when absent) ``count`` generated pairs written to ``scratch``."""
    if folder is not None and (folder / pairs.MANIFEST).exists():
        return folder
    from ganseg.config.prepare import SyntheticSourceConfig

    (scratch / "images").mkdir(parents=True)
    (scratch / "masks").mkdir()
    rows = []
    for index in range(count):
        pair = generate_pair(SyntheticSourceConfig(), size, 0, index)
        pairs.save_image(scratch / "images" / f"{pair.pair_id}.png", pair.image)
        pairs.save_mask(scratch / "masks" / f"{pair.pair_id}.png", pair.mask.astype(np.uint8), 1)
        rows.append(f"{pair.pair_id},images/{pair.pair_id}.png,masks/{pair.pair_id}.png")
    (scratch / pairs.MANIFEST).write_text("pair_id,image,mask\n" + "\n".join(rows) + "\n")
    return scratch


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=REPO / "params.yaml")
    parser.add_argument("--data", type=Path, default=REPO / "data/prepared/train")
    parser.add_argument("--measure", choices=("all", "loops", "patches"), default="all")
    parser.add_argument("--steps", type=int, default=20, help="iterations per timed block")
    parser.add_argument("--repeats", type=int, default=5, help="timed blocks per loop")
    parser.add_argument("--warmup", type=int, default=5, help="untimed iterations per loop first")
    parser.add_argument("--whole-size", type=int, default=256, help="patches: side of the generated images")
    parser.add_argument("--patch-size", type=int, default=64, help="patches: side of the patches")
    parser.add_argument("--patch-batch", type=int, default=4, help="patches: batch size of both runs")
    parser.add_argument("--patch-steps", type=int, default=3, help="patches: iterations per timed block")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    params = load_params(args.params)
    common, cfg = params.common, params.augment
    if cfg.model != "pix2pix" or common.channels != 1 or common.num_classes != 1:
        raise SystemExit("gan_bench measures pix2pix on grayscale binary pairs (the default params)")
    device = select_device(common.device)
    dtype = select_precision(common.precision, device)
    results = {}
    if args.measure in ("all", "loops"):
        results["loops"] = compare_loops(args, cfg, common, device, dtype)
    if args.measure in ("all", "patches"):
        results["patches"] = compare_patches(args, cfg, common, device, dtype)
    return results


def compare_loops(args, cfg: AugmentConfig, common, device: torch.device, dtype: torch.dtype) -> dict:
    """The stage's loop against the naive one, on whole ``common.image_size`` images."""
    cfg = cfg.model_copy(update={"patch_size": common.image_size})  # whole images: as the naive loop
    with tempfile.TemporaryDirectory(prefix="gan-bench-") as scratch:
        folder = ensure_pairs(args.data, common.image_size, Path(scratch) / "pairs")
        train = pairs.load_pairs(folder, 1, 1)
        if train.uniform_size != (common.image_size, common.image_size):
            raise SystemExit(f"{folder}: pairs are not all {common.image_size} px (the naive loop takes whole "
                             "images of one size); pass --data to a folder of such pairs")
        torch.manual_seed(common.seed)
        run = build_run(cfg, common, train, device, dtype)
        # The naive loop starts from the same initial weights, in fp32 NCHW.
        naive = NaiveLoop(
            with_instance_norm(copy.deepcopy(run.parts.generator)).to(memory_format=torch.contiguous_format),
            with_instance_norm(copy.deepcopy(run.parts.discriminator)).to(memory_format=torch.contiguous_format),
            folder, cfg.batch_size, cfg.lr_g, cfg.lr_d, tuple(cfg.betas), cfg.pix2pix.lambda_l1, device,
        )
        ganseg = GansegLoop(run, cfg.objective.d_steps_per_g)
        flops = {"naive": iteration_flops(naive), "ganseg": iteration_flops(ganseg)}
        for loop in (naive, ganseg):
            time_block(loop, args.warmup, device)
        speeds: dict[str, list[float]] = {"naive": [], "ganseg": []}
        peaks: list[float] = []
        for _ in range(args.repeats):
            peaks.append(matmul_gflops(torch.float32, device))
            speeds["naive"].append(time_block(naive, args.steps, device))
            speeds["ganseg"].append(time_block(ganseg, args.steps, device))
    naive_its = statistics.median(speeds["naive"])
    ganseg_its = statistics.median(speeds["ganseg"])
    peak = statistics.median(peaks)
    share = {name: its * flops[name] / 1e9 / peak for name, its in (("naive", naive_its), ("ganseg", ganseg_its))}
    ceiling = peak * 1e9 / flops["ganseg"] / naive_its
    layout = "channels_last" if run.memory_format == torch.channels_last else "NCHW"
    print(f"device {device} ({torch.get_num_threads()} threads), {common.image_size}x{common.image_size}, "
          f"batch {cfg.batch_size}, G base {cfg.pix2pix.base_channels}, D base {cfg.discriminator.base_channels}")
    print(f"naive  (fp32, NCHW, PNG loader):      {naive_its:7.2f} it/s  blocks {_fmt(speeds['naive'])}")
    print(f"ganseg ({str(dtype).removeprefix('torch.')}, {layout}, in-memory): {ganseg_its:7.2f} it/s  "
          f"blocks {_fmt(speeds['ganseg'])}")
    print(f"speed-up: {ganseg_its / naive_its:.2f}x (median of {args.repeats} alternating blocks of "
          f"{args.steps} iterations)")
    print(f"FLOPs per iteration (fwd+bwd, FlopCounterMode): naive {flops['naive'] / 1e9:.3f} G, "
          f"ganseg {flops['ganseg'] / 1e9:.3f} G")
    print(f"matmul peak fp32: {peak:.1f} GFLOP/s (blocks {_fmt(peaks)}); achieved: naive {100 * share['naive']:.0f}%, "
          f"ganseg {100 * share['ganseg']:.0f}% of it")
    print(f"ceiling: ganseg at 100% of the matmul peak would be {ceiling:.2f}x the naive loop")
    return {"naive": naive_its, "ganseg": ganseg_its, "ratio": ganseg_its / naive_its, "peak": peak,
            "share_naive": share["naive"], "share_ganseg": share["ganseg"], "ceiling": ceiling}


def compare_patches(args, cfg: AugmentConfig, common, device: torch.device, dtype: torch.dtype) -> dict:
    """Seconds per step of the stage's loop on ``--whole-size`` px pairs: ``--patch-size`` patches
    against the whole image as the patch (the baseline), in alternating blocks."""
    whole, patch = args.whole_size, args.patch_size
    cfg = cfg.model_copy(update={"batch_size": args.patch_batch})
    with tempfile.TemporaryDirectory(prefix="gan-bench-") as scratch:
        train = pairs.load_pairs(ensure_pairs(None, whole, Path(scratch) / "pairs", count=16), 1, 1)
    loops, depths = {}, {}
    for name, side in (("whole", whole), ("patch", patch)):
        sized = cfg.model_copy(update={"patch_size": side})
        sized.check_against(side)
        torch.manual_seed(common.seed)
        loops[name] = GansegLoop(build_run(sized, common, train, device, dtype), cfg.objective.d_steps_per_g)
        depths[name] = sized.unet_depth(side)
        time_block(loops[name], 1, device)  # warm-up
    seconds: dict[str, list[float]] = {"whole": [], "patch": []}
    for _ in range(args.repeats):
        for name, loop in loops.items():
            seconds[name].append(1 / time_block(loop, args.patch_steps, device))
    step = {name: statistics.median(values) for name, values in seconds.items()}
    views = 8 if cfg.augment_real else 1  # the dihedral views of a square
    samples = {"whole": views, "patch": (whole - patch + 1) ** 2 * views}
    print(f"patches: {len(train)} pairs of {whole}x{whole}, batch {cfg.batch_size}, {device}")
    print(f"whole {whole} px (baseline, G depth {depths['whole']}): {step['whole']:.3f} s/step  "
          f"blocks {_fmt(seconds['whole'])}")
    print(f"patch {patch} px (G depth {depths['patch']}):            {step['patch']:.3f} s/step  "
          f"blocks {_fmt(seconds['patch'])}")
    print(f"patch step / whole step: {step['patch'] / step['whole']:.3f} (median of {args.repeats} alternating "
          f"blocks of {args.patch_steps}); pixels per step {(patch / whole) ** 2:.3f} of the baseline's")
    print(f"distinct samples per image: patch {samples['patch']:,} ({whole - patch + 1}^2 windows x {views} views) "
          f"vs whole {samples['whole']}")
    return {"whole_s_per_step": step["whole"], "patch_s_per_step": step["patch"],
            "ratio": step["patch"] / step["whole"], "samples_per_image": samples}


def _fmt(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:.2f}" for v in values) + "]"


if __name__ == "__main__":
    main()
