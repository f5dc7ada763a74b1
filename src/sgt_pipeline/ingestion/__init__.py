"""COCO-format ingestion: pycocotools loading, tidy tables, Great Expectations validation.

    from sgt_pipeline.ingestion import ingest, to_coco
    result = ingest("annotations/instances_val2017.json", "val2017")
    coco = to_coco(result.tables)   # a pycocotools COCO over the validated tables
"""

from sgt_pipeline.ingestion.errors import InvalidDatasetError
from sgt_pipeline.ingestion.ingest import (
    Ingested,
    IngestionConfig,
    SplitSource,
    ingest,
    ingest_splits,
)
from sgt_pipeline.ingestion.suites import report_markdown
from sgt_pipeline.ingestion.tables import TABLE_NAMES, to_coco

__all__ = [
    "TABLE_NAMES",
    "Ingested",
    "IngestionConfig",
    "InvalidDatasetError",
    "SplitSource",
    "ingest",
    "ingest_splits",
    "report_markdown",
    "to_coco",
]
