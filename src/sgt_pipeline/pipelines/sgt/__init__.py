"""``sgt`` pipeline: the main job, raw source → tables → targets → base model → SGT model."""

from sgt_pipeline.pipelines.sgt.pipeline import create_pipeline

__all__ = ["create_pipeline"]
