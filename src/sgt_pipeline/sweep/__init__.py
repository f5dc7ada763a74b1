"""Optuna sweeps of the SGT loss weights and mixture: configuration, storage, trials, study, results."""

from sgt_pipeline.sweep.config import SweepConfig
from sgt_pipeline.sweep.study import open_study, run_worker
from sgt_pipeline.sweep.trial import TrialRunner, held_out_set, score

__all__ = ["SweepConfig", "TrialRunner", "held_out_set", "open_study", "run_worker", "score"]
