from __future__ import annotations

import pandas as pd

from ganseg.training.history import HistoryWriter, plot_history


def test_one_row_per_epoch_columns_in_first_seen_order(tmp_path):
    rows = [{"epoch": 1, "train/loss": 0.9, "val/dice": 0.5},
            {"epoch": 2, "train/loss": 0.7, "val/dice": 0.6, "train/grad_norm": 1.5}]
    path = tmp_path / "plots" / "history.csv"
    HistoryWriter(path).write(rows)
    assert path.read_text().splitlines()[0] == "epoch,train/loss,val/dice,train/grad_norm"
    back = pd.read_csv(path)
    assert back["val/dice"].tolist() == [0.5, 0.6] and pd.isna(back.loc[0, "train/grad_norm"])
    plot_history(rows, tmp_path / "curves.png")
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"
