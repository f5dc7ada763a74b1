"""Project hooks."""

from __future__ import annotations

import logging
from typing import Any

from kedro.framework.hooks import hook_impl
from kedro.pipeline import Node

from sgt_pipeline.ingestion import InvalidDatasetError, report_markdown

log = logging.getLogger(__name__)


class ValidationReportHooks:
    """When ingestion refuses its input, still write the validation report a person reads.

    The failing node saves none of its outputs (so nothing downstream is written), but its report
    datasets get the failure report: which file, record and field, and every check's outcome.
    """

    @hook_impl
    def on_node_error(self, error: Exception, node: Node, catalog: Any) -> None:
        if not isinstance(error, InvalidDatasetError) or "ingestion_report" not in node.outputs:
            return
        report = error.report or {"success": False, "tables": {}, "checks": [],
                                  "problems": error.problems}
        catalog.save("ingestion_report", report_markdown(report))
        catalog.save("ingestion_summary", {"success": False, "tables": report["tables"],
                                           "problems": len(report["problems"])})
        log.error("Ingestion refused its input; report written to the 'ingestion_report' dataset")
