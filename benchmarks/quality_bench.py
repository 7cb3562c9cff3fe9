"""Test Dice per wall-clock second: ganseg's train stage against milesial/Pytorch-UNet's recipe (issue 16).

    .venv/bin/python benchmarks/quality_bench.py [--minutes 15] [--short-minutes 1.5,3] [--curve-images 100]
                                                 [--points 12] [--params overrides.yaml] [--out DIR] [--smoke]

Both methods train on the same DSB 2018 few-label split, one after the other (ganseg first:
a stage that fails does so before the baseline's budget is spent), each for the
same wall-clock budget (``--minutes``, counted from the launch of its process), and both are
scored the same way on the same test images at their native resolution.

- split: ``python -m pipelines prepare`` run once on params.yaml + ``prepare.source=folder``
  (``../shared/data/dsb2018_nuclei``), ``prepare.split {train: 0.10, val: 0.15, test: 0.75}`` +
  the ``--params`` overrides (a YAML of blocks, merged key by key), into ``<out>/work``.
- baseline: ``benchmarks/milesial_unet.py`` (its docstring gives the recipe and the files it
  follows): the original files of the train/val manifests at scale 0.5, whole images, batch 1,
  fp32, width 64. It snapshots its weights at validation rounds.
- ganseg: ``python -m pipelines train --variant real`` on the prepared split. Its length comes
  from the budget: ``train.time_budget_minutes`` = the budget less a minute for its start-up and
  publishing (the stage measures its step and plans steps, patch and batch), unless the overrides
  set ``train.steps``. The stage is stopped (SIGTERM) if it runs past the budget. Its curve comes from copies of ``checkpoints/train_real/last.pt``
  taken whenever the stage rewrites it (after every validation), timed by the file's mtime.
- ganseg at shorter budgets (``--short-minutes``, default 1.5 and 3): the same stage run again,
  planned for each shorter budget, its snapshots timed from its own launch. ganseg is a
  budgeted trainer: told to finish in t minutes it plans a shorter, complete schedule (its
  learning rate anneals within t), which is how a user who wants a model in t minutes runs
  it. So ganseg's time to the bar is the earliest over all its runs; the baseline's curve is
  what its recipe has at each moment, which is also what stopping it at t gives. The ratio from
  the full-budget run alone is printed beside it.
- scoring: test Dice = mean over images of ``ganseg.metrics.segmentation.dice_per_image``
  (empty prediction on empty truth = 1) against the original mask (> 127) at native size.
  The baseline predicts as milesial's ``predict_img`` (image at scale 0.5, probabilities
  resized back). ganseg predicts its prepared test image with its sliding window
  (``ganseg.inference.segment_probabilities``, tile = the model file's side) and the
  probabilities are resized to the native size when prepare resized the image; with
  ``resize_mode: pad_crop`` the native image is segmented directly. Foreground = p > 0.5.
  The curves use a seeded subset of ``--curve-images`` test images (the same for both); each
  method's last snapshot within the budget (and ganseg's published best-val model, when the
  stage finished) is scored on the whole test split.
- the figure: the baseline's final Dice (its last snapshot, curve images) = the bar; the time
  each method's curve first reaches it (a snapshot at or above it; so an upper bound, at the
  snapshots' spacing; ganseg: the earliest over its runs); ratio = ganseg / baseline. Target
  (issue 16): ratio <= 0.3. When the baseline ends below its own untrained start, that
  definition has it reach its final Dice at step 0; the same figure over the trained snapshots
  only (step 0 left out) is printed beside it, and the verdict stays the literal one.
  Also printed: the share of the baseline's time spent in its validation rounds, and the ratio
  against the baseline's clock without them (conservative: the baseline looks faster).

Writes ``<out>/quality_bench.json`` (curves, finals, times, ratio, settings, machine). Snapshots
are deleted after scoring unless ``--keep``. ``--smoke``: 40 DSB pairs of 256x256, 6 curve images, 4 points, 1 minute unless ``--minutes``, no
shorter-budget runs unless ``--short-minutes``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Self

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "src"))

from benchmarks import milesial_unet
from ganseg.config.base import _deep_merge, load_yaml
from ganseg.metrics.segmentation import dice_per_image

DSB = REPO.parent / "shared" / "data" / "dsb2018_nuclei"
TARGET_RATIO = 0.3
PYTHON = sys.executable
SUBPROCESS_ENV = {"DVC_NO_ANALYTICS": "1", "MLFLOW_DISABLE_TELEMETRY": "true", "GX_ANALYTICS_ENABLED": "False",
                  "DO_NOT_TRACK": "true", "NO_ALBUMENTATIONS_UPDATE": "1"}


def dsb_overrides(images_dir: Path, masks_dir: Path) -> dict:
    return {"prepare": {"source": "folder",
                        "folder": {"images_dir": str(images_dir), "masks_dir": str(masks_dir)},
                        "split": {"train": 0.10, "val": 0.15, "test": 0.75, "unlabeled": 0.0}}}


# -- processes -------------------------------------------------------------------------------
def stage_env() -> dict[str, str]:
    env = {**os.environ, **SUBPROCESS_ENV}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "src"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def run_checked(command: list[str], cwd: Path, log: Path, what: str) -> None:
    with log.open("w") as handle:
        done = subprocess.run(command, check=False, cwd=cwd, env=stage_env(), stdout=handle, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise SystemExit(f"{what} failed (exit {done.returncode}); last lines of {log}:\n{_tail(log)}")


def _tail(path: Path, lines: int = 15) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


class FileWatcher:
    """Copies each file of ``names`` in ``folder`` whenever it is replaced, with its mtime.

    The stage writes them atomically (write, rename), so the open file is always a whole one."""

    def __init__(self, folder: Path, names: tuple[str, ...], into: Path, origin: float, poll_s: float = 0.2):
        self.folder, self.names, self.into, self.origin, self.poll_s = folder, names, into, origin, poll_s
        self.copies: list[dict] = []  # {"name", "t", "path"} in order of writing
        self.seen: dict[str, int] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        into.mkdir(parents=True, exist_ok=True)

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()
        self._poll()  # whatever was written last

    def _run(self) -> None:
        while not self.stop.wait(self.poll_s):
            self._poll()

    def _poll(self) -> None:
        for name in self.names:
            try:
                with (self.folder / name).open("rb") as source:
                    stat = os.fstat(source.fileno())
                    if self.seen.get(name) == stat.st_mtime_ns:
                        continue
                    target = self.into / f"{len(self.copies):04d}_{name}"
                    with target.open("wb") as copy:
                        shutil.copyfileobj(source, copy)
            except FileNotFoundError:
                continue
            self.seen[name] = stat.st_mtime_ns
            self.copies.append({"name": name, "t": stat.st_mtime_ns / 1e9 - self.origin, "path": target})


def run_ganseg(work: Path, params: Path, prepared: Path, budget_s: float, name: str) -> dict:
    """The train stage as a process, its checkpoints copied as they appear; stopped at the budget."""
    folder = work / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    checkpoints = folder / "checkpoints"
    command = [PYTHON, "-m", "pipelines", "train", "--params", str(params), "--variant", "real",
               "--data", str(prepared), "--models", str(folder / "models"),
               "--metrics", str(folder / "metrics" / "train_real.json"), "--plots", str(folder / "plots" / "train_real.csv"),
               "--reports", str(folder / "reports"), "--checkpoints", str(checkpoints), "--no-progress"]
    log = folder / "stage.log"
    origin = time.time()
    with log.open("w") as handle, FileWatcher(checkpoints, ("last.pt", "best.pt"), folder / "snapshots", origin) as watch:
        process = subprocess.Popen(command, cwd=folder, env=stage_env(), stdout=handle, stderr=subprocess.STDOUT)
        try:
            code = process.wait(timeout=max(budget_s - (time.time() - origin), 1))
            stopped = False
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGTERM)  # the stage ends its MLflow run and exits 130
            stopped = True
            try:
                code = process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                process.kill()
                code = process.wait()
    wall = time.time() - origin
    if code != 0 and not stopped:
        raise SystemExit(f"ganseg train stage failed (exit {code}); last lines of {log}:\n{_tail(log)}")
    model_file = folder / "models" / "unet_real.pt"
    return {"copies": watch.copies, "wall_s": wall, "stopped_at_budget": stopped, "exit_code": code, "log": log,
            "model_file": model_file if model_file.is_file() and not stopped else None, "folder": folder}


def ganseg_length(train_fields: set[str], user: dict, budget_s: float) -> tuple[dict, str]:
    """The ``train`` overrides that size ganseg's run to the budget, and how they were chosen."""
    if isinstance(user.get("train", {}).get("steps"), int):
        return {}, "train.steps from --params"
    if "time_budget_minutes" not in train_fields:
        raise SystemExit("this train stage has no train.time_budget_minutes: give train.steps and "
                         "train.val_interval sized to the budget in the --params overrides")
    # The stage plans its steps for this much training, validations included; its start-up
    # (imports, decoding the pairs, timing its step: ~30 s on 2 cores) and the publishing tail
    # come on top, hence the margin.
    minutes = round(max(budget_s - 60, 0.6 * budget_s) / 60, 3)
    return ({"steps": "auto", "val_interval": "auto", "time_budget_minutes": minutes},
            "train.time_budget_minutes (the stage plans its steps)")


