"""The segmentation task behind the GAN loss interface, confidence maps, the self-training loss."""

import pytest
import torch
import torch.nn.functional as F

from ganseg.finetune.losses import (
    LabeledBatch,
    SegmentationTask,
    SemiSupervisedLoss,
    confidence_map,
    pair_inputs,
    self_training_loss,
    soft_masks,
)
from ganseg.gan.losses import GanLoss, HingeLoss, LeastSquaresLoss, NonSaturatingLoss, build_objective
from ganseg.training.losses import SegmentationLoss
from tests.finetune.conftest import tiny_batch, tiny_unet


def test_pairs_put_the_image_first_and_everything_in_minus_one_to_one():
    images = torch.rand(2, 1, 8, 8)
    labels = (torch.rand(2, 8, 8) > 0.5).long()
    task = SegmentationTask(SegmentationLoss(), num_classes=1)
    real = task.real_inputs(LabeledBatch(images, labels))
    assert real.shape == (2, 2, 8, 8)
    assert torch.allclose(real[:, 0], images[:, 0] * 2 - 1)
    assert torch.equal(real[:, 1], labels.float() * 2 - 1)  # ground truth: exactly -1 or 1
    logits = torch.randn(2, 1, 8, 8)
    fake = task.fake_inputs(LabeledBatch(images, labels), logits)
    assert torch.allclose(fake[:, 1], torch.sigmoid(logits[:, 0]) * 2 - 1)


def test_multi_class_pairs_are_one_hot_against_softmax():
    images = torch.rand(2, 1, 8, 8)
    labels = torch.randint(0, 3, (2, 8, 8))
    task = SegmentationTask(SegmentationLoss(), num_classes=3)
    real = task.real_inputs(LabeledBatch(images, labels))
    assert real.shape == (2, 4, 8, 8)
    assert torch.equal(real[:, 1:].argmax(1), labels)
    logits = torch.randn(2, 3, 8, 8)
    fake = task.fake_inputs(LabeledBatch(images, labels), logits)
    assert torch.allclose((fake[:, 1:] + 1) / 2, torch.softmax(logits, 1), atol=1e-6)
    assert torch.allclose(soft_masks(logits).sum(1), torch.ones(2, 8, 8))


def test_generator_loss_is_the_weighted_segmentation_loss_with_train_names():
    logits, labels = torch.randn(2, 1, 8, 8), (torch.rand(2, 8, 8) > 0.5).long()
    expected, _ = SegmentationLoss("bce_dice")(logits, labels)
    loss, stats = SegmentationTask(SegmentationLoss("bce_dice"), 1, seg_weight=3.0).generator_loss(
        LabeledBatch(torch.rand(2, 1, 8, 8), labels), logits)
    assert loss.item() == pytest.approx(3.0 * expected.item(), rel=1e-6)
    assert set(stats) == {"train/loss", "train/loss_ce", "train/loss_dice"}


def test_pair_inputs_concatenates_on_channels():
    assert pair_inputs(torch.ones(1, 3, 4, 4), -torch.ones(1, 2, 4, 4)).shape == (1, 5, 4, 4)


def test_confidence_follows_each_objective_and_upsamples_patches():
    patch_logits = torch.tensor([[[[-1.0, 0.0], [0.3, 1.0]]]])  # (1, 1, 2, 2)
    bce = confidence_map(NonSaturatingLoss(), patch_logits, (2, 2))
    assert torch.allclose(bce, torch.sigmoid(patch_logits[:, 0]))
    assert bce[0, 0, 1].item() == 0.5
    assert torch.allclose(confidence_map(HingeLoss(), patch_logits, (2, 2))[0], torch.tensor([[0.0, 0.5], [0.65, 1.0]]))
    assert torch.allclose(confidence_map(LeastSquaresLoss(), patch_logits, (2, 2))[0], torch.tensor([[0.0, 0.0], [0.3, 1.0]]))
    up = confidence_map(NonSaturatingLoss(), patch_logits, (16, 16))
    assert up.shape == (1, 16, 16)
    assert up[0, 0, 0] < 0.3 and up[0, -1, -1] > 0.7  # corners keep their patch's verdict


def test_self_training_loss_matches_a_hand_computed_masked_bce():
    torch.manual_seed(0)
    logits = torch.randn(2, 1, 6, 6, requires_grad=True)
    trusted = torch.zeros(2, 6, 6, dtype=torch.bool)
    trusted[:, :3] = True
    pseudo = (logits.detach()[:, 0] > 0).float()
    expected = F.binary_cross_entropy_with_logits(logits[:, 0][trusted], pseudo[trusted])
    assert self_training_loss(logits, trusted).item() == pytest.approx(expected.item(), rel=1e-6)
    # Multi-class: cross-entropy towards the argmax on trusted pixels.
    multi = torch.randn(2, 3, 6, 6)
    expected_multi = F.cross_entropy(multi, multi.argmax(1), reduction="none")[trusted].mean()
    assert self_training_loss(multi, trusted).item() == pytest.approx(expected_multi.item(), rel=1e-6)


def test_self_training_loss_is_zero_with_a_graph_when_nothing_is_trusted():
    logits = torch.randn(1, 1, 4, 4, requires_grad=True)
    loss = self_training_loss(logits, torch.zeros(1, 4, 4, dtype=torch.bool))
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(logits.grad, torch.zeros_like(logits))


def test_the_threshold_decides_which_pixels_are_trusted():
    from ganseg.finetune.discriminator import ConfidenceDiscriminator, ConfidenceDiscriminatorConfig

    torch.manual_seed(0)
    unet = tiny_unet()
    discriminator = ConfidenceDiscriminator(ConfidenceDiscriminatorConfig(in_channels=2, base_channels=8, layers=2))
    gan_loss = GanLoss(SegmentationTask(SegmentationLoss(), 1), build_objective("bce"))
    images = tiny_batch(3)[0].float() / 255
    everything = SemiSupervisedLoss(gan_loss, confidence_threshold=0.0)(unet, discriminator, images, step=0)[1]
    nothing_loss, nothing = SemiSupervisedLoss(gan_loss, confidence_threshold=1.0)(unet, discriminator, images, step=0)
    assert everything["semi/trusted_fraction"].item() == 1.0
    assert everything["semi/self_training"].item() > 0
    assert nothing["semi/trusted_fraction"].item() == 0.0
    assert nothing["semi/self_training"].item() == 0.0
    # Only the adversarial term is left, with its own weight.
    assert nothing_loss.item() == pytest.approx(0.001 * nothing["semi/adv"].item(), rel=1e-6)
