"""Data layer: sources of image/mask pairs, mask rules, manifest, validation, split, tensors."""
