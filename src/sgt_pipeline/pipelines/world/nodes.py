"""Nodes of the ``world`` pipeline."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from sgt_pipeline.ingestion import SplitSource
from sgt_pipeline.ingestion.errors import InvalidDatasetError
from sgt_pipeline.world import WorldConfig, generate_world


class SourceConfig(BaseModel):
    """Which raw dataset the pipeline ingests: the generated shapes world, or COCO-format files."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["shapes", "coco"] = "shapes"
    splits: dict[str, SplitSource] = {}  # kind == coco: split name -> where its files live


def prepare_raw_dataset(world: WorldConfig, source: SourceConfig) -> dict:
    """The manifest of the raw dataset (split → files) that ingestion reads.

    ``shapes``: generates the world (deterministic from ``world``); ``coco``: the configured files.
    """
    if source.kind == "shapes":
        return generate_world(world)
    if not source.splits:
        raise InvalidDatasetError("conf parameters", "source", "splits",
                                  "source.kind is 'coco' but no splits are configured")
    return {"kind": "coco", "splits": {name: split.model_dump() for name, split in source.splits.items()}}
