"""COCO instance annotations of the *visible* region of each object, in all three COCO encodings.

Unoccluded objects keep their polygon; occluded ones are stored as RLE of the visible mask, mostly
compressed (counts as a string) and a share uncompressed (counts as a list of run lengths).
"""

from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils

from .config import WorldConfig
from .scene import Scene, SceneObject

POLYGON, COMPRESSED_RLE, UNCOMPRESSED_RLE = "polygon", "compressed_rle", "uncompressed_rle"
SUPERCATEGORY = "shape"


def coco_categories(config: WorldConfig) -> list[dict]:
    return [
        {"id": category_id, "name": name, "supercategory": SUPERCATEGORY}
        for name, category_id in config.category_ids().items()
    ]


def uncompressed_counts(mask: np.ndarray) -> list[int]:
    """COCO run lengths of a mask: column-major order, alternating runs starting with zeros."""
    flat = mask.reshape(-1, order="F").astype(np.int8)
    change_points = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change_points, [flat.size]])
    runs = np.diff(bounds).tolist()
    return [0] + runs if flat.size and flat[0] else runs


def encoding_of(segmentation: list | dict) -> str:
    """Which of the three COCO encodings a segmentation uses."""
    if isinstance(segmentation, list):
        return POLYGON
    return UNCOMPRESSED_RLE if isinstance(segmentation["counts"], list) else COMPRESSED_RLE


def _segmentation(obj: SceneObject, size: int, uncompressed: bool) -> tuple[list | dict, dict]:
    """(JSON segmentation, compressed RLE of the same pixels)."""
    if not obj.occluded:
        polygons = [obj.polygon]
        return polygons, mask_utils.merge(mask_utils.frPyObjects(polygons, size, size))
    rle = mask_utils.encode(np.asfortranarray(obj.visible_mask.astype(np.uint8)))
    if uncompressed:
        return {"size": [size, size], "counts": uncompressed_counts(obj.visible_mask)}, rle
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}, rle


def instance_annotations(scene: Scene, image_id: int, config: WorldConfig, rng: np.random.Generator) -> list[dict]:
    """One COCO annotation per object, without "id" (assigned by the caller, unique across splits).

    Besides the COCO keys each carries `color` (the colour name) and `depth` (its 16-bit depth value).
    """
    category_ids = config.category_ids()
    annotations = []
    for obj in scene.objects:
        uncompressed = bool(rng.uniform() < config.uncompressed_rle_fraction)  # drawn always: stable stream
        segmentation, rle = _segmentation(obj, config.image_size, uncompressed)
        annotations.append(
            {
                "image_id": image_id,
                "category_id": category_ids[obj.category],
                "segmentation": segmentation,
                "area": int(mask_utils.area(rle)),
                "bbox": [float(v) for v in mask_utils.toBbox(rle)],
                "iscrowd": 0,
                "color": obj.color,
                "depth": obj.depth_value,
            }
        )
    return annotations
