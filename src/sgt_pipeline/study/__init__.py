"""The proxy-hierarchy study: SFT-only against each proxy kind, over seeds, with paired confidence intervals."""

from sgt_pipeline.study.arms import StudyInputs, run_study
from sgt_pipeline.study.config import Arm, StudyConfig
from sgt_pipeline.study.report import (
           claims_table,
           study_markdown,
           study_metrics,
           study_plot,
           summary_table,
)

__all__ = ["Arm", "StudyConfig", "StudyInputs", "claims_table", "run_study", "study_markdown", "study_metrics",
           "study_plot", "summary_table"]
