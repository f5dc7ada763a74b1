"""Project hooks."""

from __future__ import annotations

import logging
import time
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


class NodeTimingHooks:
    """At the end of a run, log the wall time of every node, longest first: where a run's minutes went."""

    def __init__(self) -> None:
        self._started: dict[str, float] = {}
        self._seconds: dict[str, float] = {}

    @hook_impl
    def before_pipeline_run(self) -> None:
        self._started.clear()
        self._seconds.clear()

    @hook_impl
    def before_node_run(self, node: Node) -> None:
        self._started[node.name] = time.perf_counter()

    @hook_impl
    def after_node_run(self, node: Node) -> None:
        self._seconds[node.name] = time.perf_counter() - self._started.pop(node.name)

    @hook_impl
    def after_pipeline_run(self) -> None:
        if not self._seconds:
            return
        rows = sorted(self._seconds.items(), key=lambda item: -item[1])
        width = max(len(name) for name, _ in rows)
        lines = [f"  {name:<{width}}  {seconds:7.1f} s" for name, seconds in rows]
        log.info("Node wall times (total %.1f s):\n%s", sum(self._seconds.values()), "\n".join(lines))
