"""One adversarial fine-tuning step: every discriminator and GAN loss, stabilisers, unlabeled data."""

import copy
import math

import pytest
import torch

from ganseg.config.augment import GanObjectiveConfig
from ganseg.finetune.step import UnlabeledBatches
from ganseg.gan.pool import ImagePool
from ganseg.training.checkpoint import TrainState
from tests.finetune.conftest import build_step, tiny_batch

LOSSES = ["bce", "lsgan", "hinge", "wgan", "wgan_gp"]


def _params(module: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in module.parameters()]).clone()


def _run(step, batch, counter, steps=2) -> dict:
    stats = {}
    for _ in range(steps):  # a lazy phase's stats come on its steps only: keep the latest of each
        counter[0] += 1
        stats.update(step(batch, counter[0]))
    return {name: float(value) for name, value in stats.items()}


@pytest.mark.parametrize("kind", ["patchgan", "pixel"])
@pytest.mark.parametrize("loss", LOSSES)
def test_two_steps_train_both_networks_without_nan(kind, loss):
    counter = [0]
    step, unet, discriminator = build_step(kind=kind, objective=GanObjectiveConfig(loss=loss), counter=counter)
    unet_before, d_before = _params(unet), _params(discriminator)
    stats = _run(step, tiny_batch(), counter)
    assert all(math.isfinite(value) for value in stats.values()), stats
    assert {"gan/d_loss", "gan/g_adv", "train/loss", "train/loss_dice", "train/g_loss"} <= set(stats)
    assert not torch.equal(_params(unet), unet_before)
    assert not torch.equal(_params(discriminator), d_before)
    assert torch.isfinite(_params(unet)).all() and torch.isfinite(_params(discriminator)).all()
    if loss == "wgan":  # the weight clip of the stabilisers ran after the D step
        assert _params(discriminator).abs().max() <= 0.01 + 1e-7
    if loss == "wgan_gp":
        assert stats["gan/d_gp"] > 0


@pytest.mark.parametrize("objective", [
    GanObjectiveConfig(loss="bce", r1_gamma=1.0, r1_interval=2, label_smoothing=0.1),
    GanObjectiveConfig(loss="lsgan", spectral_norm=True, instance_noise=0.5, image_pool=4),
    GanObjectiveConfig(loss="hinge", weight_penalty=1e-4, minibatch_std=True, d_steps_per_g=2),
], ids=["r1-lazy-smoothing", "spectral-noise-pool", "l2-mbstd-2dsteps"])
def test_stabilisers_of_the_augment_stage_plug_in(objective):
    counter = [0]
    step, _, _ = build_step(objective=objective, counter=counter)
    stats = _run(step, tiny_batch(), counter, steps=3)
    assert all(math.isfinite(value) for value in stats.values()), stats
    if objective.r1_gamma:
        assert stats["gan/d_r1"] >= 0  # lazy: reported on the steps it runs
    if objective.weight_penalty:
        assert stats["gan/d_weight_l2"] > 0


def test_multi_class_masks_with_the_pixel_discriminator():
    counter = [0]
    step, _, _ = build_step(kind="pixel", num_classes=3, counter=counter)
    images, masks = tiny_batch()
    stats = _run(step, (images, (masks * 2).to(torch.uint8)), counter)
    assert math.isfinite(stats["train/g_loss"]) and math.isfinite(stats["gan/d_loss"])


def test_unlabeled_images_change_the_generator_loss_and_the_update():
    """The semi-supervised mode really uses the unlabeled images."""
    batch = tiny_batch(4, seed=0)
    unlabeled = tiny_batch(6, seed=1)[0]
    other_unlabeled = tiny_batch(6, seed=2)[0]
    results = {}
    for name, pool in (("none", None), ("unlabeled", unlabeled), ("other", other_unlabeled)):
        step, unet, _ = build_step(unlabeled=pool, threshold=0.2)
        stats = step(batch, 1)
        results[name] = (float(stats["train/g_loss"]), _params(unet), stats)
    g_none, unet_none, _ = results["none"]
    g_semi, unet_semi, semi_stats = results["unlabeled"]
    g_other, _, _ = results["other"]
    assert semi_stats["semi/trusted_fraction"] > 0 and semi_stats["semi/self_training"] > 0
    # the labelled part is identical (same seeds, same batch): the difference is the unlabeled terms
    assert float(semi_stats["train/loss"]) == pytest.approx(float(results["none"][2]["train/loss"]), rel=1e-6)
    assert g_semi == pytest.approx(g_none + float(semi_stats["semi/loss"]), rel=1e-5)
    assert g_semi != pytest.approx(g_none, rel=1e-4)
    assert g_other != pytest.approx(g_semi, rel=1e-5)  # which images matters, not just that there are some
    assert not torch.equal(unet_semi, unet_none)


def test_unlabeled_terms_wait_for_the_warm_up():
    batch, unlabeled = tiny_batch(4, seed=0), tiny_batch(6, seed=1)[0]
    counter = [0]
    step, _, _ = build_step(unlabeled=unlabeled, semi_start_step=1, counter=counter)
    reference, _, _ = build_step()
    warm = step(batch, 1)  # the warm-up step: semi_start_step 1
    assert float(warm["semi/loss"]) == 0.0 and float(warm["semi/trusted_fraction"]) == 0.0
    assert float(warm["train/g_loss"]) == pytest.approx(float(reference(batch, 1)["train/g_loss"]), rel=1e-6)
    assert float(step(batch, 2)["semi/loss"]) > 0


def test_unlabeled_batches_depend_only_on_seed_and_step():
    images = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1).expand(10, 1, 4, 4).contiguous()
    batches = UnlabeledBatches(list(images), batch_size=5, seed=3, patch=4, augment=False)
    again = UnlabeledBatches(list(images), batch_size=5, seed=3, patch=4, augment=False)
    first_pass = torch.cat([batches.indices(0), batches.indices(1)])
    assert sorted(first_pass.tolist()) == list(range(10))  # one pass shows each image once
    assert torch.equal(batches(7), again(7))  # a resumed run gets the same batch
    assert not torch.equal(batches.indices(2), batches.indices(0)) or not torch.equal(
        batches.indices(3), batches.indices(1))  # the next pass is reshuffled
    wrap = UnlabeledBatches(list(images[:3]), batch_size=5, seed=0, patch=4, augment=False)
    assert wrap(0).shape == (5, 1, 4, 4)  # a pool smaller than a batch wraps into the next pass
    turned = UnlabeledBatches(torch.randint(0, 255, (4, 1, 6, 6), dtype=torch.uint8), 4, seed=0, patch=6)
    assert turned(0).shape == (4, 1, 6, 6) and torch.equal(turned(0), turned(0))


def test_train_state_checkpoints_the_image_pool():
    pool = ImagePool(4)
    pool.query(torch.randn(3, 2, 4, 4))
    net = torch.nn.Linear(2, 2)
    state = TrainState(modules={"d": net}, optimizers={"d": torch.optim.SGD(net.parameters(), 0.1)},
                                  extras={"pool": pool})
    saved = copy.deepcopy(state.state_dict())
    restored_pool = ImagePool(4)
    restored = TrainState(modules={"d": torch.nn.Linear(2, 2)},
                                     optimizers={"d": torch.optim.SGD(net.parameters(), 0.1)},
                                     extras={"pool": restored_pool})
    restored.load_state_dict(saved)
    assert torch.equal(restored_pool.items, pool.items)
    assert torch.equal(restored.modules["d"].weight, net.weight)