# -- test data and scoring ---------------------------------------------------------------------
@dataclass
class TestImage:
    pair_id: str
    truth: torch.Tensor  # (H, W) uint8 {0, 1} at native size
    baseline_image: Image.Image  # the original file, as the baseline reads it
    ganseg_image: torch.Tensor  # uint8 (C, h, w): what ganseg segments
    native: tuple[int, int]


@dataclass
class Scored:
    t: float
    dice: float
    label: str = ""
    extra: dict = field(default_factory=dict)


def load_test_images(prepared: Path, channels: int, resize_mode: str) -> list[TestImage]:
    from ganseg.data.images import read_image
    from ganseg.data.pairs import read_image_tensor

    rows = pd.read_csv(prepared / "test" / "manifest.csv").to_dict("records")
    images = []
    for row in rows:
        with Image.open(row["mask_path"]) as handle:
            truth = torch.from_numpy((np.asarray(handle.convert("L")) > 127).astype(np.uint8))
        if resize_mode == "pad_crop":  # prepare cropped: segment the native image
            array, _ = read_image(Path(row["image_path"]), channels)
            ganseg_image = torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))
        else:
            ganseg_image = read_image_tensor(prepared / "test" / row["image"], channels)
        images.append(TestImage(row["pair_id"], truth, milesial_unet.read_pil(Path(row["image_path"]), channels),
                                ganseg_image, tuple(truth.shape)))
    return images


