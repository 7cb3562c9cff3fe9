"""The plain baseline of ``quality_bench.py``: a U-Net trained to milesial/Pytorch-UNet's recipe.

    .venv/bin/python benchmarks/milesial_unet.py --prepared DIR --out DIR [--minutes 15]
                                                [--channels 1] [--seed 42]

Written from the files of https://github.com/milesial/Pytorch-UNet read for it (the search
index's stored versions): ``unet/unet_parts.py`` (DoubleConv with BatchNorm, Down, Up with the
size-matching pad, OutConv), ``unet/unet_model.py`` (widths 64..1024, ``factor = 2 if bilinear
else 1``), ``utils/dice_score.py`` (``dice_coeff``, ``dice_loss``), ``utils/data_loading.py``
(``BasicDataset.preprocess``: PIL resize to ``int(scale * w), int(scale * h)``, BICUBIC for
images, NEAREST for masks, /255), ``evaluate.py`` (mean over validation batches of the Dice of
``sigmoid > 0.5``), ``predict.py`` (``predict_img``: the image at the training scale, the
probabilities resized back to the full image, ``> 0.5``) and ``train.py``. The stored
``train.py`` is an older revision (lr 1e-3, clip_grad_value 0.1); the current one, whose
``train_model`` this follows, was read in several verbatim copies of it in the index: RMSprop(lr
1e-5, weight_decay 1e-8, momentum 0.999, foreach=True), ``ReduceLROnPlateau('max',
patience=5)`` stepped on the validation Dice, BCEWithLogits + ``dice_loss(sigmoid)`` for one
class, ``clip_grad_norm_(..., 1.0)``, batch 1 shuffled, AMP off (fp32), a validation round
every ``n_train // (5 * batch_size)`` steps (five per epoch), ``bilinear=False``.

What differs, and why:
- The data: the train and val manifests that ganseg's prepare stage wrote (``pair_id``,
  ``image_path``, ``mask_path``), so that both methods see the same split; the images are the
  original files (``image_path``), scaled by 0.5 at load as milesial does, never ganseg's
  prepared copies. Masks: foreground = value > 127 (milesial maps the sorted unique mask values
  to 0..K-1: the same for DSB's {0, 255} masks). Images are read as ``channels`` (1 = PIL "L",
  3 = "RGB") to match ganseg's run.
- The validation set: milesial validates on ``val_percent = 10%`` of all labelled pairs, five
  times per epoch. The few-label split has more validation pairs than training pairs (100 vs
  66), and five rounds over all of them would take four fifths of the baseline's time; so the
  baseline validates on a seeded subset of the val split of milesial's size, ``int(0.1 *
  (train + val))`` pairs (16 here), which keeps milesial's share of time spent validating.
  ``--val-images 0`` uses the whole val split.
- ``num_workers=0`` (milesial: ``os.cpu_count()``): on a 2-core machine shared with the
  training process, worker processes only compete for the same cores; decoding one PNG per step
  is a small share of a full-image step of this network.
- Memory format: channels_last, as milesial (``--memory-format contiguous`` to compare; on the
  2-core development CPU channels_last measured as fast or faster for this network: 0.28 vs
  0.40 s per 128x128 step).
- A wall-clock budget instead of epochs, and snapshots of the weights at validation rounds
  (at most one per ``budget / --snapshots`` seconds) and at the end: the time spent writing
  them is not counted in the baseline's clock.
- Seeded (``--seed``) initial weights and shuffling; milesial does not seed.

Writes ``<out>/snapshots/step_<N>.pt`` (``{"state_dict", "elapsed_s", "step", "epoch",
"val_dice", "lr", "config"}``), ``<out>/history.csv`` (one row per validation round) and
``<out>/run.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset

SCALE = 0.5  # milesial's default img_scale
WIDTH = 64  # channels of the first DoubleConv


# -- the network (unet/unet_parts.py, unet/unet_model.py) --------------------------------------
class DoubleConv(nn.Module):
    """(convolution => BN => ReLU) * 2"""

    def __init__(self, in_channels: int, out_channels: int, mid_channels: int | None = None):
        super().__init__()
        mid_channels = mid_channels or out_channels
        self.double_conv = nn.Sequential(
            nn.Conv2d(in_channels, mid_channels, kernel_size=3, padding=1),
            nn.BatchNorm2d(mid_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid_channels, out_channels, kernel_size=3, padding=1),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.double_conv(x)


class Down(nn.Module):
    """Max-pool by 2, then DoubleConv: (B, C_in, H, W) -> (B, C_out, H // 2, W // 2)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.maxpool_conv = nn.Sequential(nn.MaxPool2d(2), DoubleConv(in_channels, out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool_conv(x)


class Up(nn.Module):
    """Upsample by 2 (transposed conv, or bilinear), pad to the skip's size, concatenate, DoubleConv."""

    def __init__(self, in_channels: int, out_channels: int, bilinear: bool = False):
        super().__init__()
        if bilinear:
            self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
            self.conv = DoubleConv(in_channels, out_channels, in_channels // 2)
        else:
            self.up = nn.ConvTranspose2d(in_channels, in_channels // 2, kernel_size=2, stride=2)
            self.conv = DoubleConv(in_channels, out_channels)

    def forward(self, below: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        below = self.up(below)
        # Odd sizes (e.g. 694x520 / 16) make the upsampled map a pixel short: pad it, centred.
        diff_y = skip.size(2) - below.size(2)
        diff_x = skip.size(3) - below.size(3)
        below = F.pad(below, [diff_x // 2, diff_x - diff_x // 2, diff_y // 2, diff_y - diff_y // 2])
        return self.conv(torch.cat([skip, below], dim=1))


class OutConv(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class UNet(nn.Module):
    def __init__(self, n_channels: int, n_classes: int, bilinear: bool = False):
        super().__init__()
        self.n_channels, self.n_classes, self.bilinear = n_channels, n_classes, bilinear
        factor = 2 if bilinear else 1
        self.inc = DoubleConv(n_channels, WIDTH)
        self.down1 = Down(WIDTH, 2 * WIDTH)
        self.down2 = Down(2 * WIDTH, 4 * WIDTH)
        self.down3 = Down(4 * WIDTH, 8 * WIDTH)
        self.down4 = Down(8 * WIDTH, 16 * WIDTH // factor)
        self.up1 = Up(16 * WIDTH, 8 * WIDTH // factor, bilinear)
        self.up2 = Up(8 * WIDTH, 4 * WIDTH // factor, bilinear)
        self.up3 = Up(4 * WIDTH, 2 * WIDTH // factor, bilinear)
        self.up4 = Up(2 * WIDTH, WIDTH, bilinear)
        self.outc = OutConv(WIDTH, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.inc(x)  # (B, 64, H, W)
        x2 = self.down1(x1)  # (B, 128, H/2, W/2)
        x3 = self.down2(x2)  # (B, 256, H/4, W/4)
        x4 = self.down3(x3)  # (B, 512, H/8, W/8)
        x5 = self.down4(x4)  # (B, 1024, H/16, W/16)
        x = self.up1(x5, x4)
        x = self.up2(x, x3)
        x = self.up3(x, x2)
        x = self.up4(x, x1)  # (B, 64, H, W)
        return self.outc(x)  # (B, n_classes, H, W) logits


# -- loss and score (utils/dice_score.py) ----------------------------------------------------
def dice_coeff(pred: torch.Tensor, target: torch.Tensor, reduce_batch_first: bool = False,
               epsilon: float = 1e-6) -> torch.Tensor:
    """milesial's Dice: over the whole batch, or the mean of per-image values; an empty pair
    (nothing predicted, nothing there) scores 1."""
    assert pred.size() == target.size()
    sum_dim = (-1, -2) if pred.dim() == 2 or not reduce_batch_first else (-1, -2, -3)
    inter = 2 * (pred * target).sum(dim=sum_dim)
    sets_sum = pred.sum(dim=sum_dim) + target.sum(dim=sum_dim)
    sets_sum = torch.where(sets_sum == 0, inter, sets_sum)
    return ((inter + epsilon) / (sets_sum + epsilon)).mean()


def dice_loss(probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return 1 - dice_coeff(probs, target, reduce_batch_first=True)


# -- data (utils/data_loading.py) ------------------------------------------------------------
def read_pil(path: Path, channels: int) -> Image.Image:
    with Image.open(path) as handle:
        return handle.convert("L" if channels == 1 else "RGB")


def preprocess(pil_img: Image.Image, scale: float, is_mask: bool) -> np.ndarray:
    """milesial's ``BasicDataset.preprocess``: image (C, h, w) float in [0, 1], mask (h, w) int64."""
    width, height = pil_img.size
    new_w, new_h = int(scale * width), int(scale * height)
    assert new_w > 0 and new_h > 0, "Scale is too small, resized images would have no pixel"
    pil_img = pil_img.resize((new_w, new_h), resample=Image.NEAREST if is_mask else Image.BICUBIC)
    array = np.asarray(pil_img)
    if is_mask:
        return (array > 127).astype(np.int64)
    array = array[np.newaxis, ...] if array.ndim == 2 else array.transpose((2, 0, 1))
    return array / 255.0 if (array > 1).any() else array.astype(np.float64)


class ManifestDataset(Dataset):
    """The pairs of one prepared split's ``manifest.csv``, read from their original files at
    ``scale`` at every access (milesial decodes per step)."""

    def __init__(self, manifest: Path, channels: int, scale: float = SCALE):
        self.rows = pd.read_csv(manifest).to_dict("records")
        if not self.rows:
            raise SystemExit(f"{manifest}: no pairs listed")
        missing = [r["pair_id"] for r in self.rows if not isinstance(r.get("image_path"), str)]
        if missing:
            raise SystemExit(f"{manifest}: no image_path for {missing[0]} (run prepare with prepare.source=folder)")
        self.channels, self.scale = channels, scale

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        row = self.rows[index]
        image = read_pil(Path(row["image_path"]), self.channels)
        with Image.open(row["mask_path"]) as handle:
            mask = handle.convert("L")
        assert image.size == mask.size, f"image and mask {row['pair_id']} differ in size: {image.size}, {mask.size}"
        return {
            "image": torch.as_tensor(preprocess(image, self.scale, is_mask=False).copy()).float().contiguous(),
            "mask": torch.as_tensor(preprocess(mask, self.scale, is_mask=True).copy()).long().contiguous(),
        }


# -- evaluation and prediction (evaluate.py, predict.py) -------------------------------------
@torch.no_grad()
def evaluate(model: UNet, loader: DataLoader, device: torch.device, memory_format: torch.memory_format) -> float:
    model.eval()
    dice_score = 0.0
    for batch in loader:
        image = batch["image"].to(device=device, dtype=torch.float32, memory_format=memory_format)
        mask_true = batch["mask"].to(device=device, dtype=torch.long)
        mask_pred = (torch.sigmoid(model(image).squeeze(1)) > 0.5).float()
        dice_score += float(dice_coeff(mask_pred, mask_true.float(), reduce_batch_first=False))
    model.train()
    return dice_score / max(len(loader), 1)


@torch.no_grad()
def predict_probabilities(model: UNet, image: Image.Image, scale: float = SCALE,
                          device: torch.device | str = "cpu") -> torch.Tensor:
    """``predict_img``: the image at the training scale, foreground probabilities (H, W) at
    the image's full size (bilinear; milesial resizes an 8-bit PIL copy, also bilinear)."""
    model.eval()
    pixels = torch.from_numpy(preprocess(image, scale, is_mask=False)).float()[None].to(device)
    probs = torch.sigmoid(model(pixels))  # (1, 1, h, w)
    full = F.interpolate(probs, size=(image.size[1], image.size[0]), mode="bilinear", align_corners=False)
    return full[0, 0].cpu()


def load_snapshot(path: Path, device: torch.device | str = "cpu") -> tuple[UNet, dict]:
    snapshot = torch.load(path, map_location="cpu", weights_only=True)
    config = snapshot["config"]
    model = UNet(config["channels"], 1, bilinear=False)
    model.load_state_dict(snapshot["state_dict"])
    return model.to(device).eval(), snapshot


# -- training (train.py's train_model, against a clock) --------------------------------------
@dataclass(frozen=True)
class RecipeConfig:
    channels: int = 1
    scale: float = SCALE
    batch_size: int = 1
    learning_rate: float = 1e-5
    weight_decay: float = 1e-8
    momentum: float = 0.999
    gradient_clipping: float = 1.0
    plateau_patience: int = 5
    validations_per_epoch: int = 5
    val_images: int | None = None  # None = int(0.1 * (train + val)), milesial's val_percent; 0 = all
    seed: int = 42
    memory_format: str = "channels_last"  # channels_last (milesial) | contiguous


class Clock:
    """Seconds since ``origin`` (a ``time.time()``; default now), not counting the time between
    :meth:`pause` and :meth:`resume` (writing snapshots)."""

    def __init__(self, origin: float | None = None):
        self.origin, self.excluded = time.time() if origin is None else origin, 0.0

    def __call__(self) -> float:
        return time.time() - self.origin - self.excluded

    def pause(self) -> float:
        return time.time()

    def resume(self, paused_at: float) -> None:
        self.excluded += time.time() - paused_at


def train_model(cfg: RecipeConfig, prepared: Path, out: Path, budget_s: float, snapshots: int,
                device: torch.device, clock: Clock | None = None) -> dict:
    clock = clock or Clock()
    torch.manual_seed(cfg.seed)
    memory_format = torch.channels_last if cfg.memory_format == "channels_last" else torch.contiguous_format
    train_set = ManifestDataset(prepared / "train" / "manifest.csv", cfg.channels, cfg.scale)
    val_set = ManifestDataset(prepared / "val" / "manifest.csv", cfg.channels, cfg.scale)
    n_train = len(train_set)
    val_count = int(0.1 * (n_train + len(val_set))) if cfg.val_images is None else cfg.val_images
    if 0 < val_count < len(val_set):
        chosen = np.random.default_rng(cfg.seed).choice(len(val_set), size=val_count, replace=False)
        val_set = torch.utils.data.Subset(val_set, sorted(chosen.tolist()))
    train_loader = DataLoader(train_set, batch_size=cfg.batch_size, shuffle=True, num_workers=0,
                              generator=torch.Generator().manual_seed(cfg.seed))
    val_loader = DataLoader(val_set, batch_size=cfg.batch_size, shuffle=False, drop_last=True, num_workers=0)

    model = UNet(n_channels=cfg.channels, n_classes=1, bilinear=False).to(device, memory_format=memory_format)
    optimizer = torch.optim.RMSprop(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay,
                                    momentum=cfg.momentum, foreach=True)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, "max", patience=cfg.plateau_patience)
    criterion = nn.BCEWithLogitsLoss()

    folder = out / "snapshots"
    folder.mkdir(parents=True, exist_ok=True)
    spacing = budget_s / max(snapshots, 1)
    history: list[dict] = []
    last_snapshot = -math.inf
    validation_s = 0.0

    def snapshot(step: int, epoch: int, val_dice: float | None) -> None:
        nonlocal last_snapshot
        elapsed = clock()
        paused = clock.pause()
        state = {name: tensor.detach().cpu().clone() for name, tensor in model.state_dict().items()}
        record = {"state_dict": state, "elapsed_s": elapsed, "step": step, "epoch": epoch,
                  "val_dice": val_dice, "lr": optimizer.param_groups[0]["lr"], "config": asdict(cfg)}
        temp = folder / f".step_{step:06d}.pt.tmp"
        torch.save(record, temp)
        temp.replace(folder / f"step_{step:06d}.pt")
        last_snapshot = elapsed
        clock.resume(paused)

    division_step = n_train // (cfg.validations_per_epoch * cfg.batch_size)
    global_step, epoch, step_s, round_s, done = 0, 0, 0.0, 0.0, False
    window_loss, window_steps = 0.0, 0
    snapshot(0, 0, None)
    while not done:
        epoch += 1
        model.train()
        for batch in train_loader:
            if clock() + step_s > budget_s:  # the next step would end past the budget
                done = True
                break
            started = clock()
            images = batch["image"].to(device=device, dtype=torch.float32, memory_format=memory_format)
            true_masks = batch["mask"].to(device=device, dtype=torch.long)
            masks_pred = model(images)
            loss = criterion(masks_pred.squeeze(1), true_masks.float())
            loss = loss + dice_loss(torch.sigmoid(masks_pred.squeeze(1)), true_masks.float())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.gradient_clipping)
            optimizer.step()
            global_step += 1
            window_loss += loss.item()  # milesial logs loss.item() every step
            window_steps += 1
            step_s = clock() - started

            if division_step > 0 and global_step % division_step == 0:
                if clock() + round_s > budget_s:  # the round would end past the budget
                    done = True
                    break
                val_started = clock()
                val_score = evaluate(model, val_loader, device, memory_format)
                scheduler.step(val_score)
                round_s = clock() - val_started
                validation_s += round_s
                row = {"step": global_step, "epoch": epoch, "elapsed_s": round(clock(), 2),
                       "train_loss": window_loss / window_steps, "val_dice": val_score,
                       "lr": optimizer.param_groups[0]["lr"]}
                history.append(row)
                window_loss, window_steps = 0.0, 0
                print(f"milesial: step {global_step} epoch {epoch} | {row['elapsed_s']:.0f}s | "
                      f"train loss {row['train_loss']:.4f} | val Dice {val_score:.4f} | lr {row['lr']:.1e}", flush=True)
                if clock() - last_snapshot >= spacing:
                    snapshot(global_step, epoch, val_score)
    final_val = history[-1]["val_dice"] if history else None
    snapshot(global_step, epoch, final_val)
    summary = {"steps": global_step, "epochs_started": epoch, "train_pairs": n_train, "val_pairs": len(val_set),
               "elapsed_s": round(clock(), 2), "snapshot_writing_s": round(clock.excluded, 2), "validation_s": round(validation_s, 2),
               "validation_every": division_step, "config": asdict(cfg), "device": str(device),
               "threads": torch.get_num_threads()}
    if history:
        with (out / "history.csv").open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(history[0]))
            writer.writeheader()
            writer.writerows(history)
    (out / "run.json").write_text(json.dumps(summary, indent=2))
    return summary


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prepared", type=Path, required=True, help="prepare's output (train/, val/ manifests)")
    parser.add_argument("--out", type=Path, required=True, help="folder for snapshots/, history.csv, run.json")
    parser.add_argument("--minutes", type=float, default=15.0, help="wall-clock training budget")
    parser.add_argument("--channels", type=int, choices=(1, 3), default=1)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--snapshots", type=int, default=20, help="at most this many snapshots (evenly in time)")
    parser.add_argument("--val-images", type=int, default=None,
                        help="validation pairs (seeded subset of val/); default int(0.1 * (train + val)); 0 = all")
    parser.add_argument("--memory-format", choices=("channels_last", "contiguous"), default="channels_last")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--started-at", type=float, default=None,
                        help="time.time() the clock counts from (the caller's launch of this process); default now")
    args = parser.parse_args(argv)
    clock = Clock(args.started_at)
    for split in ("train", "val"):
        if not (args.prepared / split / "manifest.csv").is_file():
            raise SystemExit(f"{args.prepared / split / 'manifest.csv'}: not found; run the prepare stage first")
    cfg = RecipeConfig(channels=args.channels, seed=args.seed, memory_format=args.memory_format,
                       val_images=args.val_images)
    return train_model(cfg, args.prepared, args.out, args.minutes * 60, args.snapshots, torch.device(args.device), clock)


if __name__ == "__main__":
    main()
