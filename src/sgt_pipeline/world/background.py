"""Textured backgrounds in muted colours: a distracting, purely low-level signal.

Every background channel stays <= BACKGROUND_MAX_CHANNEL, while each object colour has a channel
>= 200 (enforced by WorldConfig), so object and background pixels can never be confused.
"""

from __future__ import annotations

import colorsys

import numpy as np
from PIL import Image

BACKGROUND_KINDS = ("striped", "checkered", "cloudy")  # adjectives, used verbatim in captions
BACKGROUND_MAX_CHANNEL = 160
_PIXEL_NOISE = 6  # +- per-channel jitter on every pixel


def _muted_colour(rng: np.random.Generator) -> np.ndarray:
    hue, saturation, value = rng.uniform(0, 1), rng.uniform(0.05, 0.35), rng.uniform(0.2, 0.58)
    return np.array(colorsys.hsv_to_rgb(hue, saturation, value)) * 255


def _pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:size, 0:size]
    return xs + 0.5, ys + 0.5


def _stripes(size: int, rng: np.random.Generator) -> np.ndarray:
    xs, ys = _pixel_grid(size)
    angle, period = rng.uniform(0, np.pi), rng.uniform(4, 12)
    phase = (xs * np.cos(angle) + ys * np.sin(angle)) / period + rng.uniform(0, 1)
    first = (np.floor(phase) % 2 == 0)[..., None]
    return np.where(first, _muted_colour(rng), _muted_colour(rng))


def _checkerboard(size: int, rng: np.random.Generator) -> np.ndarray:
    xs, ys = _pixel_grid(size)
    angle, cell = rng.uniform(0, np.pi / 2), rng.uniform(3, 10)
    u = (xs * np.cos(angle) + ys * np.sin(angle)) / cell
    v = (-xs * np.sin(angle) + ys * np.cos(angle)) / cell
    first = ((np.floor(u) + np.floor(v)) % 2 == 0)[..., None]
    return np.where(first, _muted_colour(rng), _muted_colour(rng))


def _cloudy(size: int, rng: np.random.Generator) -> np.ndarray:
    # Smooth noise: a coarse grid of blends between two muted colours, bicubically upsampled.
    grid = int(rng.integers(3, 7))
    weights = rng.uniform(0, 1, (grid, grid, 1))
    coarse = weights * _muted_colour(rng) + (1 - weights) * _muted_colour(rng)
    small = Image.fromarray(np.clip(coarse, 0, 255).astype(np.uint8))
    return np.asarray(small.resize((size, size), Image.Resampling.BICUBIC), dtype=np.float64)


_TEXTURES = {"striped": _stripes, "checkered": _checkerboard, "cloudy": _cloudy}


def sample_background(size: int, rng: np.random.Generator) -> tuple[str, np.ndarray]:
    """A random (kind, RGB uint8 image of shape (size, size, 3)) background."""
    kind = BACKGROUND_KINDS[int(rng.integers(len(BACKGROUND_KINDS)))]
    texture = _TEXTURES[kind](size, rng)
    texture = texture + rng.integers(-_PIXEL_NOISE, _PIXEL_NOISE + 1, texture.shape)
    return kind, np.clip(np.rint(texture), 0, BACKGROUND_MAX_CHANNEL).astype(np.uint8)
