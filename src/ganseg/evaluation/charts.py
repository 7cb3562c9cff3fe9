"""PNG charts for the evaluation report (matplotlib, headless Agg backend)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from ganseg.evaluation.bootstrap import Interval
from ganseg.io import atomic_path


def interval_bar_chart(
    summary: dict[str, dict[str, Interval]],
    panels: Sequence[tuple[str, Sequence[str], bool]],
    path: Path,
    title: str,
    confidence: float,
    labels: dict[str, str] | None = None,
) -> None:
    """Grouped bars with interval whiskers: one group per metric, one bar per model.

    ``panels``: ``(y label, metric names, values in [0, 1])`` per subplot, side by side, so
    that metrics on different scales (Dice vs HD95 in pixels) each get their own axis.
    """
    labels = labels or {}
    variants = list(summary)
    width = 0.8 / max(len(variants), 1)
    ratios = [max(len(metrics), 1) for _, metrics, _ in panels]
    fig, axes = plt.subplots(
        1, len(panels), figsize=(1.8 + 1.3 * sum(ratios), 4.2), dpi=110, squeeze=False,
        gridspec_kw={"width_ratios": ratios},
    )
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (ylabel, metrics, unit_range) in zip(axes[0], panels):
        x = np.arange(len(metrics))
        for index, variant in enumerate(variants):
            cells = [summary[variant].get(metric) for metric in metrics]
            means = np.array([c.mean if c else np.nan for c in cells])
            below = np.array([c.mean - c.low if c else np.nan for c in cells])
            above = np.array([c.high - c.mean if c else np.nan for c in cells])
            offset = (index - (len(variants) - 1) / 2) * width
            ax.bar(x + offset, means, width, label=variant, color=colours[index % len(colours)],
                   yerr=np.vstack([below, above]), capsize=3)
        ax.set_xticks(x, [labels.get(m, m) for m in metrics])
        if unit_range:
            ax.set_ylim(0, 1.05)
        ax.set_ylabel(ylabel)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].legend(loc="lower right", fontsize=8)
    fig.suptitle(f"{title}\n(whiskers: {confidence:.0%} bootstrap interval over test images)", fontsize=10)
    fig.tight_layout()
    _save(fig, path)


def image_grid(rows: Sequence[tuple[str, Sequence[tuple[np.ndarray, str]]]], path: Path, title: str) -> None:
    """A grid of (H, W, 3) uint8 images: one row per ``(row label, [(image, caption), ...])``.
    Sizes may differ: each image is drawn whole, at its own aspect ratio, fitted to its cell."""
    columns = max((len(cells) for _, cells in rows), default=0)
    if columns == 0:
        return
    fig, axes = plt.subplots(
        len(rows), columns, figsize=(2.1 * columns, 2.3 * len(rows) + 0.5), dpi=110, squeeze=False
    )
    for row_index, (label, cells) in enumerate(rows):
        for col in range(columns):
            ax = axes[row_index][col]
            ax.axis("off")
            if col < len(cells):
                image, caption = cells[col]
                ax.imshow(image, interpolation="nearest")
                ax.set_title(caption, fontsize=7)
        axes[row_index][0].text(
            -0.08, 0.5, label, transform=axes[row_index][0].transAxes, rotation=90, va="center", ha="right", fontsize=9
        )
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    _save(fig, path)


def _save(fig, path: Path) -> None:
    # Fixed metadata: the same figure gives the same bytes, so DVC sees no change on re-runs.
    with atomic_path(Path(path)) as temp:
        fig.savefig(temp, format="png", metadata={"Software": None})
    plt.close(fig)
