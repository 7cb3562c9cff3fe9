"""Deterministic train/val/test split, stratified by foreground fraction, duplicates together.

Pairs with identical image content are one group and always land in the same split, so no
content leaks between train and test. Groups are binned by foreground-fraction quantile
(``strata`` bins), shuffled by the seed inside each bin and dealt out in proportion to the
fractions, so every split sees small, medium and large objects. A user's test list overrides the test split.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ganseg.errors import DataError

SPLITS = ("train", "val", "test")


def assign_splits(
    manifest: pd.DataFrame,
    fractions: dict[str, float],
    seed: int,
    strata: int,
    test_ids: set[str] | None = None,
) -> pd.Series:
    """A split name per row of ``manifest`` (needs pair_id, content_hash, foreground_fraction)."""
    split = pd.Series("", index=manifest.index, dtype=object)
    groups = manifest.groupby("content_hash", sort=True)
    group_table = pd.DataFrame(
        {
            "first_id": groups["pair_id"].min(),
            "foreground": groups["foreground_fraction"].mean(),
            "members": groups.indices.values(),
        }
    )
    if test_ids is not None:
        unknown = test_ids - set(manifest["pair_id"])
        if unknown:
            raise DataError(f"prepare.split.test_list: unknown id(s) {sorted(unknown)[:5]}")
        in_test = groups["pair_id"].agg(lambda ids: bool(set(ids) & test_ids))
        for members in group_table.loc[in_test.values, "members"]:
            split.iloc[members] = "test"
        group_table = group_table.loc[~in_test.values]
        total = fractions["train"] + fractions["val"]
        fractions = {"train": fractions["train"] / total, "val": fractions["val"] / total, "test": 0.0}

    # Order groups stratum by stratum (shuffled inside each by the seed), then deal them out so
    # that every prefix of the order is split as close to the fractions as possible: each split
    # gets its share of every stratum, and the global counts match the fractions.
    rng = np.random.default_rng(seed)
    bins = min(strata, max(1, len(group_table) // 3))
    order: list = []
    if len(group_table):
        ranks = group_table["foreground"].rank(method="first")
        group_table["stratum"] = pd.qcut(ranks, bins, labels=False) if bins > 1 else 0
        for _, stratum in group_table.groupby("stratum", sort=True):
            keys = stratum.sort_values("first_id").index.to_numpy()
            order.extend(keys[rng.permutation(len(keys))])
    dealt = dict.fromkeys(SPLITS, 0)
    for key in order:
        members = group_table.at[key, "members"]
        total = sum(dealt.values()) + len(members)
        name = max(SPLITS, key=lambda s: (fractions[s] * total - dealt[s], -SPLITS.index(s)))
        dealt[name] += len(members)
        split.iloc[members] = name
    return split
