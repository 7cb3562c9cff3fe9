"""The training history of every trainer: the CSV that ``dvc plots`` draws, and a PNG of it for MLflow.

One row per interval of the training loop (an epoch for the segmenters, ``log_interval`` steps
for the GAN), columns ``epoch`` (or ``step``) then the namespaced metrics (``train/loss``,
``val/dice``, ``gan/d_loss``, ...). The file is rewritten whole and atomically after every epoch, so a
reader never sees half a row and a resumed run (whose history comes from its checkpoint)
continues the same file.
"""

from __future__ import annotations

import csv
import io as _io
from collections.abc import Sequence
from pathlib import Path

from ganseg import io


def history_columns(rows: Sequence[dict]) -> list[str]:
    """The x column first (``epoch`` for the segmenters, ``step`` for the GAN), then every other
    key in order of first appearance."""
    columns: list[str] = [next(iter(rows[0]))] if rows else ["epoch"]
    for row in rows:
        columns += [key for key in row if key not in columns]
    return columns


class HistoryWriter:
    def __init__(self, path: Path):
        self.path = Path(path)

    def write(self, rows: Sequence[dict]) -> None:
        buffer = _io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=history_columns(rows), lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({key: _fmt(value) for key, value in row.items()})
        io.write_text(self.path, buffer.getvalue())


def plot_history(rows: Sequence[dict], path: Path, title: str = "") -> None:
    """Loss curves on the left, validation Dice on the right; written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    for axis, suffix, ylabel in ((left, "loss", "loss"), (right, "dice", "Dice")):
        for key in history_columns(rows):
            if key.endswith(suffix):
                axis.plot(epochs, [row.get(key) for row in rows], label=key)
        axis.set_xlabel("epoch")
        axis.set_ylabel(ylabel)
        axis.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with io.atomic_path(Path(path)) as temp:
        fig.savefig(temp, format="png", dpi=100)
    plt.close(fig)


def _fmt(value):
    if isinstance(value, float):
        return f"{value:.6g}"
    return value
