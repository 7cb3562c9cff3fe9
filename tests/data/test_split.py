import numpy as np
import pandas as pd
import pytest

from ganseg.data.split import assign_splits
from ganseg.errors import DataError

FRACTIONS = {"train": 0.7, "val": 0.15, "test": 0.15}


def _manifest(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "pair_id": [f"p{i:03d}" for i in range(n)],
            "content_hash": [f"h{i:03d}" for i in range(n)],
            "foreground_fraction": rng.uniform(0, 0.5, n),
        }
    )


def test_deterministic_by_seed_and_fractions_respected():
    manifest = _manifest(200)
    first = assign_splits(manifest, FRACTIONS, seed=3, strata=4)
    assert first.equals(assign_splits(manifest, FRACTIONS, seed=3, strata=4))
    assert not first.equals(assign_splits(manifest, FRACTIONS, seed=4, strata=4))
    counts = first.value_counts()
    assert counts["train"] == 140 and counts["val"] == 30 and counts["test"] == 30
    # Independent of row order: the same ids get the same splits.
    shuffled = manifest.sample(frac=1, random_state=1)
    again = assign_splits(shuffled, FRACTIONS, seed=3, strata=4)
    assert again.sort_index().equals(first.sort_index())


def test_stratified_by_foreground():
    manifest = _manifest(400)
    split = assign_splits(manifest, FRACTIONS, seed=0, strata=4)
    overall = manifest["foreground_fraction"].quantile([0.25, 0.75]).to_numpy()
    for name in ("train", "val", "test"):
        quartiles = manifest.loc[split == name, "foreground_fraction"].quantile([0.25, 0.75]).to_numpy()
        assert np.allclose(quartiles, overall, atol=0.04)


def test_tiny_set_still_gets_every_split():
    split = assign_splits(_manifest(7), FRACTIONS, seed=0, strata=4)
    assert set(split) == {"train", "val", "test"}


def test_duplicates_share_a_split_and_test_list_wins():
    manifest = _manifest(60)
    manifest.loc[10:19, "content_hash"] = "same"
    split = assign_splits(manifest, FRACTIONS, seed=0, strata=4, test_ids={"p003", "p015"})
    assert split.loc[10:19].nunique() == 1 and split.loc[15] == "test"
    assert split.loc[3] == "test"
    with pytest.raises(DataError, match="unknown id"):
        assign_splits(manifest, FRACTIONS, seed=0, strata=4, test_ids={"zzz"})


def test_seeds_share_one_test_split_and_never_train_on_each_others_test_images():
    """Issue 18.1: with the DSB fractions, seed 1's training images were 35% of seed 2's test
    split. The test split now has its own seed; train/val still follow the training seed."""
    manifest = _manifest(300)
    fractions = {"train": 0.35, "val": 0.15, "test": 0.5}
    splits = {seed: assign_splits(manifest, fractions, seed=seed, strata=4, test_seed=0) for seed in (1, 2, 3)}
    tests = {seed: set(manifest.loc[split == "test", "pair_id"]) for seed, split in splits.items()}
    trains = {seed: set(manifest.loc[split == "train", "pair_id"]) for seed, split in splits.items()}
    assert tests[1] == tests[2] == tests[3] and len(tests[1]) == 150
    for a in splits:
        for b in splits:
            assert not trains[a] & tests[b], (a, b)
    assert trains[1] != trains[2]  # the seed still picks which images are labelled for training
    # The old behaviour on request: the test split moves with the seed.
    legacy = {seed: set(manifest.loc[assign_splits(manifest, fractions, seed=seed, strata=4, test_seed=None) == "test",
                                     "pair_id"]) for seed in (1, 2)}
    assert legacy[1] != legacy[2]


def test_unlabeled_share_is_carved_from_the_non_test_part_and_leaves_the_test_split_alone():
    """prepare.split.unlabeled: a share of the labelled pairs written without masks. The test
    split is drawn before it, so it is the same test split (same test_seed) with or without it."""
    manifest = _manifest(200)
    without = assign_splits(manifest, FRACTIONS, seed=3, strata=4, test_seed=0)
    explicit_zero = assign_splits(manifest, {**FRACTIONS, "unlabeled": 0.0}, seed=3, strata=4, test_seed=0)
    assert explicit_zero.equals(without)  # a zero share is today's split, exactly
    few_labels = {"train": 0.15, "val": 0.1, "test": 0.15, "unlabeled": 0.6}
    split = assign_splits(manifest, few_labels, seed=3, strata=4, test_seed=0)
    counts = split.value_counts()
    assert (counts["train"], counts["val"], counts["test"], counts["unlabeled"]) == (30, 20, 30, 120)
    assert set(manifest.loc[split == "test", "pair_id"]) == set(manifest.loc[without == "test", "pair_id"])
    # Every id in exactly one split; another training seed moves train/val/unlabeled, never test.
    other = assign_splits(manifest, few_labels, seed=4, strata=4, test_seed=0)
    assert (other == "test").equals(split == "test") and not other.equals(split)
    # Stratified like the others: the unlabeled share spans the foreground range.
    overall = manifest["foreground_fraction"].quantile([0.25, 0.75]).to_numpy()
    quartiles = manifest.loc[split == "unlabeled", "foreground_fraction"].quantile([0.25, 0.75]).to_numpy()
    assert np.allclose(quartiles, overall, atol=0.04)


def test_unlabeled_share_with_a_test_list_and_with_duplicates():
    manifest = _manifest(60)
    manifest.loc[10:19, "content_hash"] = "same"
    fractions = {"train": 0.2, "val": 0.2, "test": 0.2, "unlabeled": 0.4}
    split = assign_splits(manifest, fractions, seed=0, strata=4, test_ids={"p003"})
    assert split.loc[3] == "test" and (split == "test").sum() == 1
    assert split.loc[10:19].nunique() == 1 and (split == "unlabeled").sum() > 0
