"""The fixed subset of validation images that a validation during training scores."""

from ganseg.training.validation import MIN_VALIDATION_IMAGES, subset_pixel_share, validation_subset


def test_subset_holds_the_share_of_the_pixels_nearest_and_is_fixed_by_the_seed():
    sizes = [(100, 100)] * 40  # equal images: the share is a count
    chosen = validation_subset(sizes, 0.5, seed=3)
    assert len(chosen) == 20 and chosen == sorted(chosen) and len(set(chosen)) == 20
    assert chosen == validation_subset(sizes, 0.5, seed=3)
    assert chosen != validation_subset(sizes, 0.5, seed=4)
    assert subset_pixel_share(sizes, chosen) == 0.5


def test_subset_keeps_at_least_ten_images_and_all_at_share_one():
    sizes = [(64, 64)] * 30
    assert len(validation_subset(sizes, 0.01, seed=0)) == MIN_VALIDATION_IMAGES == 10
    assert validation_subset(sizes, 1.0, seed=0) == list(range(30))
    assert validation_subset(sizes[:5], 0.01, seed=0) == list(range(5))


def test_subset_counts_pixels_not_images():
    # 20 images of 10,000 px and 20 of 40,000: a share of the images would miss a share of the
    # pixels by about 0.05 (one standard deviation); the nearest prefix misses by at most half an
    # image, 0.02.
    sizes = [(100, 100)] * 20 + [(200, 200)] * 20
    for seed in range(8):
        for share in (0.3, 0.5, 0.7):
            chosen = validation_subset(sizes, share, seed=seed)
            assert abs(subset_pixel_share(sizes, chosen) - share) <= 40_000 / 1_000_000 / 2 + 1e-9
