"""Predictions and targets as label maps: the one input form every segmentation metric scores.

- ``target``: integer (N, H, W), or a list of N integer (H, W) maps whose sizes may differ.
  Binary (``num_classes=1``): values in {0, 1}, 1 = foreground. Multi-class
  (``num_classes=K>=2``): values 0..K-1, 0 = background. It may also hold :data:`IGNORE`
  (outside the region of interest, or padding): those pixels are scored by no metric.
- ``pred``: the same form as ``target`` (a stacked tensor or a list), as label maps or scores:
  binary: float (N, H, W) or (N, 1, H, W) foreground probabilities in [0, 1] (apply the
  sigmoid to logits first), foreground where p > ``threshold`` (0.5);
  multi-class: float (N, K, H, W) probabilities or logits, label = argmax over K. A list holds
  one image's (H, W), (1, H, W) or (K, H, W) per element. ``pred`` never holds IGNORE: the
  prediction outside the region of interest is whatever the model said, and is not scored.
- Scored classes are the foreground ones: [1] when binary, 1..K-1 otherwise; every per-image
  metric returns (N, C) with column j = class ``foreground_classes(num_classes)[j]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ganseg.data.pairs import IGNORE

LabelMaps = torch.Tensor | Sequence[torch.Tensor]  # stacked (N, ...) or one tensor per image


def foreground_classes(num_classes: int) -> list[int]:
    """[1] for binary (num_classes=1), else 1..K-1 (class 0 is background)."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    return [1] if num_classes == 1 else list(range(1, num_classes))


def label_count(num_classes: int) -> int:
    """How many label values exist: 2 for binary ({0, 1}), K otherwise."""
    return max(num_classes, 2)


def to_label_map(pred: torch.Tensor, num_classes: int, threshold: float = 0.5) -> torch.Tensor:
    """Label map (N, H, W) int64 from a stacked label map or scores (see the module docstring)."""
    if pred.is_floating_point():
        if num_classes == 1:
            scores = pred.squeeze(1) if pred.ndim == 4 and pred.shape[1] == 1 else pred
            if scores.ndim != 3:
                raise ValueError(f"binary scores must be (N, H, W) or (N, 1, H, W), got {tuple(pred.shape)}")
            if scores.numel() and (scores.min() < 0 or scores.max() > 1):
                raise ValueError("binary scores must be probabilities in [0, 1]; apply torch.sigmoid to logits")
            return (scores > threshold).long()
        if pred.ndim != 4 or pred.shape[1] != num_classes:
            raise ValueError(f"multi-class scores must be (N, {num_classes}, H, W), got {tuple(pred.shape)}")
        return pred.argmax(dim=1)
    labels = pred.squeeze(1) if pred.ndim == 4 and pred.shape[1] == 1 else pred
    return labels.long()


def label_map_pairs(pred: LabelMaps, target: LabelMaps, num_classes: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(pred, target) int64 (H, W) label maps per image, each pair checked; stacked tensors and
    lists of per-image tensors (sizes may differ) alike."""
    if isinstance(pred, torch.Tensor):
        preds = list(to_label_map(pred, num_classes).unbind(0))
    else:
        preds = [to_label_map(scores[None], num_classes)[0] for scores in pred]  # one image as a batch of one
    if isinstance(target, torch.Tensor):
        if target.is_floating_point() or target.ndim != 3:
            raise ValueError(f"target must be an integer label map (N, H, W), got {target.dtype} {tuple(target.shape)}")
        targets = list(target.long().unbind(0))
    else:
        targets = [labels.long() for labels in target]
    if len(preds) != len(targets):
        raise ValueError(f"{len(preds)} predictions for {len(targets)} targets")
    for index, (labels, truth) in enumerate(zip(preds, targets)):
        validate_label_maps(labels, truth, num_classes, name=f"image {index}")
    return list(zip(preds, targets))


def validate_label_maps(pred: torch.Tensor, target: torch.Tensor, num_classes: int, name: str = "") -> None:
    """Same shape, integer target, every value a valid label (``target`` may also hold IGNORE)."""
    prefix = f"{name}: " if name else ""
    if target.is_floating_point() or target.ndim not in (2, 3):
        raise ValueError(f"{prefix}target must be an integer label map (H, W) or (N, H, W), "
                         f"got {target.dtype} {tuple(target.shape)}")
    if pred.shape != target.shape:
        raise ValueError(f"{prefix}pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    count = label_count(num_classes)
    scored = target[target != IGNORE]
    for role, labels in (("pred", pred), ("target", scored)):
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= count):
            allowed = f"0..{count - 1}" + (f" (or {IGNORE} = ignore)" if role == "target" else "")
            raise ValueError(
                f"{prefix}{role} has labels outside {allowed} (min {int(labels.min())}, max {int(labels.max())}) "
                f"for num_classes={num_classes}"
            )
