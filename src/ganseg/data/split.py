"""Deterministic train/val/test split, stratified by foreground fraction, duplicates together.

Pairs with identical image content are one group and always land in the same split, so no
content leaks between train and test. Groups are binned by foreground-fraction quantile
(``strata`` bins), shuffled by a seed inside each bin and dealt out in proportion to the
fractions, so every split sees small, medium and large objects.

The test split is drawn first, with its own ``test_seed``, and train/val (and the optional
``unlabeled`` share: labelled pairs whose masks are withheld, for semi-supervised fine-tuning)
are then dealt from the rest with the training ``seed``. So runs that differ only in the
training seed share one test split, no seed's training images are another seed's test images,
and the test split does not depend on the unlabeled share. A user's test list replaces the
drawn test split.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ganseg.errors import DataError

SPLITS = ("train", "val", "test")
UNLABELED = "unlabeled"  # a labelled pair written without its mask


def assign_splits(
    manifest: pd.DataFrame,
    fractions: dict[str, float],
    seed: int,
    strata: int,
    test_ids: set[str] | None = None,
    test_seed: int | None = None,
) -> pd.Series:
    """A split name per row of ``manifest`` (needs pair_id, content_hash, foreground_fraction):
    one of SPLITS, or UNLABELED when ``fractions`` gives that key a share > 0.

    ``test_seed`` draws the test split (None: ``seed``, so the test split moves with it).
    """
    split = pd.Series("", index=manifest.index, dtype=object)
    groups = manifest.groupby("content_hash", sort=True)
    group_table = pd.DataFrame(
        {
            "first_id": groups["pair_id"].min(),
            "foreground": groups["foreground_fraction"].mean(),
            "members": groups.indices.values(),
        }
    )
    # Strata are fixed on the whole set, so the two draws below stratify alike.
    bins = min(strata, max(1, len(group_table) // 3))
    if len(group_table):
        ranks = group_table["foreground"].rank(method="first")
        group_table["stratum"] = pd.qcut(ranks, bins, labels=False) if bins > 1 else 0

    if test_ids is not None:
        unknown = test_ids - set(manifest["pair_id"])
        if unknown:
            raise DataError(f"prepare.split.test_list: unknown id(s) {sorted(unknown)[:5]}")
        in_test = groups["pair_id"].agg(lambda ids: bool(set(ids) & test_ids)).to_numpy()
    else:
        test_share = {"test": fractions["test"], "rest": 1.0 - fractions["test"]}
        drawn = _deal(group_table, test_share, np.random.default_rng(seed if test_seed is None else test_seed))
        in_test = (drawn == "test").to_numpy()
    for members in group_table.loc[in_test, "members"]:
        split.iloc[members] = "test"

    # The unlabeled share is carved out of the non-test part only: the test draw above never
    # sees it. With no share, the deal is exactly the two-way train/val deal.
    rest = group_table.loc[~in_test]
    shares = {"train": fractions["train"], "val": fractions["val"]}
    if fractions.get(UNLABELED, 0) > 0:
        shares[UNLABELED] = fractions[UNLABELED]
    total = sum(shares.values())
    dealt = _deal(rest, {name: share / total for name, share in shares.items()}, np.random.default_rng(seed))
    for key, name in dealt.items():
        split.iloc[rest.at[key, "members"]] = name
    return split


def _deal(group_table: pd.DataFrame, fractions: dict[str, float], rng: np.random.Generator) -> pd.Series:
    """A split name per group: groups ordered stratum by stratum (shuffled inside each), then
    dealt so that every prefix of the order is split as close to ``fractions`` as possible:
    each split gets its share of every stratum, and the global counts match the fractions."""
    names = tuple(fractions)
    order: list = []
    if group_table.empty:
        return pd.Series([], dtype=object)
    for _, stratum in group_table.groupby("stratum", sort=True):
        keys = stratum.sort_values("first_id").index.to_numpy()
        order.extend(keys[rng.permutation(len(keys))])
    counts = dict.fromkeys(names, 0)
    chosen = pd.Series("", index=group_table.index, dtype=object)
    for key in order:
        size = len(group_table.at[key, "members"])
        total = sum(counts.values()) + size
        name = max(names, key=lambda s: (fractions[s] * total - counts[s], -names.index(s)))
        counts[name] += size
        chosen[key] = name
    return chosen
