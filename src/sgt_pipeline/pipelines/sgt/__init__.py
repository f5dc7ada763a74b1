"""``sgt`` pipeline: the main job, from the raw source to (for now) the rendered proxy targets."""

from sgt_pipeline.pipelines.sgt.pipeline import create_pipeline

__all__ = ["create_pipeline"]
