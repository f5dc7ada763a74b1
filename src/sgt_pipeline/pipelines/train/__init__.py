"""``train`` pipeline: SGT post-training of the base model on the task mixture."""

from sgt_pipeline.pipelines.train.pipeline import create_pipeline

__all__ = ["create_pipeline"]
