"""``evaluation`` pipeline: understanding, generation, proxy quality and analyses of the SGT model."""

from sgt_pipeline.pipelines.evaluation.pipeline import create_pipeline

__all__ = ["create_pipeline"]
