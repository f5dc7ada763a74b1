"""``rendering`` pipeline: validated tables → proxy-target PNGs at training resolution + index."""

from sgt_pipeline.pipelines.rendering.pipeline import create_pipeline

__all__ = ["create_pipeline"]
