"""Rendering speed against pycocotools' own mask decoding, on a synthetic in-memory COCO dataset.

For N annotations (10 per 128x128 image; 50% polygons of which a third have two parts, 30% compressed
RLE, 20% uncompressed RLE; no crowd, so both sides decode every mask) it times, in the same run:

- ours:        ``render_target("instance", coco, image_id)`` for every image (label map + colours);
- pycocotools: ``coco.annToMask(ann)`` for every annotation (RLE conversion + decode, nothing else);
- batched:     ``coco.annToRLE`` per annotation + ONE ``maskUtils.decode`` per image: the least pycocotools
               needs to produce the same masks (reported as a stricter second ratio; no label map, no colour).

Runs alternate (ours, pycocotools, batched, ours, ...) so that load from other processes hits all three
alike; best of ``--repeats`` runs each. Goal (DESIGN §6): ratio ours/pycocotools <= 1.5, and µs per annotation
flat in N (linear time).

    PYTHONPATH=src python benchmarks/rendering.py [--quick] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from sgt_pipeline.ingestion.tables import index_coco
from sgt_pipeline.rendering import Palette, label_map, render_target

SIZE = 128
ANNOTATIONS_PER_IMAGE = 10


def _polygon(rng: np.random.Generator) -> list[float]:
    """A random star-shaped polygon inside the image."""
    cx, cy = rng.uniform(16, SIZE - 16, 2)
    angles = np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(5, 12))))
    radii = rng.uniform(4, 40, len(angles))
    xs = np.clip(cx + radii * np.cos(angles), 0, SIZE - 1)
    ys = np.clip(cy + radii * np.sin(angles), 0, SIZE - 1)
    return np.stack([xs, ys], axis=1).ravel().round(2).tolist()


def _uncompressed(rle: dict) -> dict:
    flat = mask_utils.decode(rle).ravel(order="F")
    changes = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate([[0], changes, [flat.size]])).tolist()
    return {"size": [SIZE, SIZE], "counts": ([0] if flat[0] else []) + runs}


def synthetic_coco(n_annotations: int, seed: int = 0) -> COCO:
    rng = np.random.default_rng(seed)
    n_images = max(1, n_annotations // ANNOTATIONS_PER_IMAGE)
    images = [{"id": i + 1, "file_name": f"{i + 1}.png", "width": SIZE, "height": SIZE} for i in range(n_images)]
    annotations = []
    for index in range(n_annotations):
        kind = rng.random()
        if kind < 0.5:
            segmentation = [_polygon(rng) for _ in range(2 if rng.random() < 1 / 3 else 1)]
        else:
            rle = mask_utils.frPyObjects([_polygon(rng)], SIZE, SIZE)[0]
            if kind < 0.8:
                segmentation = {"size": rle["size"], "counts": rle["counts"].decode("ascii")}
            else:
                segmentation = _uncompressed(rle)
        area = float(mask_utils.area(mask_utils.frPyObjects([_polygon(rng)], SIZE, SIZE)[0]))
        annotations.append({
            "id": index + 1, "image_id": index % n_images + 1, "category_id": int(rng.integers(1, 6)),
            "iscrowd": 0, "area": area, "segmentation": segmentation, "bbox": [0, 0, SIZE, SIZE],
        })
    return index_coco({"images": images, "annotations": annotations,
                       "categories": [{"id": c, "name": f"c{c}"} for c in range(1, 6)]})


def render_all(coco: COCO) -> None:
    for image_id in coco.imgs:
        render_target("instance", coco, image_id)


def decode_all(coco: COCO) -> None:
    for annotation in coco.dataset["annotations"]:
        coco.annToMask(annotation)


def decode_batched(coco: COCO) -> None:
    for image_id in coco.imgs:
        mask_utils.decode([coco.annToRLE(annotation) for annotation in coco.imgToAnns[image_id]])


def best_times(functions, coco: COCO, repeats: int) -> list[float]:
    """Best wall time of each function, runs interleaved."""
    best = [float("inf")] * len(functions)
    for _ in range(repeats):
        for position, function in enumerate(functions):
            start = time.perf_counter()
            function(coco)
            best[position] = min(best[position], time.perf_counter() - start)
    return best


def check_agreement(coco: COCO, images: int = 20) -> None:
    """Our label map equals annToMask masks painted by descending area (a sanity check, not timed)."""
    for image_id in list(coco.imgs)[:images]:
        anns = sorted(coco.imgToAnns[image_id], key=lambda a: (-a["area"], a["id"]))
        expected = np.zeros((SIZE, SIZE), dtype=np.int32)
        for k, annotation in enumerate(anns, start=1):
            expected[coco.annToMask(annotation) > 0] = k
        assert np.array_equal(label_map("instance", coco, image_id), expected), image_id
        assert np.array_equal(render_target("instance", coco, image_id),
                              Palette.for_instances(len(anns)).encode(expected))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="N = 300, 3000 instead of 10^3, 10^4, 10^5")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("DO_NOT_TRACK", "1")
    # pycocotools 2.0.11 + numpy 2 warn (DeprecationWarning) inside every decode call; silence the output.
    warnings.simplefilter("ignore", DeprecationWarning)
    sizes = (300, 3000) if args.quick else (10**3, 10**4, 10**5)

    header = (
        f"{'N':>7} {'ours s':>8} {'pycoco s':>9} {'ours ann/s':>11} {'ratio':>6} {'ours µs/ann':>12}"
        f" {'pycoco µs/ann':>14} {'batched s':>10} {'ratio vs batched':>17}"
    )
    print(f"instance targets, {SIZE}x{SIZE} images, {ANNOTATIONS_PER_IMAGE} annotations each, best of {args.repeats}")
    print(header)
    print("-" * len(header))
    for n in sizes:
        coco = synthetic_coco(n)
        check_agreement(coco)
        ours, theirs, batched = best_times((render_all, decode_all, decode_batched), coco, args.repeats)
        print(f"{n:>7} {ours:>8.3f} {theirs:>9.3f} {n / ours:>11.0f} {ours / theirs:>6.2f} "
              f"{1e6 * ours / n:>12.1f} {1e6 * theirs / n:>14.1f} {batched:>10.3f} {ours / batched:>17.2f}",
              flush=True)


if __name__ == "__main__":
    main()
