"""Proxy targets: one (H, W, 3) uint8 image per kind, at the image's native size.

Kinds (background is always (0, 0, 0)):

- ``reconstruction``: the image itself as RGB uint8 (see ``images.read_rgb`` for mode conversion).
- ``edge``: low-level edges of the IMAGE (not of the annotations). Luminance Y = 0.299 R + 0.587 G +
  0.114 B (ITU-R BT.601) in 0..255; 3x3 Sobel derivatives with replicated borders (so the frame is not an
  edge); a pixel is an edge, painted white (255, 255, 255), iff the gradient magnitude
  sqrt(gx^2 + gy^2) >= EDGE_THRESHOLD = 0.1 x 1020, where 1020 = 4 x 255 is the Sobel response to a
  full-scale step. A straight step of >= 25.5 grey levels is therefore an edge, 2 pixels wide (one pixel
  each side of the step).
- ``depth``: from ``depth_path`` (larger = farther), normalised per image with near = bright:
  v = round(255 (dmax - d) / (dmax - dmin)), grey replicated to 3 channels; a constant depth map gives
  all zeros. Every pixel value counts (0 is not treated as "missing").
- ``semantic`` / ``instance`` / ``panoptic``: ``palette.encode(label_map(...))`` — see ``masks`` for the
  painting order, the crowd policy and panoptic data. Default palettes: ``Palette.for_categories`` of the
  dataset's categories (semantic: the categories' ``color`` when all have one, else the project palette
  by category id), ``Palette.for_instances(n)`` for instance/panoptic (label k = k-th painted colour).

Bad input (unknown kind or image id, missing file or depth map, wrong size) raises ``InvalidDatasetError``
naming the image record.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sgt_pipeline.rendering.images import dataset_error, image_record, read_depth, read_rgb
from sgt_pipeline.rendering.masks import SEGMENTATION_KINDS, compact_label_map
from sgt_pipeline.rendering.palette import Palette

TARGET_KINDS = ("reconstruction", "edge", "depth", "semantic", "instance", "panoptic")
LABEL_KINDS = ("semantic", "instance", "panoptic", "edge")  # resized without inventing values
EDGE_THRESHOLD = 0.1 * 4 * 255
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


def render_target(
    kind: str,
    coco: Any,
    image_id: int,
    palette: Palette | None = None,
    *,
    include_crowd: bool = False,
    images_dir: str | Path | None = None,
) -> np.ndarray:
    """Render one proxy target of ``kind`` for ``image_id`` as (H, W, 3) uint8.

    Image files are read from the record's ``path`` (set by ``ingestion.to_coco``); for a plain
    ``COCO("instances_val2017.json")`` pass ``images_dir`` and ``file_name`` is looked up there.
    """
    image = image_record(coco, image_id)
    if images_dir is not None and "path" not in image:
        image = {**image, "path": str(Path(images_dir) / image["file_name"])}
    if kind == "reconstruction":
        return read_rgb(image)
    if kind == "edge":
        return _to_rgb(np.where(edge_mask(read_rgb(image)), 255, 0).astype(np.uint8))
    if kind == "depth":
        return depth_target(read_depth(image))
    if kind in SEGMENTATION_KINDS:
        labels = compact_label_map(kind, coco, image_id, include_crowd=include_crowd)
        if palette is None:
            palette = default_palette(kind, coco, labels)
        try:
            return palette.encode(labels)
        except ValueError as error:
            raise dataset_error(image, "palette", f"{kind} target: {error}") from None
    raise dataset_error(image, "kind", f"unknown target kind {kind!r}; expected one of {TARGET_KINDS}")


def default_palette(kind: str, coco: Any, labels: np.ndarray) -> Palette:
    if kind == "semantic":
        return Palette.for_categories(coco.dataset.get("categories", []))
    return Palette.for_instances(int(labels.max()) if labels.size else 0)


def luminance(rgb: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma of an (H, W, 3) image, float32 in 0..255."""
    weights = np.asarray(LUMA_WEIGHTS, dtype=np.float32)
    return rgb[..., :3].astype(np.float32) @ weights


def edge_mask(rgb: np.ndarray) -> np.ndarray:
    """Boolean (H, W): Sobel gradient magnitude of the luminance >= EDGE_THRESHOLD."""
    padded = np.pad(luminance(rgb), 1, mode="edge")
    # Separable Sobel: derivative [-1, 0, 1] along one axis, smoothing [1, 2, 1] along the other.
    smooth_rows = padded[:-2, :] + 2 * padded[1:-1, :] + padded[2:, :]
    smooth_cols = padded[:, :-2] + 2 * padded[:, 1:-1] + padded[:, 2:]
    gx = smooth_rows[:, 2:] - smooth_rows[:, :-2]
    gy = smooth_cols[2:, :] - smooth_cols[:-2, :]
    return np.hypot(gx, gy) >= EDGE_THRESHOLD


def depth_target(depth: np.ndarray) -> np.ndarray:
    """Per-image normalised inverse depth (near = bright) as (H, W, 3) uint8."""
    depth = np.asarray(depth, dtype=np.float64)
    nearest, farthest = float(depth.min()), float(depth.max())
    if farthest == nearest:
        return np.zeros((*depth.shape, 3), dtype=np.uint8)
    brightness = np.rint(255.0 * (farthest - depth) / (farthest - nearest)).astype(np.uint8)
    return _to_rgb(brightness)


def _to_rgb(grey: np.ndarray) -> np.ndarray:
    return np.repeat(grey[:, :, None], 3, axis=2)
