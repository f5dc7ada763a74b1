"""COCO-format files → tidy tables (one row per image, annotation, category, caption, QA item, segment).

Annotations are indexed by pycocotools; images are probed with Pillow (exists, decodes, size, mode) so
the Great Expectations suites can check them as plain columns. Columns that only validation needs are
computed here too (segmentation format, polygon sizes, RLE sizes) and stay in the tables: they are cheap
and make a table self-describing.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image
from pycocotools.coco import COCO

from sgt_pipeline.ingestion import schema
from sgt_pipeline.ingestion.errors import InvalidDatasetError

# Absolute paths (POSIX or Windows) or any '..' component: never read outside the images directory.
UNSAFE_FILE_NAME = r"^(?:/|\\|[A-Za-z]:)|(?:^|[/\\])\.\.(?:[/\\]|$)"
_UNSAFE = re.compile(UNSAFE_FILE_NAME)

TABLE_NAMES = ("images", "annotations", "categories", "captions", "qa", "segments")


def index_coco(data: dict) -> COCO:
    """A pycocotools index over an already-parsed dataset dict (pycocotools prints while indexing)."""
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def probe_image(path: Path, decode: bool = True) -> dict[str, Any]:
    """What Pillow says about one image file: exists, decodes, size, mode."""
    if not path.is_file():
        return {"file_exists": False, "decodes": None, "decoded_width": None,
                "decoded_height": None, "mode": None}
    try:
        with Image.open(path) as img:
            if decode:
                img.load()
            else:
                img.verify()
            width, height, mode = img.size[0], img.size[1], img.mode
    except Exception:  # noqa: BLE001 - any decoder failure means "does not decode"
        return {"file_exists": True, "decodes": False, "decoded_width": None,
                "decoded_height": None, "mode": None}
    return {"file_exists": True, "decodes": True, "decoded_width": width,
            "decoded_height": height, "mode": mode}


def _probe_all(paths: list[Path | None], decode: bool, workers: int) -> list[dict[str, Any]]:
    empty = {"file_exists": None, "decodes": None, "decoded_width": None,
             "decoded_height": None, "mode": None}
    # Pillow releases the GIL while decoding, so threads give real parallelism here.
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda p: empty if p is None else probe_image(p, decode), paths))


def image_table(
    data: dict, file: str, images_dir: Path, depth_dir: Path | None, split: str,
    decode: bool, workers: int,
) -> pd.DataFrame:
    rows = data["images"]
    # An unsafe name is reported by the suite; it is never opened.
    paths = [None if _UNSAFE.search(r["file_name"]) else images_dir / r["file_name"] for r in rows]
    probes = _probe_all(paths, decode, workers)
    frame = pd.DataFrame({
        "image_id": pd.array([r["id"] for r in rows], dtype="int64"),
        "split": split,
        "file_name": [r["file_name"] for r in rows],
        "path": [None if p is None else str(p) for p in paths],
        "width": pd.array([r["width"] for r in rows], dtype="int64"),
        "height": pd.array([r["height"] for r in rows], dtype="int64"),
        "source_file": file,
    })
    frame = pd.concat([frame, _probe_frame(probes)], axis=1)
    if depth_dir is not None:
        depth_paths = [None if p is None else depth_dir / (p.stem + ".png") for p in paths]
        depth = _probe_frame(_probe_all(depth_paths, decode, workers))
        frame["depth_path"] = [None if p is None else str(p) for p in depth_paths]
        frame["depth_exists"] = depth["file_exists"]
        frame["depth_width"] = depth["decoded_width"]
        frame["depth_height"] = depth["decoded_height"]
    return frame


def _probe_frame(probes: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(probes)
    for column in ("file_exists", "decodes"):
        frame[column] = frame[column].astype("boolean")
    for column in ("decoded_width", "decoded_height"):
        frame[column] = frame[column].astype("Int64")
    return frame


def _segmentation_traits(seg: Any) -> tuple[str, int | None, int | None, int | None]:
    """(format, fewest points of any polygon part, RLE height, RLE width)."""
    if isinstance(seg, list):
        return "polygon", (min(len(part) // 2 for part in seg) if seg else 0), None, None
    fmt = "compressed_rle" if isinstance(seg["counts"], str) else "rle"
    return fmt, None, seg["size"][0], seg["size"][1]


def annotation_table(coco: COCO, file: str, split: str) -> pd.DataFrame:
    anns = coco.dataset["annotations"]
    traits = [_segmentation_traits(a["segmentation"]) for a in anns]
    return pd.DataFrame({
        "ann_id": pd.array([a["id"] for a in anns], dtype="int64"),
        "image_id": pd.array([a["image_id"] for a in anns], dtype="int64"),
        "split": split,
        "category_id": pd.array([a["category_id"] for a in anns], dtype="int64"),
        "iscrowd": pd.array([a.get("iscrowd", 0) for a in anns], dtype="int64"),
        "area": np.array([a["area"] for a in anns], dtype="float64"),
        "bbox_x": np.array([a["bbox"][0] for a in anns], dtype="float64"),
        "bbox_y": np.array([a["bbox"][1] for a in anns], dtype="float64"),
        "bbox_w": np.array([a["bbox"][2] for a in anns], dtype="float64"),
        "bbox_h": np.array([a["bbox"][3] for a in anns], dtype="float64"),
        "seg_format": [t[0] for t in traits],
        "min_polygon_points": pd.array([t[1] for t in traits], dtype="Int64"),
        "rle_height": pd.array([t[2] for t in traits], dtype="Int64"),
        "rle_width": pd.array([t[3] for t in traits], dtype="Int64"),
        "segmentation": [json.dumps(a["segmentation"], separators=(",", ":")) for a in anns],
        "source_file": file,
    })


def category_table(data: dict, file: str, panoptic_categories: list[dict] | None = None,
                   panoptic_file: str | None = None) -> pd.DataFrame:
    """Instance categories, joined with panoptic ones when given (COCO adds stuff categories there,
    and the ``color`` / ``isthing`` fields)."""
    cats = [dict(c) for c in data["categories"]]
    if panoptic_categories:
        by_id = {c["id"]: c for c in cats}
        for pan in panoptic_categories:
            known = by_id.get(pan["id"])
            if known is None:
                cats.append(dict(pan))
            elif known["name"] != pan["name"]:
                raise InvalidDatasetError(
                    panoptic_file, f"category id={pan['id']}", "name",
                    f"{pan['name']!r} differs from {known['name']!r} in {file}")
            else:
                known.update({k: pan[k] for k in ("color", "isthing") if k in pan})
    return pd.DataFrame({
        "category_id": pd.array([c["id"] for c in cats], dtype="int64"),
        "name": [c["name"] for c in cats],
        "supercategory": [c.get("supercategory") for c in cats],
        "isthing": pd.array([c.get("isthing") for c in cats], dtype="Int64"),
        "color": [json.dumps(c["color"]) if "color" in c else None for c in cats],
        "source_file": file,
    })


def caption_table(path: Path | None, split: str) -> pd.DataFrame:
    columns = ["caption_id", "image_id", "split", "caption", "source_file"]
    if path is None:
        return pd.DataFrame({c: pd.Series(dtype="int64" if c.endswith("_id") else "object")
                             for c in columns})
    data = schema.load_json(path)
    schema.raise_if_any(schema.require_lists(path, data, ["annotations"]))
    schema.raise_if_any(schema.check_records(path, "caption", data["annotations"], schema.CAPTION_SPEC))
    rows = data["annotations"]
    return pd.DataFrame({
        "caption_id": pd.array([r["id"] for r in rows], dtype="int64"),
        "image_id": pd.array([r["image_id"] for r in rows], dtype="int64"),
        "split": split,
        "caption": [r["caption"] for r in rows],
        "source_file": str(path),
    }, columns=columns)


def qa_table(path: Path | None, split: str) -> pd.DataFrame:
    columns = ["question_id", "image_id", "split", "question", "answer", "type", "source_file"]
    if path is None:
        return pd.DataFrame({c: pd.Series(dtype="int64" if c.endswith("_id") else "object")
                             for c in columns})
    rows = schema.load_jsonl(path)
    schema.raise_if_any(schema.check_records(path, "question", rows, schema.QA_SPEC, "question_id"))
    return pd.DataFrame({
        "question_id": pd.array([r["question_id"] for r in rows], dtype="int64"),
        "image_id": pd.array([r["image_id"] for r in rows], dtype="int64"),
        "split": split,
        "question": [r["question"] for r in rows],
        "answer": [r["answer"] for r in rows],
        "type": [r["type"] for r in rows],
        "source_file": str(path),
    }, columns=columns)


def panoptic_tables(
    path: Path | None, panoptic_dir: Path | None, split: str, decode: bool, workers: int
) -> tuple[pd.DataFrame, pd.DataFrame, list[dict]]:
    """(per-image panoptic PNG probe, one row per segment, categories); empty without a panoptic file."""
    seg_columns = ["segment_id", "image_id", "split", "category_id", "iscrowd", "area",
                   "bbox_x", "bbox_y", "bbox_w", "bbox_h", "source_file"]
    if path is None:
        return (pd.DataFrame({"image_id": pd.Series(dtype="int64")}),
                pd.DataFrame({c: pd.Series(dtype="float64") for c in seg_columns}), [])
    data = schema.load_json(path)
    schema.raise_if_any(schema.require_lists(path, data, ["annotations", "categories"]))
    anns = data["annotations"]
    problems = schema.check_records(path, "panoptic annotation", anns, schema.PANOPTIC_SPEC, "image_id")
    problems += schema.check_records(path, "category", data["categories"], schema.CATEGORY_SPEC)
    schema.raise_if_any(problems)
    for ann in anns:
        problems += schema.check_records(
            path, f"panoptic image_id={ann['image_id']} segment", ann["segments_info"],
            schema.SEGMENT_SPEC)
    schema.raise_if_any(problems)
    panoptic_dir = panoptic_dir or path.with_suffix("")
    paths = [None if _UNSAFE.search(a["file_name"]) else panoptic_dir / a["file_name"] for a in anns]
    probes = _probe_frame(_probe_all(paths, decode, workers))
    per_image = pd.DataFrame({
        "image_id": pd.array([a["image_id"] for a in anns], dtype="int64"),
        "panoptic_path": [None if p is None else str(p) for p in paths],
        "panoptic_file_name": [a["file_name"] for a in anns],
        "panoptic_exists": probes["file_exists"],
        "panoptic_width": probes["decoded_width"],
        "panoptic_height": probes["decoded_height"],
    })
    segs = [(a["image_id"], s) for a in anns for s in a["segments_info"]]
    segments = pd.DataFrame({
        "segment_id": pd.array([s["id"] for _, s in segs], dtype="int64"),
        "image_id": pd.array([i for i, _ in segs], dtype="int64"),
        "split": split,
        "category_id": pd.array([s["category_id"] for _, s in segs], dtype="int64"),
        "iscrowd": pd.array([s.get("iscrowd", 0) for _, s in segs], dtype="int64"),
        "area": np.array([s["area"] for _, s in segs], dtype="float64"),
        "bbox_x": np.array([s["bbox"][0] for _, s in segs], dtype="float64"),
        "bbox_y": np.array([s["bbox"][1] for _, s in segs], dtype="float64"),
        "bbox_w": np.array([s["bbox"][2] for _, s in segs], dtype="float64"),
        "bbox_h": np.array([s["bbox"][3] for _, s in segs], dtype="float64"),
        "source_file": str(path),
    }, columns=seg_columns)
    return per_image, segments, data["categories"]


def to_coco(tables: dict[str, pd.DataFrame], split: str | None = None) -> COCO:
    """A pycocotools COCO over validated tables (optionally one split), for rendering and evaluation.

    Image records carry ``path`` and, where the data has them, ``depth_path``, ``panoptic_path`` and
    ``segments_info``; categories carry ``color`` and ``isthing`` when the source had them.
    """
    images = tables["images"]
    anns = tables["annotations"]
    segments = tables.get("segments")
    if split is not None:
        images = images[images["split"] == split]
        anns = anns[anns["split"] == split]
        segments = None if segments is None else segments[segments["split"] == split]
    by_image: dict[int, list[dict]] = {}
    if segments is not None and len(segments):
        for row in segments.itertuples(index=False):
            by_image.setdefault(int(row.image_id), []).append({
                "id": int(row.segment_id), "category_id": int(row.category_id),
                "iscrowd": int(row.iscrowd), "area": float(row.area),
                "bbox": [row.bbox_x, row.bbox_y, row.bbox_w, row.bbox_h]})
    image_records = []
    for row in images.to_dict("records"):
        record = {"id": int(row["image_id"]), "file_name": row["file_name"], "path": row["path"],
                  "width": int(row["width"]), "height": int(row["height"])}
        for key in ("depth_path", "panoptic_path"):
            if isinstance(row.get(key), str):
                record[key] = row[key]
        if record["id"] in by_image:
            record["segments_info"] = by_image[record["id"]]
        image_records.append(record)
    categories = []
    for row in tables["categories"].to_dict("records"):
        cat = {"id": int(row["category_id"]), "name": row["name"],
               "supercategory": row["supercategory"]}
        if isinstance(row.get("color"), str):
            cat["color"] = json.loads(row["color"])
        if pd.notna(row.get("isthing")):
            cat["isthing"] = int(row["isthing"])
        categories.append(cat)
    annotations = [
        {"id": int(r.ann_id), "image_id": int(r.image_id), "category_id": int(r.category_id),
         "iscrowd": int(r.iscrowd), "area": float(r.area),
         "bbox": [r.bbox_x, r.bbox_y, r.bbox_w, r.bbox_h],
         "segmentation": json.loads(r.segmentation)}
        for r in anns.itertuples(index=False)
    ]
    return index_coco({"images": image_records, "annotations": annotations, "categories": categories})


def require_non_empty(file: str, data: dict) -> None:
    if not data["images"]:
        raise InvalidDatasetError(file, "<top level>", "images", "the dataset has no images")
    if not data["annotations"]:
        raise InvalidDatasetError(file, "<top level>", "annotations", "the dataset has no annotations")