def mean_dice(predictions: list[torch.Tensor], images: list[TestImage]) -> float:
    values = [float(dice_per_image(pred[None].long(), image.truth[None].long(), num_classes=1)[0])
              for pred, image in zip(predictions, images)]
    return float(np.mean(values))


def to_native(probs: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(h, w) foreground probabilities -> (H, W) labels at the native size."""
    if tuple(probs.shape) != size:
        probs = F.interpolate(probs[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]
    return (probs > 0.5).to(torch.uint8)


def score_baseline(path: Path, images: list[TestImage]) -> float:
    model, _ = milesial_unet.load_snapshot(path)
    return mean_dice([to_native(milesial_unet.predict_probabilities(model, image.baseline_image), image.native)
                      for image in images], images)


def ganseg_network(state_dict: dict, resolved: dict):
    from ganseg.models import UNetConfig, build_unet

    common, model_cfg = resolved["common"], resolved["train"]["model"]
    known = {f.name for f in fields(UNetConfig)}
    values = {"in_channels": common["channels"], "num_classes": common["num_classes"],
              **{k: v for k, v in model_cfg.items() if k in known}}
    network = build_unet(UNetConfig(**{k: v for k, v in values.items() if k in known}))
    network.load_state_dict(state_dict)
    return network.eval()


def score_ganseg(network, tile: int | None, images: list[TestImage]) -> float:
    from ganseg.inference import segment_probabilities

    predictions = []
    for image in images:
        side = tile or tuple(image.ganseg_image.shape[-2:])
        probs = segment_probabilities(network, image.ganseg_image, num_classes=1, tile=side, name=image.pair_id)
        predictions.append(to_native(probs[0], image.native))
    return mean_dice(predictions, images)


def ganseg_snapshots(run: dict) -> list[dict]:
    """One entry per copy of last.pt: its weights, the tile of the best.pt copies, its time."""
    tile = None
    for copy in run["copies"]:
        if copy["name"] == "best.pt":
            tile = torch.load(copy["path"], map_location="cpu", weights_only=True).get("image_size")
    out = []
    for copy in run["copies"]:
        if copy["name"] != "last.pt":
            continue
        checkpoint = torch.load(copy["path"], map_location="cpu", weights_only=True)
        state = checkpoint["state"]
        out.append({"t": copy["t"], "state_dict": state["modules"]["unet"], "config": checkpoint["config"],
                    "step": state["step"], "tile": tile})
    return out


# -- the figure ------------------------------------------------------------------------------
def first_reaching(curve: list[Scored], bar: float) -> float | None:
    return next((point.t for point in curve if point.dice >= bar - 1e-12), None)


def time_to_bar(curves: dict[str, list[Scored]], bar: float, trained_only: bool = False) -> dict[str, float | None]:
    """First time at or above ``bar``: on the baseline's curve, and the earliest over ganseg's
    curves (its runs); ``trained_only`` leaves the step-0 snapshots out."""
    def first(curve: list[Scored]) -> float | None:
        return first_reaching([p for p in curve if not trained_only or p.extra.get("step", 1) != 0], bar)

    ganseg = [t for name, curve in curves.items() if name.startswith("ganseg") for t in [first(curve)] if t is not None]
    baseline = [first(curve) for name, curve in curves.items() if name.startswith("baseline")]
    return {"baseline": baseline[0] if baseline else None, "ganseg": min(ganseg) if ganseg else None}


def time_to_bar_trained(curves: dict[str, list[Scored]], bar: float) -> dict[str, float | None]:
    return time_to_bar(curves, bar, trained_only=True)


def print_curves(curves: dict[str, list[Scored]]) -> None:
    for name, curve in curves.items():
        print(f"\n{name}: test Dice vs wall time ({len(curve)} snapshots)")
        print(f"  {'time s':>8}  {'Dice':>7}  snapshot")
        for point in curve:
            print(f"  {point.t:8.1f}  {point.dice:7.4f}  {point.label}")


def machine() -> dict:
    return {"threads": torch.get_num_threads(), "cpus": os.cpu_count(), "load_average": os.getloadavg(),
            "torch": torch.__version__, "device": "cpu"}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=None, help="wall-clock budget per method (15; smoke: 1)")
    parser.add_argument("--curve-images", type=int, default=100, help="test images scored for the curves (seeded)")
    parser.add_argument("--points", type=int, default=12, help="baseline snapshots for its curve (ganseg's: one per validation of the stage)")
    parser.add_argument("--short-minutes", type=str, default=None,
                        help="comma-separated shorter budgets for extra ganseg runs (1.5,3; smoke: none; '' = none)")
    parser.add_argument("--params", type=Path, default=None, help="YAML of params overrides for ganseg's run")
    parser.add_argument("--data", type=Path, default=DSB, help="DSB folder with images/ and masks/")
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "ganseg-quality-bench",
                        help="folder for quality_bench.json (and work/ while it runs)")
    parser.add_argument("--smoke", action="store_true", help="40 pairs of 256x256, 6 curve images, 4 points, 1 minute unless --minutes")
    parser.add_argument("--keep", action="store_true", help="keep the snapshots and the work folder")
    args = parser.parse_args(argv)
    if args.smoke:
        args.curve_images, args.points = min(args.curve_images, 6), 4
    args.minutes = args.minutes or (1.0 if args.smoke else 15.0)
    budget_s = args.minutes * 60
    if args.short_minutes is None:
        args.short_minutes = "" if args.smoke else "1.5,3"
    short_budgets = sorted({float(m) for m in args.short_minutes.split(",") if m.strip()})
    if any(not 0 < m < args.minutes for m in short_budgets):
        raise SystemExit(f"--short-minutes {args.short_minutes}: each must be between 0 and --minutes ({args.minutes:g})")
    for sub in ("images", "masks"):
        if not (args.data / sub).is_dir():
            raise SystemExit(f"{args.data / sub}: not found; --data must hold DSB 2018's images/ and masks/")
    work = args.out / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    started_load = os.getloadavg()

    # -- params and the split --------------------------------------------------------------
    images_dir, masks_dir = args.data / "images", args.data / "masks"
    if args.smoke:  # a seeded handful of the 256x256 pairs, linked (never copied)
        pairs = pd.read_csv(args.data / "pairs.csv")
        names = sorted(pairs.loc[(pairs["width"] == 256) & (pairs["height"] == 256), "name"])
        chosen = np.random.default_rng(0).choice(names, size=40, replace=False)
        images_dir, masks_dir = work / "dsb_subset" / "images", work / "dsb_subset" / "masks"
        images_dir.mkdir(parents=True)
        masks_dir.mkdir(parents=True)
        for name in chosen:
            (images_dir / name).symlink_to(args.data / "images" / name)
            (masks_dir / name).symlink_to(args.data / "masks" / name)
    user = load_yaml(args.params) if args.params else {}
    params_data = _deep_merge(_deep_merge(load_yaml(REPO / "params.yaml"), dsb_overrides(images_dir, masks_dir)), user)
    params_data = _deep_merge(params_data, {"train": {"resume": False}})
    params_path = work / "params.yaml"
    params_path.write_text(yaml.safe_dump(params_data, sort_keys=False))
    from ganseg.config import load_params
    from ganseg.config.train import TrainConfig

    params = load_params(params_path)
    length, length_how = ganseg_length(set(TrainConfig.model_fields), user, budget_s)
    channels, seed = params.common.channels, params.common.seed
    prepared = work / "prepared"
    print(f"prepare: {images_dir.parent} -> {prepared}", flush=True)
    run_checked([PYTHON, "-m", "pipelines", "prepare", "--params", str(params_path), "--out", str(prepared),
                 "--reports", str(work / "reports" / "prepare"), "--metrics", str(work / "metrics" / "prepare.json")],
                work, work / "prepare.log", "prepare")
    print(_tail(work / "prepare.log", 1), flush=True)

    # -- ganseg ------------------------------------------------------------------------------
    if length:
        params_data = _deep_merge(params_data, {"train": length})
        params_path.write_text(yaml.safe_dump(params_data, sort_keys=False))
    print(f"\nganseg train stage: {args.minutes:g} min; length: {length_how} {length or ''}", flush=True)
    ganseg_run = run_ganseg(work, params_path, prepared, budget_s, "ganseg")
    print(_tail(ganseg_run["log"], 3), flush=True)
    short_runs = {}
    for minutes in short_budgets if length else ():  # train.steps set: every run would be the same length
        short_length, _ = ganseg_length(set(TrainConfig.model_fields), user, minutes * 60)
        short_params = work / f"params_{minutes:g}min.yaml"
        short_params.write_text(yaml.safe_dump(_deep_merge(params_data, {"train": short_length}), sort_keys=False))
        print(f"\nganseg train stage, {minutes:g} min budget: {short_length}", flush=True)
        short_runs[minutes] = run_ganseg(work, short_params, prepared, minutes * 60, f"ganseg_{minutes:g}min")
        print(_tail(short_runs[minutes]["log"], 2), flush=True)

    # -- baseline --------------------------------------------------------------------------
    baseline_out = work / "baseline"
    print(f"\nbaseline (milesial recipe): {args.minutes:g} min", flush=True)
    origin = time.time()
    command = [PYTHON, str(REPO / "benchmarks" / "milesial_unet.py"), "--prepared", str(prepared),
               "--out", str(baseline_out), "--minutes", str(args.minutes), "--channels", str(channels),
               "--seed", str(seed), "--snapshots", str(args.points), "--started-at", repr(origin)]
    with (work / "baseline.log").open("w") as handle:
        code = subprocess.run(command, check=False, cwd=work, env=stage_env(), stdout=handle, stderr=subprocess.STDOUT,
                              timeout=budget_s + 15 * 60).returncode
    if code != 0:
        raise SystemExit(f"baseline failed (exit {code}); last lines of {work / 'baseline.log'}:\n"
                         f"{_tail(work / 'baseline.log')}")
    baseline_run = json.loads((baseline_out / "run.json").read_text())
    print(_tail(work / "baseline.log", 3), flush=True)

    # -- scoring -----------------------------------------------------------------------------
    print("\nscoring the snapshots ...", flush=True)
    test_images = load_test_images(prepared, channels, params.prepare.resize_mode)
    rng = np.random.default_rng(seed)
    subset = sorted(rng.choice(len(test_images), size=min(args.curve_images, len(test_images)), replace=False))
    curve_images = [test_images[i] for i in subset]

    baseline_files = sorted((baseline_out / "snapshots").glob("step_*.pt"))
    baseline_curve = []
    for path in baseline_files:
        meta = torch.load(path, map_location="cpu", weights_only=True)
        if meta["elapsed_s"] <= budget_s:
            baseline_curve.append(Scored(meta["elapsed_s"], score_baseline(path, curve_images),
                                         f"step {meta['step']} (val Dice {meta['val_dice'] or float('nan'):.3f})",
                                         {"path": path, "step": meta["step"]}))
    ganseg_curve = []
    for snap in ganseg_snapshots(ganseg_run):
        if snap["t"] <= budget_s:
            network = ganseg_network(snap["state_dict"], snap["config"])
            ganseg_curve.append(Scored(snap["t"], score_ganseg(network, snap["tile"], curve_images),
                                       f"step {snap['step']}", {"network": network, "tile": snap["tile"],
                                                                 "step": snap["step"]}))
    curves = {"baseline (milesial recipe)": baseline_curve, "ganseg (train stage)": ganseg_curve}
    for minutes, run in short_runs.items():
        curves[f"ganseg (train stage, {minutes:g} min budget)"] = [
            Scored(snap["t"], score_ganseg(ganseg_network(snap["state_dict"], snap["config"]), snap["tile"],
                                           curve_images), f"step {snap['step']}", {"step": snap["step"]})
            for snap in ganseg_snapshots(run) if snap["t"] <= minutes * 60]
    print_curves(curves)

    bar = baseline_curve[-1].dice
    t_baseline, t_ganseg = time_to_bar(curves, bar).values()
    t_ganseg_full = first_reaching(ganseg_curve, bar)
    ratio = (t_ganseg / t_baseline) if t_ganseg is not None and t_baseline else math.inf
    ratio_full = (t_ganseg_full / t_baseline) if t_ganseg_full is not None and t_baseline else math.inf
    # When the baseline ends below its untrained start, "first reaches its final Dice" is its
    # step-0 snapshot: the figure then says nothing about training. Beside it (never instead of
    # it), the same figure over the trained snapshots only.
    untrained = baseline_curve[0].dice if baseline_curve and baseline_curve[0].extra.get("step") == 0 else None
    trained_times = time_to_bar_trained(curves, bar)
    ratio_trained = (trained_times["ganseg"] / trained_times["baseline"]
                     if None not in trained_times.values() else math.inf)
    validation_share = baseline_run["validation_s"] / max(baseline_run["elapsed_s"], 1e-9)
    # The baseline's clock without its validation rounds, at the moment it first reached the bar.
    history = pd.read_csv(baseline_out / "history.csv") if (baseline_out / "history.csv").is_file() else None
    t_baseline_train_only = t_baseline
    if history is not None and t_baseline is not None:
        rounds_before = history[history["elapsed_s"] <= t_baseline + 1e-6]
        per_round = baseline_run["validation_s"] / max(len(history), 1)
        t_baseline_train_only = t_baseline - per_round * len(rounds_before)
    ratio_train_only = (t_ganseg / t_baseline_train_only) if t_ganseg is not None and t_baseline_train_only else math.inf

    print("\nfinal models on the whole test split "
          f"({len(test_images)} images; curves: {len(curve_images)}) ...", flush=True)
    finals = {"baseline_last": score_baseline(baseline_curve[-1].extra["path"], test_images),
              "ganseg_last": score_ganseg(ganseg_curve[-1].extra["network"], ganseg_curve[-1].extra["tile"],
                                          test_images) if ganseg_curve else None}
    if ganseg_run["model_file"] is not None:
        from ganseg.models.model_file import load_unet, read_model_file

        finals["ganseg_published"] = score_ganseg(load_unet(ganseg_run["model_file"]),
                                                  read_model_file(ganseg_run["model_file"]).get("image_size"),
                                                  test_images)

    verdict = "PASS" if ratio <= TARGET_RATIO else "FAIL"
    print(f"\nbaseline final Dice (curve images, t = {baseline_curve[-1].t:.0f}s): {bar:.4f}")
    print(f"first reached: baseline {_seconds(t_baseline)}, ganseg {_seconds(t_ganseg)} "
          f"(at the first snapshot at or above it; ganseg's {args.minutes:g}-min run alone: {_seconds(t_ganseg_full)})")
    print(f"ratio ganseg / baseline: {ratio:.3f}  -> {verdict} (target <= {TARGET_RATIO}); "
          f"the {args.minutes:g}-min run alone: {ratio_full:.3f}")
    if untrained is not None and untrained >= bar:
        print(f"note: the baseline's final Dice {bar:.4f} is below its untrained start ({untrained:.4f}), so it "
              "'first reached' it at step 0")
    print(f"trained snapshots only (step 0 left out): baseline {_seconds(trained_times['baseline'])}, ganseg "
          f"{_seconds(trained_times['ganseg'])}, ratio {ratio_trained:.3f}")
    print(f"baseline spent {100 * validation_share:.0f}% of its time in validation rounds; against its clock "
          f"without them: ratio {ratio_train_only:.3f}")
    print("whole test split: " + ", ".join(f"{k} {v:.4f}" for k, v in finals.items() if v is not None))
    print(f"ganseg: {'stopped at the budget' if ganseg_run['stopped_at_budget'] else 'finished'} after "
          f"{ganseg_run['wall_s']:.0f}s; baseline: {baseline_run['steps']} steps, {baseline_run['elapsed_s']:.0f}s")

    result = {
        "budget_s": budget_s, "smoke": args.smoke, "target_ratio": TARGET_RATIO, "verdict": verdict,
        "ratio": ratio if math.isfinite(ratio) else None,
        "ratio_vs_baseline_without_validation": ratio_train_only if math.isfinite(ratio_train_only) else None,
        "ratio_full_budget_run_only": ratio_full if math.isfinite(ratio_full) else None,
        "ratio_trained_snapshots_only": ratio_trained if math.isfinite(ratio_trained) else None,
        "time_to_bar_trained_snapshots_s": trained_times,
        "baseline_untrained_dice": untrained,
        "short_budgets_minutes": list(short_runs),
        "baseline_final_dice_curve_images": bar,
        "time_to_bar_s": {"baseline": t_baseline, "ganseg": t_ganseg, "ganseg_full_budget_run": t_ganseg_full,
                          "baseline_without_validation": t_baseline_train_only},
        "curves": {name: [{"t": p.t, "dice": p.dice, "snapshot": p.label} for p in curve]
                   for name, curve in curves.items()},
        "whole_test_split": finals, "test_images": len(test_images), "curve_images": [i.pair_id for i in curve_images],
        "baseline_run": baseline_run, "baseline_validation_share": validation_share,
        "ganseg_run": {"wall_s": ganseg_run["wall_s"], "stopped_at_budget": ganseg_run["stopped_at_budget"],
                       "exit_code": ganseg_run["exit_code"], "length": length_how, "train_overrides": length},
        "ganseg_short_runs": {f"{m:g}": {"wall_s": run["wall_s"], "stopped_at_budget": run["stopped_at_budget"],
                                         "exit_code": run["exit_code"]} for m, run in short_runs.items()},
        "params_overrides": user, "machine": {**machine(), "load_average_at_start": started_load},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "quality_bench.json").write_text(json.dumps(result, indent=2, default=str))
    print(f"-> {args.out / 'quality_bench.json'}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return result


def _seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.0f}s"


if __name__ == "__main__":
    main()
