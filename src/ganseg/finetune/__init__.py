"""Adversarial fine-tuning: a trained U-Net as the generator of a segmentation GAN.

- :mod:`~ganseg.finetune.discriminator`: the judges of (image, mask) pairs: the augment
  stage's PatchGAN, or a fully convolutional per-pixel confidence network;
- :mod:`~ganseg.finetune.losses`: the segmentation task behind the augment stage's GAN loss
  interface, and the semi-supervised loss on unlabeled images;
- :mod:`~ganseg.finetune.step`: one optimisation step (discriminator phase, then U-Net
  phase) that the train stage's epoch loop (:func:`ganseg.training.loop.fit`) runs.
"""
