"""``pretrain`` pipeline: the base model (a local checkpoint, or the tiny Janus trained here, cached)."""

from sgt_pipeline.pipelines.pretrain.pipeline import create_pipeline

__all__ = ["create_pipeline"]
