"""Image records and the files they point to (RGB image, depth map, panoptic PNG).

Every problem is raised as ``InvalidDatasetError`` naming the file, the record ("image id=17") and the
field, so a bad dataset is located, not just refused.

Pixel conventions:
- RGB images of any PIL mode become (H, W, 3) uint8. 16-bit and 32-bit integer greyscale ("I;16*", "I")
  are scaled 0..65535 -> 0..255 (rounded; "I" is clipped to that range first), float greyscale ("F") is
  clipped to 0..255 and rounded, every other mode goes through ``Image.convert("RGB")`` (alpha is dropped,
  not composited).
- Depth maps are single-channel (normally 16-bit PNG); any other mode is refused.
- Panoptic PNGs encode segment id = R + 256 G + 256^2 B.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from sgt_pipeline.ingestion.errors import InvalidDatasetError

_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_SINGLE_CHANNEL_MODES = (*_SIXTEEN_BIT_MODES, "L", "F")


def image_record(coco: Any, image_id: int) -> dict[str, Any]:
    """The image record for ``image_id``; unknown ids raise InvalidDatasetError."""
    try:
        return coco.imgs[image_id]
    except KeyError:
        raise InvalidDatasetError(
            "COCO dataset", f"image id={image_id}", "id", "no image with this id in the dataset"
        ) from None


def describe(image: dict[str, Any]) -> str:
    return f"image id={image.get('id')}"


def dataset_error(image: dict[str, Any], field: str, message: str, file: str | None = None):
    """An InvalidDatasetError about one image record (file defaults to the image's own path)."""
    file = file or image.get("path") or image.get("file_name") or "COCO dataset"
    return InvalidDatasetError(str(file), describe(image), field, message)


def _open(image: dict[str, Any], field: str) -> Image.Image:
    path = image.get(field)
    if not path:
        raise dataset_error(image, field, f"this image has no '{field}'")
    try:
        opened = Image.open(path)
        opened.load()
    except FileNotFoundError:
        raise dataset_error(image, field, f"file not found: {path}", file=path) from None
    except (UnidentifiedImageError, OSError) as error:
        raise dataset_error(image, field, f"cannot read image file: {error}", file=path) from None
    expected = (int(image["width"]), int(image["height"]))
    if opened.size != expected:
        raise dataset_error(
            image,
            field,
            f"file is {opened.size[0]}x{opened.size[1]} but the record says {expected[0]}x{expected[1]}",
            file=path,
        )
    return opened


def read_rgb(image: dict[str, Any]) -> np.ndarray:
    """The image itself as (H, W, 3) uint8."""
    opened = _open(image, "path")
    if opened.mode in _SIXTEEN_BIT_MODES:
        values = np.clip(np.asarray(opened, dtype=np.int64), 0, 65535)
        grey = ((values * 255 + 32767) // 65535).astype(np.uint8)
    elif opened.mode == "F":
        grey = np.clip(np.rint(np.asarray(opened, dtype=np.float64)), 0, 255).astype(np.uint8)
    else:
        return np.asarray(opened.convert("RGB"), dtype=np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


def read_depth(image: dict[str, Any]) -> np.ndarray:
    """The depth map (larger = farther) as (H, W) float64."""
    opened = _open(image, "depth_path")
    if opened.mode not in _SINGLE_CHANNEL_MODES:
        raise dataset_error(
            image,
            "depth_path",
            f"a depth map must be single-channel (16-bit PNG); got PIL mode {opened.mode}",
            file=image["depth_path"],
        )
    return np.asarray(opened, dtype=np.float64)


def read_panoptic_ids(image: dict[str, Any]) -> np.ndarray:
    """Segment id per pixel, (H, W) int64, from the panoptic PNG (id = R + 256 G + 256^2 B)."""
    rgb = np.asarray(_open(image, "panoptic_path").convert("RGB"), dtype=np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]
