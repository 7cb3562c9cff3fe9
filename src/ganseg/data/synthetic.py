"""Procedural microscopy-like images with exact nucleus masks: the embedded default data.

Each image is a dark field with bright, textured nuclei of irregular outline, some touching,
under uneven illumination, optical blur and sensor noise, plus unlabelled bright debris. The
difficulty is deliberate: dim nuclei sit below the brightest background, so one global
threshold cannot match a learned segmenter (``tests/data/test_synthetic.py`` checks that Otsu
stays well below). Everything is drawn from one ``numpy.random.Generator`` per image, seeded
from ``(seed, index)``, so image ``i`` is identical whatever the total count.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ganseg.config.prepare import SyntheticSourceConfig


@dataclass(frozen=True)
class SyntheticPair:
    pair_id: str
    image: np.ndarray  # (H, W) uint8
    mask: np.ndarray  # (H, W) bool, True = nucleus


def generate_pair(cfg: SyntheticSourceConfig, size: int, seed: int, index: int) -> SyntheticPair:
    """Draw image ``index`` of the data set seeded by ``seed``."""
    rng = np.random.default_rng([seed, index])
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) / size  # (H, W) in [0, 1)

    mask = np.zeros((size, size), dtype=bool)
    signal = np.zeros((size, size))  # nucleus brightness before optics
    centres: list[tuple[float, float, float]] = []
    for _ in range(int(rng.integers(cfg.nuclei_min, cfg.nuclei_max + 1))):
        radius = rng.uniform(cfg.radius_min, cfg.radius_max)
        cy, cx = _place(rng, centres, radius, cfg.touching_fraction)
        nucleus = _irregular_ellipse(rng, yy, xx, cy, cx, radius)
        # A nucleus drawn over another keeps the union labelled; brightness takes the max so
        # touching nuclei show a faint seam, as real ones do.
        brightness = rng.uniform(cfg.contrast_min, 1.0)
        texture = _chromatin(rng, size, sigma=size * 0.015)
        signal = np.where(nucleus, np.maximum(signal, brightness * (0.75 + 0.5 * texture)), signal)
        mask |= nucleus
        centres.append((cy, cx, radius))

    debris = np.zeros((size, size))
    for _ in range(int(rng.integers(0, cfg.debris_max + 1))):
        cy, cx = rng.uniform(0, 1, size=2)
        r = rng.uniform(0.008, 0.02)
        debris += rng.uniform(0.5, 1.1) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))

    background = _illumination(rng, yy, xx, cfg.illumination)
    sigma = cfg.blur_sigma * size / 64
    optics = ndimage.gaussian_filter(signal + debris, sigma) if sigma > 0 else signal + debris
    image = 0.08 + background + 0.8 * optics
    image = image + rng.normal(0.0, cfg.noise_std, size=image.shape)
    image = np.clip(image, 0.0, 1.0)
    return SyntheticPair(
        pair_id=f"syn_{seed}_{index:05d}",
        image=np.round(image * 255).astype(np.uint8),
        mask=mask,
    )


def _place(
    rng: np.random.Generator, centres: list[tuple[float, float, float]], radius: float, touching: float
) -> tuple[float, float]:
    """A centre: against an earlier nucleus with probability ``touching``, else anywhere free."""
    if centres and rng.uniform() < touching:
        cy, cx, r = centres[int(rng.integers(len(centres)))]
        angle = rng.uniform(0, 2 * np.pi)
        gap = 0.9 * (r + radius)  # slight overlap: touching, not separated by background
        return cy + gap * np.sin(angle), cx + gap * np.cos(angle)
    for _ in range(20):
        cy, cx = rng.uniform(radius * 0.5, 1 - radius * 0.5, size=2)
        if all((cy - oy) ** 2 + (cx - ox) ** 2 > (radius + orad) ** 2 for oy, ox, orad in centres):
            return cy, cx
    return cy, cx


def _irregular_ellipse(
    rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, radius: float
) -> np.ndarray:
    """An ellipse whose radius wobbles with a few random low harmonics of the angle."""
    elongation = rng.uniform(0.65, 1.0)
    theta = rng.uniform(0, np.pi)
    dy, dx = yy - cy, xx - cx
    u = dx * np.cos(theta) + dy * np.sin(theta)
    v = (-dx * np.sin(theta) + dy * np.cos(theta)) / elongation
    angle = np.arctan2(v, u)
    wobble = np.ones_like(angle)
    for harmonic in (2, 3, 5):
        wobble += rng.uniform(0, 0.08) * np.cos(harmonic * angle + rng.uniform(0, 2 * np.pi))
    return np.hypot(u, v) <= radius * wobble


def _chromatin(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    """Smooth random texture in [0, 1]: chromatin granularity inside the nucleus."""
    field = ndimage.gaussian_filter(rng.normal(size=(size, size)), max(sigma, 0.5))
    spread = field.max() - field.min()
    return (field - field.min()) / spread if spread > 0 else np.zeros_like(field)


def _illumination(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, strength: float) -> np.ndarray:
    """A bright, off-centre vignette plus a tilt: uneven illumination across the field."""
    cy, cx = rng.uniform(-0.2, 1.2, size=2)
    spread = rng.uniform(0.3, 0.6)
    spot = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * spread**2))
    tilt = rng.uniform(-1, 1) * yy + rng.uniform(-1, 1) * xx
    field = 0.75 * spot + 0.25 * (tilt - tilt.min()) / max(np.ptp(tilt), 1e-9)
    return strength * field
