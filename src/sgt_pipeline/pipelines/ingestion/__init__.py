"""``ingestion`` pipeline: raw COCO-format source → validated tidy tables + validation report."""

from sgt_pipeline.pipelines.ingestion.pipeline import create_pipeline

__all__ = ["create_pipeline"]
