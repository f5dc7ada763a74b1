"""Resizing rendered targets to the model's resolution without corrupting what they encode.

Rules by kind (``size`` is an int for a square or an (height, width) pair):

- ``semantic`` / ``instance`` / ``panoptic``: nearest neighbour (source pixel floor((i + 0.5) * H / h),
  PIL's convention), so no colour or label is invented; works on (H, W, 3) colours and (H, W) label maps
  of any dtype.
- ``edge``: when shrinking (either side smaller), a target pixel is an edge iff its footprint in the source
  contains the centre of any edge pixel: the binary map is box-filtered in float (PIL ``BOX``, whose
  footprints tile the source) and thresholded at > 0. Every source edge pixel thus marks exactly one
  target pixel, so a 1-pixel edge survives any reduction. When only enlarging: nearest neighbour.
  Output is white (255) on black in the input's channel layout.
- ``reconstruction`` / ``depth``: PIL ``BOX`` (area average) when shrinking on both sides, ``BILINEAR``
  otherwise; uint8 in, uint8 out.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from sgt_pipeline.rendering.targets import TARGET_KINDS

_NEAREST_KINDS = ("semantic", "instance", "panoptic")


def resize_target(target: np.ndarray, size: int | tuple[int, int], kind: str) -> np.ndarray:
    """Resize an (H, W, 3) or (H, W) target of ``kind`` to ``size``; dtype and channels are kept."""
    target = np.asarray(target)
    height, width = (int(size), int(size)) if np.isscalar(size) else (int(size[0]), int(size[1]))
    if height <= 0 or width <= 0:
        raise ValueError(f"size must be positive; got {size!r}")
    if target.ndim not in (2, 3):
        raise ValueError(f"expected an (H, W) or (H, W, C) target; got shape {target.shape}")
    if kind not in TARGET_KINDS:
        raise ValueError(f"unknown target kind {kind!r}; expected one of {TARGET_KINDS}")
    if target.shape[:2] == (height, width):
        return target.copy()
    if kind in _NEAREST_KINDS:
        return resize_nearest(target, height, width)
    if kind == "edge":
        return _resize_edges(target, height, width)
    return _resize_image(target, height, width)


def resize_nearest(array: np.ndarray, height: int, width: int) -> np.ndarray:
    rows = _nearest_sources(array.shape[0], height)
    cols = _nearest_sources(array.shape[1], width)
    return array[rows[:, None], cols[None, :]]


def _nearest_sources(source: int, target: int) -> np.ndarray:
    positions = np.floor((np.arange(target) + 0.5) * (source / target)).astype(np.int64)
    return np.minimum(positions, source - 1)


def _resize_edges(target: np.ndarray, height: int, width: int) -> np.ndarray:
    edges = target if target.ndim == 2 else target.max(axis=2)
    if height >= edges.shape[0] and width >= edges.shape[1]:
        covered = resize_nearest(edges > 0, height, width)
    else:
        coverage = Image.fromarray((edges > 0).astype(np.float32))  # mode "F"
        covered = np.asarray(coverage.resize((width, height), Image.Resampling.BOX)) > 0
    result = np.where(covered, 255, 0).astype(target.dtype)
    return result if target.ndim == 2 else np.repeat(result[:, :, None], target.shape[2], axis=2)


def _resize_image(target: np.ndarray, height: int, width: int) -> np.ndarray:
    if target.dtype != np.uint8:
        raise ValueError(f"reconstruction/depth targets must be uint8; got {target.dtype}")
    shrinking = height <= target.shape[0] and width <= target.shape[1]
    resample = Image.Resampling.BOX if shrinking else Image.Resampling.BILINEAR
    if target.ndim == 3 and target.shape[2] == 1:
        return _resize_image(target[:, :, 0], height, width)[:, :, None]
    resized = Image.fromarray(target).resize((width, height), resample)
    return np.asarray(resized, dtype=np.uint8)
