"""The evaluate stage's headline metrics, in report order (no heavy imports: the CLI reads them)."""

# hd95 is the boundary metric: pixels, lower is better.
METRICS = ("dice", "iou", "precision", "recall", "hd95")
LOWER_IS_BETTER = frozenset({"hd95"})
LABELS = {"dice": "Dice", "iou": "IoU", "precision": "precision", "recall": "recall", "hd95": "HD95 (px)"}
