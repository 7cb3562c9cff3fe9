"""DiffAugment and its adaptive probability: differentiable, pair-preserving, resumable."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from ganseg.config import load_params
from ganseg.config.augment import GanObjectiveConfig
from ganseg.errors import ConfigError
from ganseg.finetune.losses import LabeledBatch, SegmentationTask
from ganseg.gan.build import build_stabilisers
from ganseg.gan.data import Batch
from ganseg.gan.diffaugment import AdaptiveProbability, DiffAugment, replayed_draws
from ganseg.gan.losses import FeatureMatchingLoss, GanLoss, NonSaturatingLoss, PixelLoss, StepInputs
from ganseg.gan.pix2pix import PatchDiscriminator, PatchDiscriminatorConfig
from ganseg.gan.regularisers import R1Penalty
from ganseg.gan.tasks import DcganTask, Pix2PixTask
from ganseg.training.losses import SegmentationLoss
from tests.helpers import write_params

FULL = ["color", "translation", "cutout"]


def stack(batch: int = 8, channels: int = 2, size: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, channels, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_gradients_flow_through_every_policy():
    for adaptive in (None, AdaptiveProbability(0.6)):
        if adaptive is not None:
            adaptive.p = torch.tensor(0.5)
        inputs = stack().requires_grad_(True)
        DiffAugment(FULL, adaptive)(inputs, slice(1, None)).square().sum().backward()
        assert torch.isfinite(inputs.grad).all()
        assert inputs.grad.abs().sum() > 0


def test_geometric_transforms_move_mask_and_image_channels_together():
    torch.manual_seed(0)
    image = stack(channels=1)
    pair = torch.cat([image, image], dim=1)  # mask channel 0 == image channel 1
    moved = DiffAugment(["translation", "cutout"])(pair, slice(1, None))
    assert torch.equal(moved[:, 0], moved[:, 1])
    assert not torch.equal(moved, pair)  # it did move something


@pytest.mark.parametrize(("image_channels", "mask_channels"), [(slice(1, None), slice(0, 1)),
                                                               (slice(0, 3), slice(3, None))])
def test_colour_changes_image_channels_only(image_channels, mask_channels):
    torch.manual_seed(0)
    pair = stack(channels=5)
    coloured = DiffAugment(["color"])(pair, image_channels)
    assert torch.equal(coloured[:, mask_channels], pair[:, mask_channels])
    assert not torch.allclose(coloured[:, image_channels], pair[:, image_channels])


def test_replayed_draws_augment_the_next_stack_alike():
    torch.manual_seed(0)
    real = stack()
    augment = DiffAugment(["translation", "cutout"])  # linear: T(2 x) = 2 T(x) when the draws match
    with replayed_draws(real.device):
        moved_fake = augment(2 * real, slice(1, None))
    assert torch.equal(moved_fake, 2 * augment(real, slice(1, None)))
    assert not torch.equal(augment(2 * real, slice(1, None)), 2 * augment(real, slice(1, None)))


def test_each_task_names_its_image_channels():
    images, masks = stack(channels=3), stack(channels=2, seed=1)
    batch = Batch(images, masks, torch.zeros(8, 16, 16, dtype=torch.uint8))
    pix2pix = Pix2PixTask(PixelLoss())
    assert torch.equal(pix2pix.real_inputs(batch)[:, pix2pix.image_channels(batch)], images)
    dcgan = DcganTask(8)
    assert torch.equal(dcgan.real_inputs(batch)[:, dcgan.image_channels(batch)], images)
    segmentation = SegmentationTask(SegmentationLoss(), num_classes=1)
    labeled = LabeledBatch((images[:, :1] + 1) / 2, torch.zeros(8, 16, 16, dtype=torch.long))
    stacked = segmentation.real_inputs(labeled)
    assert torch.allclose(stacked[:, segmentation.image_channels(labeled)], images[:, :1])


def test_empty_policy_is_the_identity_and_builds_nothing():
    pair = stack()
    assert torch.equal(DiffAugment([])(pair, slice(1, None)), pair)
    assert build_stabilisers(GanObjectiveConfig(), total_steps=10).augment is None
    assert build_stabilisers(GanObjectiveConfig(diffaugment=FULL), total_steps=10).augment is not None


def test_probability_zero_leaves_inputs_alone():
    adaptive = AdaptiveProbability(0.6)  # p starts at 0
    pair = stack()
    assert torch.allclose(DiffAugment(FULL, adaptive)(pair, slice(1, None)), pair, atol=1e-6)  # rounding only


def test_ada_raises_p_while_d_is_sure_of_reals_and_lowers_it_when_not():
    adaptive = AdaptiveProbability(target=0.6, interval=2, ramp_images=80)
    for _ in range(4):  # two adjustments of +2 * 8 / 80
        stats = adaptive.observe(torch.full((8, 1, 4, 4), 0.9))
    assert float(adaptive.p) == pytest.approx(0.4)
    assert float(stats["d_sign_real"]) == 1.0
    for _ in range(2):  # r_t = 0.5 < 0.6: one step down
        adaptive.observe(torch.tensor([0.9, 0.9, 0.9, 0.1] * 2))
    assert float(adaptive.p) == pytest.approx(0.2)
    for _ in range(20):
        adaptive.observe(torch.full((8,), 0.1))
    assert float(adaptive.p) == 0.0  # kept in [0, 1]


class ConfidentDiscriminator(nn.Module):
    """Calls every input real, so ADA sees a discriminator that has memorised its reals."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(()))
        self.seen: list[torch.Tensor] = []

    def forward(self, inputs):
        self.seen.append(inputs.detach().clone())
        return 5.0 + 0.0 * self.weight * inputs[:, :1]


