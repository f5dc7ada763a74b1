"""Nodes of the ``rendering`` pipeline."""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict
from tqdm.auto import tqdm

from sgt_pipeline.ingestion import InvalidDatasetError, to_coco
from sgt_pipeline.rendering import Palette, render_target, resize_target

log = logging.getLogger(__name__)

TargetKind = Literal["reconstruction", "edge", "depth", "semantic", "instance", "panoptic"]


class RenderingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kinds: list[TargetKind] = ["reconstruction", "edge", "depth", "semantic", "instance", "panoptic"]
    image_size: int | None = 64  # training resolution (square); None keeps each image's native size
    include_crowd: bool = False  # paint iscrowd=1 regions as instances


def render_proxy_targets(
    images: pd.DataFrame, annotations: pd.DataFrame, categories: pd.DataFrame,
    segments: pd.DataFrame, config: RenderingConfig,
) -> tuple[dict[str, Callable[[], np.ndarray]], pd.DataFrame, dict]:
    """Targets for every image and kind, as lazily rendered partitions ``<kind>/<split>/<image_id>``.

    Rendering happens while the catalog saves (one image in memory at a time), so this scales to COCO.
    Returns (partitions, index table, palettes used).
    """
    tables = {"images": images, "annotations": annotations, "categories": categories,
              "segments": segments}
    _check_kinds_possible(images, config.kinds)
    coco = to_coco(tables)
    palettes = _palettes(coco, annotations, segments, config.include_crowd)
    progress = tqdm(total=len(images) * len(config.kinds), desc="rendering targets", unit="target")

    def render(kind: str, image_id: int) -> np.ndarray:
        target = render_target(kind, coco, image_id, palettes.get(kind),
                               include_crowd=config.include_crowd)
        if config.image_size is not None:
            target = resize_target(target, config.image_size, kind)
        progress.update()
        if progress.n == progress.total:
            progress.close()
            log.info("rendered %d targets (%s) for %d images at %s px",
                     progress.total, ", ".join(config.kinds), len(images),
                     config.image_size or "native")
        return target

    partitions, rows = {}, []
    for image in images.itertuples(index=False):
        for kind in config.kinds:
            key = f"{kind}/{image.split}/{int(image.image_id):012d}"
            partitions[key] = partial(render, kind, int(image.image_id))
            rows.append({"image_id": int(image.image_id), "split": image.split, "kind": kind,
                         "target_file": f"{key}.png", "image_path": image.path})
    index = pd.DataFrame(rows, columns=["image_id", "split", "kind", "target_file", "image_path"])
    return partitions, index, {name: p.to_dict() for name, p in palettes.items()}


def _palettes(coco, annotations: pd.DataFrame, segments: pd.DataFrame,
              include_crowd: bool) -> dict[str, Palette]:
    """One palette per label kind, sized for the most crowded image, so a label's colour is fixed."""
    painted = annotations if include_crowd else annotations[annotations["iscrowd"] == 0]
    most_instances = int(painted.groupby("image_id").size().max()) if len(painted) else 1
    per_image = segments.groupby("image_id").size() if len(segments) else pd.Series(dtype=int)
    most_segments = max(int(per_image.max()) if len(per_image) else 0,
                        int(annotations.groupby("image_id").size().max()) if len(annotations) else 1)
    return {"semantic": Palette.for_categories(coco.dataset["categories"]),
            "instance": Palette.for_instances(most_instances),
            "panoptic": Palette.for_instances(most_segments)}


def _check_kinds_possible(images: pd.DataFrame, kinds: list[str]) -> None:
    """Fail before writing anything when a requested kind lacks its input (e.g. depth maps)."""
    if "depth" not in kinds:
        return
    lacking = images[images["depth_path"].isna()] if "depth_path" in images else images
    if len(lacking):
        first = lacking.iloc[0]
        raise InvalidDatasetError(
            first["source_file"], f"image id={int(first['image_id'])}", "depth_path",
            f"the 'depth' proxy needs a depth map for every image; {len(lacking)} image(s) have none "
            "(set source splits' depth_dir, or drop 'depth' from rendering.kinds)")
