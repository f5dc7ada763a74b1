"""``study`` pipeline: the proxy-hierarchy ablation from one base model (prepares data and base as ``sgt`` does)."""

from sgt_pipeline.pipelines.study.pipeline import create_pipeline

__all__ = ["create_pipeline"]