def gan_loss_with_ada(interval: int = 1, ramp_images: int = 40) -> GanLoss:
    augment = DiffAugment(FULL, AdaptiveProbability(0.6, interval, ramp_images))
    return GanLoss(Pix2PixTask(PixelLoss()), NonSaturatingLoss(), [R1Penalty(1.0)], augment=augment)


def step_inputs(step: int = 1) -> StepInputs:
    images, masks = stack(channels=1), stack(channels=1, seed=1)
    batch = Batch(images, masks, torch.zeros(8, 16, 16, dtype=torch.uint8))
    task = Pix2PixTask(PixelLoss())
    return StepInputs(step, batch, images, task.real_inputs(batch), task.fake_inputs(batch, images.flip(0)))


def test_d_main_logs_ada_p_and_d_sign_real_and_p_rises():
    loss = gan_loss_with_ada()
    discriminator = ConfidentDiscriminator()
    for step in range(1, 4):
        _, stats = loss.d_main(discriminator, step_inputs(step))
    assert float(stats["d_sign_real"]) == 1.0
    assert float(stats["ada_p"]) == pytest.approx(0.4)  # the p of step 3, after two rises of 8 / 40
    assert float(loss.augment.adaptive.p) == pytest.approx(0.6)


def test_penalties_judge_the_augmented_inputs():
    loss = gan_loss_with_ada()
    loss.augment.adaptive.p = torch.tensor(1.0)
    discriminator, inputs = ConfidentDiscriminator(), step_inputs()
    loss.penalty_term(loss.penalties[0])(discriminator, inputs)
    assert discriminator.seen[-1].shape == inputs.real_inputs.shape
    assert not torch.equal(discriminator.seen[-1], inputs.real_inputs)


def test_feature_matching_compares_a_fake_and_its_real_under_the_same_augmentation():
    torch.manual_seed(0)
    discriminator = PatchDiscriminator(PatchDiscriminatorConfig(in_channels=2, base_channels=4, layers=2))
    loss = GanLoss(Pix2PixTask(PixelLoss()), NonSaturatingLoss(), augment=DiffAugment(FULL),
                   feature_matching=FeatureMatchingLoss())
    inputs = step_inputs()
    inputs.fake_inputs = inputs.real_inputs  # a perfect fake: nothing left to match
    _, stats = loss.g_main(discriminator, inputs)
    assert float(stats["g_feature_matching"]) == 0.0


def test_state_dict_round_trip_restores_p_and_the_open_interval():
    loss = gan_loss_with_ada(interval=4, ramp_images=80)  # +0.4 per interval of 4 x 8 reals
    for step in range(1, 7):  # one adjustment, then two steps into the next interval
        loss.d_main(ConfidentDiscriminator(), step_inputs(step))
    buffer = io.BytesIO()
    torch.save(loss.state_dict(), buffer)  # as the checkpoint saves it: loadable with weights_only
    buffer.seek(0)
    restored = gan_loss_with_ada(interval=4, ramp_images=80)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert restored.augment.adaptive.state_dict() == loss.augment.adaptive.state_dict()
    for step in range(7, 9):  # both close the interval at step 8 the same way
        loss.d_main(ConfidentDiscriminator(), step_inputs(step))
        restored.d_main(ConfidentDiscriminator(), step_inputs(step))
    assert float(restored.augment.adaptive.p) == float(loss.augment.adaptive.p) == pytest.approx(0.8)


@pytest.mark.parametrize(("objective", "expected"), [
    ({"diffaugment": ["colour"]}, "augment.objective.diffaugment.0: Input should be 'color', 'translation' or 'cutout'"),
    ({"diffaugment": ["color", "color"]}, "diffaugment lists a policy twice"),
    ({"ada_target": 0.6}, "ada_target adapts the probability of the diffaugment policy, which is empty"),
    ({"diffaugment": ["cutout"], "ada_target": 1.5}, "augment.objective.ada_target"),
])
def test_bad_diffaugment_params_give_one_clear_line(tmp_path, objective, expected):
    path = write_params(tmp_path / "params.yaml", {"augment": {"objective": objective}})
    with pytest.raises(ConfigError) as info:
        load_params(path)
    assert expected in str(info.value)
    assert "\n" not in str(info.value)
