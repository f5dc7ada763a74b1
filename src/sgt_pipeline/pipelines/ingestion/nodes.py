"""Nodes of the ``ingestion`` pipeline."""

from __future__ import annotations

import pandas as pd

from sgt_pipeline.ingestion import IngestionConfig, ingest_splits, report_markdown


def ingest_raw_dataset(
    raw_dataset: dict, config: IngestionConfig
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame,
           str, dict]:
    """Validated tables of every split; fails closed (the hooks save the failure report)."""
    result = ingest_splits(raw_dataset["splits"], config)
    t = result.tables
    summary = {"success": result.report["success"], "tables": result.report["tables"]}
    return (t["images"], t["annotations"], t["categories"], t["captions"], t["qa"], t["segments"],
            report_markdown(result.report), summary)
