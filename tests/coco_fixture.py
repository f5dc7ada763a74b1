"""A tiny dataset with the traits of real COCO 2017, written by the tests themselves.

Traits: non-contiguous image ids; category ids with gaps and a ``color`` field only in panoptic
categories; multi-part polygons, compressed RLE and crowd (uncompressed) RLE; grayscale, RGBA and 16-bit
images beside RGB; non-square images; captions; VQA lines; panoptic JSON + PNGs (id = R + 256 G + 256² B)
with thing and stuff segments.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

W, H = 48, 40  # non-square, like COCO
CATEGORIES = [
    {"id": 1, "name": "person", "supercategory": "person"},
    {"id": 3, "name": "car", "supercategory": "vehicle"},
    {"id": 18, "name": "dog", "supercategory": "animal"},
    {"id": 90, "name": "toothbrush", "supercategory": "indoor"},
]
PANOPTIC_CATEGORIES = [
    {"id": 1, "name": "person", "supercategory": "person", "isthing": 1, "color": [220, 20, 60]},
    {"id": 3, "name": "car", "supercategory": "vehicle", "isthing": 1, "color": [0, 0, 142]},
    {"id": 18, "name": "dog", "supercategory": "animal", "isthing": 1, "color": [255, 179, 240]},
    {"id": 90, "name": "toothbrush", "supercategory": "indoor", "isthing": 1, "color": [0, 220, 176]},
    {"id": 184, "name": "tree-merged", "supercategory": "plant", "isthing": 0,
     "color": [107, 142, 35]},
]
IMAGE_IDS = [139, 285, 632, 724]
MODES = ["RGB", "L", "RGBA", "I;16"]  # converted by readers, never rejected


def _rle(mask: np.ndarray, compressed: bool) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    if compressed:
        return {"size": [H, W], "counts": rle["counts"].decode("ascii")}
    # COCO's crowd format: uncompressed run lengths, column-major, starting with zeros.
    flat = mask.astype(np.uint8).flatten(order="F")
    change = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))
    counts = np.diff(np.concatenate([[0], change])).tolist()
    return {"size": [H, W], "counts": counts}


def _write_image(path: Path, mode: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    if mode == "RGB":
        Image.fromarray(rgb).save(path)
    elif mode == "L":
        Image.fromarray(rgb[..., 0]).save(path)
    elif mode == "RGBA":
        Image.fromarray(np.dstack([rgb, np.full((H, W), 200, np.uint8)]), "RGBA").save(path)
    else:
        Image.fromarray(rgb[..., 0].astype(np.uint16) * 257).save(path)


def annotations() -> list[dict]:
    """Instances with every encoding COCO uses; some overlap, one is a crowd region."""
    big = np.zeros((H, W), bool)
    big[5:35, 4:40] = True
    small = np.zeros((H, W), bool)
    small[12:20, 10:22] = True
    crowd = np.zeros((H, W), bool)
    crowd[25:38, 2:30] = True
    return [
        # two-part polygon (COCO splits occluded objects this way)
        {"id": 1001, "image_id": 139, "category_id": 1, "iscrowd": 0,
         "segmentation": [[2, 2, 20, 2, 20, 18, 2, 18], [26, 4, 44, 4, 35, 20]],
         "area": 468.0, "bbox": [2, 2, 42, 18]},
        {"id": 1002, "image_id": 139, "category_id": 18, "iscrowd": 0,
         "segmentation": [[10.5, 10.5, 30.2, 12.0, 18.7, 30.9]], "area": 185.0,
         "bbox": [10.5, 10.5, 19.7, 20.4]},
        # overlapping compressed RLEs: the smaller must stay visible on top
        {"id": 2001, "image_id": 285, "category_id": 3, "iscrowd": 0,
         "segmentation": _rle(big, True), "area": float(big.sum()), "bbox": [4, 5, 36, 30]},
        {"id": 2002, "image_id": 285, "category_id": 90, "iscrowd": 0,
         "segmentation": _rle(small, True), "area": float(small.sum()), "bbox": [10, 12, 12, 8]},
        # crowd region in COCO's uncompressed RLE
        {"id": 3001, "image_id": 632, "category_id": 1, "iscrowd": 1,
         "segmentation": _rle(crowd, False), "area": float(crowd.sum()), "bbox": [2, 25, 28, 13]},
        {"id": 3002, "image_id": 632, "category_id": 3, "iscrowd": 0,
         "segmentation": [[30, 5, 46, 5, 46, 22, 30, 22]], "area": 272.0, "bbox": [30, 5, 16, 17]},
        {"id": 4001, "image_id": 724, "category_id": 18, "iscrowd": 0,
         "segmentation": [[5, 5, 40, 8, 22, 36]], "area": 500.0, "bbox": [5, 5, 35, 31]},
    ]


def write_coco_fixture(root: Path, panoptic: bool = True) -> dict[str, str]:
    """Write the fixture under ``root``; returns the keyword arguments of ``ingest``."""
    images_dir = root / "val2017"
    ann_dir = root / "annotations"
    images_dir.mkdir(parents=True)
    ann_dir.mkdir()
    images = []
    for seed, (image_id, mode) in enumerate(zip(IMAGE_IDS, MODES, strict=True)):
        name = f"{image_id:012d}.jpg" if mode == "RGB" else f"{image_id:012d}.png"
        _write_image(images_dir / name, mode, seed)
        images.append({"id": image_id, "file_name": name, "width": W, "height": H,
                       "license": 1, "coco_url": "", "date_captured": ""})
    instances = {"info": {"description": "coco-like fixture"}, "licenses": [],
                 "images": images, "annotations": annotations(), "categories": CATEGORIES}
    (ann_dir / "instances_val2017.json").write_text(json.dumps(instances))
    captions = {"images": images, "annotations": [
        {"id": 7000 + i, "image_id": image_id, "caption": f"A photo number {i}."}
        for i, image_id in enumerate(IMAGE_IDS)]}
    (ann_dir / "captions_val2017.json").write_text(json.dumps(captions))
    with (ann_dir / "vqa_val2017.jsonl").open("w") as f:
        for i, image_id in enumerate(IMAGE_IDS):
            f.write(json.dumps({"question_id": 90 + i, "image_id": image_id,
                                "question": "Is there a dog?", "answer": "yes", "type": "exists"}) + "\n")
    paths = {
        "instances_json": str(ann_dir / "instances_val2017.json"),
        "images_dir": str(images_dir),
        "captions_json": str(ann_dir / "captions_val2017.json"),
        "vqa_jsonl": str(ann_dir / "vqa_val2017.jsonl"),
    }
    if panoptic:
        paths["panoptic_json"] = str(_write_panoptic(ann_dir, images))
    return paths


def _write_panoptic(ann_dir: Path, images: list[dict]) -> Path:
    png_dir = ann_dir / "panoptic_val2017"
    png_dir.mkdir()
    records = []
    for image in images:
        ids = np.zeros((H, W), np.int64)
        ids[:, : W // 2] = 5_000_001  # stuff: the left half is "tree-merged"
        ids[8:20, 28:44] = 1_234  # a thing instance
        segments = [
            {"id": 5_000_001, "category_id": 184, "iscrowd": 0, "area": int((ids == 5_000_001).sum()),
             "bbox": [0, 0, W // 2, H]},
            {"id": 1_234, "category_id": 3, "iscrowd": 0, "area": int((ids == 1_234).sum()),
             "bbox": [28, 8, 16, 12]},
        ]
        rgb = np.stack([ids % 256, ids // 256 % 256, ids // 256**2], -1).astype(np.uint8)
        name = Path(image["file_name"]).with_suffix(".png").name
        Image.fromarray(rgb).save(png_dir / name)
        records.append({"image_id": image["id"], "file_name": name, "segments_info": segments})
    path = ann_dir / "panoptic_val2017.json"
    path.write_text(json.dumps({"images": images, "annotations": records,
                                "categories": PANOPTIC_CATEGORIES}))
    return path
