"""``world`` pipeline: prepare the raw COCO-format source (generate the shapes world, or point at COCO)."""

from sgt_pipeline.pipelines.world.pipeline import create_pipeline

__all__ = ["create_pipeline"]
