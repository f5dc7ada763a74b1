"""The ingestion entry point: COCO-format files → validated tidy tables, or InvalidDatasetError."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel, ConfigDict

from sgt_pipeline.ingestion import schema, tables
from sgt_pipeline.ingestion.errors import InvalidDatasetError
from sgt_pipeline.ingestion.suites import build_suites, run_suites


class SplitSource(BaseModel):
    """Where one split of a COCO-format dataset lives (COCO 2017 layout works as is)."""

    model_config = ConfigDict(extra="forbid")

    instances_json: str
    images_dir: str
    captions_json: str | None = None
    vqa_jsonl: str | None = None  # JSON lines: question_id, image_id, question, answer, type
    panoptic_json: str | None = None
    panoptic_dir: str | None = None  # default: panoptic_json without ".json" (COCO's layout)
    depth_dir: str | None = None  # 16-bit PNG depth maps named like the images (stem + ".png")


class IngestionConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decode_images: bool = True  # fully decode every image (False: header check only, for huge sets)
    bbox_tolerance: float = 1.0  # pixels a bbox may exceed the image by (float rounding in real data)
    workers: int = 2  # threads probing image files


@dataclass
class Ingested:
    """Validated tables (images, annotations, categories, captions, qa, segments) and the report."""

    tables: dict[str, pd.DataFrame]
    report: dict[str, Any]


def ingest(
    instances_json: str | Path,
    images_dir: str | Path,
    captions_json: str | Path | None = None,
    vqa_jsonl: str | Path | None = None,
    panoptic_json: str | Path | None = None,
    *,
    depth_dir: str | Path | None = None,
    panoptic_dir: str | Path | None = None,
    split: str = "train",
    config: IngestionConfig | None = None,
) -> Ingested:
    """Load one split of a COCO-format dataset through pycocotools and validate it.

    Raises InvalidDatasetError naming file, record and field on the first structural problem, or
    listing every problem the Great Expectations suites found (``err.report`` holds the full report).
    """
    source = SplitSource(
        instances_json=str(instances_json), images_dir=str(images_dir),
        captions_json=_opt(captions_json), vqa_jsonl=_opt(vqa_jsonl),
        panoptic_json=_opt(panoptic_json), panoptic_dir=_opt(panoptic_dir), depth_dir=_opt(depth_dir),
    )
    return ingest_splits({split: source}, config)


def ingest_splits(
    sources: dict[str, SplitSource | dict], config: IngestionConfig | None = None
) -> Ingested:
    """Ingest several splits (e.g. train and val) into one set of tables with a ``split`` column."""
    config = config or IngestionConfig()
    if not sources:
        raise InvalidDatasetError("<config>", "<splits>", "splits", "no split configured")
    per_split = [read_split(name, SplitSource.model_validate(dict(src)) if isinstance(src, dict)
                            else src, config) for name, src in sources.items()]
    merged = {name: pd.concat([t[name] for t in per_split], ignore_index=True)
              for name in tables.TABLE_NAMES if name != "categories"}
    merged["categories"] = _same_categories(per_split)
    report = run_suites(build_suites(merged, config.bbox_tolerance))
    if not report["success"]:
        raise InvalidDatasetError.from_problems(report["problems"], report=report)
    return Ingested(merged, report)


def read_split(split: str, source: SplitSource, config: IngestionConfig) -> dict[str, pd.DataFrame]:
    """Structural checks and tidy tables of one split (not yet validated by the suites)."""
    file = source.instances_json
    data = schema.load_json(file)
    schema.raise_if_any(schema.require_lists(file, data, ["images", "annotations", "categories"]))
    schema.raise_if_any(
        schema.check_records(file, "image", data["images"], schema.IMAGE_SPEC)
        + schema.check_records(file, "annotation", data["annotations"], schema.ANNOTATION_SPEC)
        + schema.check_records(file, "category", data["categories"], schema.CATEGORY_SPEC)
    )
    tables.require_non_empty(file, data)
    coco = tables.index_coco(data)
    depth_dir = Path(source.depth_dir) if source.depth_dir else None
    images = tables.image_table(data, file, Path(source.images_dir), depth_dir, split,
                                config.decode_images, config.workers)
    panoptic_images, segments, panoptic_categories = tables.panoptic_tables(
        _path(source.panoptic_json), _path(source.panoptic_dir), split,
        config.decode_images, config.workers)
    if source.panoptic_json:
        images = images.merge(panoptic_images, on="image_id", how="left")
    return {
        "images": images,
        "annotations": tables.annotation_table(coco, file, split),
        "categories": tables.category_table(data, file, panoptic_categories, source.panoptic_json),
        "captions": tables.caption_table(_path(source.captions_json), split),
        "qa": tables.qa_table(_path(source.vqa_jsonl), split),
        "segments": segments,
    }


def _same_categories(per_split: list[dict[str, pd.DataFrame]]) -> pd.DataFrame:
    """Every split must share one category list (as COCO's do); the first split's is kept."""
    first = per_split[0]["categories"]
    key = ["category_id", "name"]
    for other in per_split[1:]:
        cats = other["categories"]
        if not first[key].reset_index(drop=True).equals(cats[key].reset_index(drop=True)):
            raise InvalidDatasetError(
                cats["source_file"].iloc[0], "<top level>", "categories",
                f"differ from those of {first['source_file'].iloc[0]}; all splits must share them")
    return first


def _opt(value: str | Path | None) -> str | None:
    return None if value is None else str(value)


def _path(value: str | None) -> Path | None:
    return None if value is None else Path(value)
