"""Predictions and targets as label maps: the one input form every segmentation metric scores.

- ``target``: integer (N, H, W). Binary (``num_classes=1``): values in {0, 1}, 1 = foreground.
  Multi-class (``num_classes=K>=2``): values 0..K-1, 0 = background.
- ``pred``: either a label map of the same form, or scores:
  binary: float (N, H, W) or (N, 1, H, W) foreground probabilities in [0, 1] (apply the
  sigmoid to logits first), foreground where p > ``threshold`` (0.5);
  multi-class: float (N, K, H, W) probabilities or logits, label = argmax over K.
- Scored classes are the foreground ones: [1] when binary, 1..K-1 otherwise; every per-image
  metric returns (N, C) with column j = class ``foreground_classes(num_classes)[j]``.
"""

from __future__ import annotations

import torch


def foreground_classes(num_classes: int) -> list[int]:
    """[1] for binary (num_classes=1), else 1..K-1 (class 0 is background)."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    return [1] if num_classes == 1 else list(range(1, num_classes))


def label_count(num_classes: int) -> int:
    """How many label values exist: 2 for binary ({0, 1}), K otherwise."""
    return max(num_classes, 2)


def to_label_map(pred: torch.Tensor, num_classes: int, threshold: float = 0.5) -> torch.Tensor:
    """Label map (N, H, W) int64 from a label map or from scores (see the module docstring)."""
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


def validate_label_maps(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> None:
    """Same (N, H, W) shape, integer target, every value a valid label."""
    if target.is_floating_point() or target.ndim != 3:
        raise ValueError(f"target must be an integer label map (N, H, W), got {target.dtype} {tuple(target.shape)}")
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    count = label_count(num_classes)
    for name, labels in (("pred", pred), ("target", target)):
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= count):
            raise ValueError(
                f"{name} has labels outside 0..{count - 1} (min {int(labels.min())}, max {int(labels.max())}) "
                f"for num_classes={num_classes}"
            )
