"""Optuna sweeps of the SGT loss weights and mixture: configuration, storage, trials, study, results."""

from sgt_pipeline.sweep.config import SweepConfig
from sgt_pipeline.sweep.study import open_study, run_worker
from sgt_pipeline.sweep.trial import TrialRunner, build_runner

__all__ = ["SweepConfig", "TrialRunner", "build_runner", "open_study", "run_worker"]
