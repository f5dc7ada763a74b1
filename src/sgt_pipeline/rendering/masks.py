"""Label maps composed from COCO annotations (and COCO panoptic PNGs).

Painting order
--------------
An image's annotations are painted in DESCENDING ``area`` (ties: ascending annotation id), so a smaller
object lying on a larger one stays visible. The k-th painted annotation (k = 1..n) gets painting index k;
where masks overlap the later (smaller) one wins. Background is 0.

Label maps per kind (``label_map``)
-----------------------------------
- ``instance``:  painting index k of the non-crowd annotations; ``iscrowd=1`` regions are left as
  background unless ``include_crowd=True`` (then they are painted like any instance, same order).
- ``semantic``:  the category id of the annotation painted last at each pixel. Crowd regions ARE
  included (as in COCO's semantic/stuff segmentation: a crowd of people is still "person").
  ``include_crowd`` has no effect here.
- ``panoptic``:  with ``panoptic_path`` + ``segments_info`` on the image record: every listed segment
  (thing or stuff, crowd or not) gets label k = 1..n by descending segment ``area`` (ties: ascending
  segment id; a missing ``area`` is counted from the PNG); PNG ids not listed (0 = void) are background.
  Without panoptic data: derived from the instances annotations — every annotation, crowd regions
  included, gets its own label k in the same painting order as ``instance``.

Speed
-----
Masks are decoded by pycocotools only: the polygon parts of all annotations, and all uncompressed RLEs,
are converted with one ``frPyObjects`` call each (a multi-part polygon's parts are then ``merge``d, as
``annToRLE`` does), all masks are decoded with one ``decode`` call (chunked to bound memory), and the
label map is the per-pixel maximum of ``painting index x mask`` — one vectorised reduction, in uint8
when there are fewer than 256 annotations. See benchmarks/rendering.py for the measured cost against
pycocotools' own per-annotation ``annToMask``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from sgt_pipeline.ingestion.errors import InvalidDatasetError
from sgt_pipeline.rendering.images import dataset_error, image_record, read_panoptic_ids

SEGMENTATION_KINDS = ("semantic", "instance", "panoptic")
_DECODE_BUDGET_BYTES = 64 << 20  # decoded masks held at once (H x W x m uint8)


def label_map(kind: str, coco: Any, image_id: int, include_crowd: bool = False) -> np.ndarray:
    """(H, W) int32 label map of one image: category ids (semantic) or painting indices 1..n."""
    return compact_label_map(kind, coco, image_id, include_crowd).astype(np.int32, order="C")


def compact_label_map(kind: str, coco: Any, image_id: int, include_crowd: bool = False) -> np.ndarray:
    """``label_map`` without the int32 copy: instance maps from annotations come as uint8/16/32."""
    image = image_record(coco, image_id)
    if kind == "panoptic" and image.get("panoptic_path") is not None:
        return panoptic_label_map(image)
    annotations = coco.imgToAnns.get(image_id, [])
    if kind == "instance":
        return compose_index_map(coco, image, painting_order(annotations, include_crowd))
    if kind == "panoptic":
        return compose_index_map(coco, image, painting_order(annotations, include_crowd=True))
    if kind == "semantic":
        painted = painting_order(annotations, include_crowd=True)
        category_of_index = np.array([0] + [int(a["category_id"]) for a in painted], dtype=np.int32)
        return np.take(category_of_index, compose_index_map(coco, image, painted))
    raise dataset_error(
        image, "kind", f"no label map for kind {kind!r}; expected one of {SEGMENTATION_KINDS}"
    )


def painting_order(annotations: list[dict], include_crowd: bool) -> list[dict]:
    """Annotations to paint, first painted first: descending area, ties by ascending id."""
    chosen = [a for a in annotations if include_crowd or not a.get("iscrowd", 0)]
    try:
        return sorted(chosen, key=lambda a: (-float(a["area"]), a["id"]))
    except KeyError as missing:
        bad = next(a for a in chosen if "area" not in a or "id" not in a)
        raise InvalidDatasetError(
            "COCO dataset", f"annotation id={bad.get('id')}", str(missing.args[0]),
            "missing; needed for the painting order",
        ) from None


def compose_index_map(coco: Any, image: dict, painted: list[dict]) -> np.ndarray:
    """(H, W) map of the painting index (1-based position in ``painted``) shown at each pixel; 0 = none."""
    height, width = int(image["height"]), int(image["width"])
    dtype = np.uint8 if len(painted) < 256 else np.uint16 if len(painted) < 65536 else np.uint32
    rles, indices = _rles_with_indices(coco, image, painted, height, width)
    flat = np.zeros(height * width, dtype=dtype)  # column-major, like pycocotools' masks
    per_chunk = max(1, _DECODE_BUDGET_BYTES // max(1, height * width))
    for start in range(0, len(rles), per_chunk):
        chunk = rles[start : start + per_chunk]
        masks = mask_utils.decode(chunk)  # (H, W, m) Fortran order: each mask is one contiguous plane
        planes = masks.transpose(2, 1, 0).reshape(len(chunk), height * width)
        weights = indices[start : start + per_chunk].astype(dtype)[:, None]
        # Later painted = larger index, so "last painter wins" is the per-pixel maximum.
        top = (planes * weights).max(axis=0)
        flat = top if start == 0 else np.maximum(flat, top)
    return flat.reshape(width, height).T


def _rles_with_indices(coco, image, painted, height, width) -> tuple[list, np.ndarray]:
    """One encoded RLE per annotation to paint, and its painting index."""
    polygon_parts, polygon_owners = [], []  # owners: (painting index, number of parts)
    uncompressed, uncompressed_indices = [], []
    encoded, encoded_indices = [], []
    for index, annotation in enumerate(painted, start=1):
        segmentation = annotation["segmentation"]
        if isinstance(segmentation, list):
            if all(len(part) > 4 for part in segmentation):
                polygon_parts.extend(segmentation)
                polygon_owners.append((index, len(segmentation)))
            else:
                # pycocotools reads a 4-number polygon as a box; keep its exact behaviour.
                encoded.append(coco.annToRLE(annotation))
                encoded_indices.append(index)
            continue
        if [int(v) for v in segmentation.get("size", ())] != [height, width]:
            raise dataset_error(
                image,
                "segmentation",
                f"annotation id={annotation.get('id')}: RLE size {segmentation.get('size')} "
                f"differs from the image ({height}x{width})",
            )
        if isinstance(segmentation["counts"], list):
            uncompressed.append(segmentation)
            uncompressed_indices.append(index)
        else:
            encoded.append(segmentation)
            encoded_indices.append(index)
    # One frPyObjects call per input type; a multi-part polygon's parts are merged (as annToRLE does)
    # because merging RLEs is much cheaper than decoding every part.
    rles, indices = [], []
    part_rles = mask_utils.frPyObjects(polygon_parts, height, width) if polygon_parts else []
    first_part = 0
    for index, count in polygon_owners:
        parts = part_rles[first_part : first_part + count]
        first_part += count
        if parts:
            rles.append(parts[0] if count == 1 else mask_utils.merge(parts))
            indices.append(index)
    if uncompressed:
        rles += mask_utils.frPyObjects(uncompressed, height, width)
    rles += encoded
    indices += uncompressed_indices + encoded_indices
    return rles, np.array(indices, dtype=np.int64)


def panoptic_label_map(image: dict) -> np.ndarray:
    """(H, W) int32: label k = 1..n per listed segment by descending area (ties: id); else 0."""
    segment_ids = read_panoptic_ids(image)
    segments = image.get("segments_info") or []
    ids = np.array([int(s["id"]) for s in segments], dtype=np.int64)
    if len(np.unique(ids)) != len(ids):
        raise dataset_error(image, "segments_info", "segment ids are not unique")
    if len(ids) == 0:
        return np.zeros(segment_ids.shape, dtype=np.int32)
    areas = np.array(
        [
            float(s["area"]) if s.get("area") is not None else float((segment_ids == s["id"]).sum())
            for s in segments
        ]
    )
    painting_rank = np.lexsort((ids, -areas))  # positions in painting order
    label_of_segment = np.empty(len(ids), dtype=np.int32)
    label_of_segment[painting_rank] = np.arange(1, len(ids) + 1, dtype=np.int32)
    by_id = np.argsort(ids)
    sorted_ids = ids[by_id]
    position = np.clip(np.searchsorted(sorted_ids, segment_ids), 0, len(ids) - 1)
    listed = sorted_ids[position] == segment_ids
    return np.where(listed, label_of_segment[by_id][position], 0).astype(np.int32)
