"""Nodes of the ``ingestion`` pipeline."""

from __future__ import annotations

import logging

import pandas as pd

from sgt_pipeline.ingestion import IngestionConfig, ingest_splits, report_markdown

log = logging.getLogger(__name__)


def ingest_raw_dataset(
    raw_dataset: dict, config: IngestionConfig
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame,
           str, dict]:
    """Validated tables of every split; fails closed (the hooks save the failure report)."""
    result = ingest_splits(raw_dataset["splits"], config)
    t = result.tables
    summary = {"success": result.report["success"], "tables": result.report["tables"]}
    splits = t["images"]["split"].value_counts().to_dict()
    log.info("ingested %s images (%s), %s; all %d checks passed",
             len(t["images"]), ", ".join(f"{k} {v}" for k, v in splits.items()),
             ", ".join(f"{len(t[n])} {n}" for n in ("annotations", "categories", "captions", "qa")),
             len(result.report["checks"]))
    return (t["images"], t["annotations"], t["categories"], t["captions"], t["qa"], t["segments"],
            report_markdown(result.report), summary)
