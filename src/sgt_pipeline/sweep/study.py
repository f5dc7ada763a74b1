"""The Optuna study: created once, then joined and continued by any number of worker processes.

``n_trials`` counts the study's finished (complete or pruned) trials over every worker and every run, so
re-running the sweep continues it and two workers share the budget. Failed trials do not count: the retry
callback re-queues them.
"""

from __future__ import annotations

import os
import uuid

import optuna
from optuna.study import MaxTrialsCallback
from optuna.trial import TrialState

from sgt_pipeline.sweep.config import SweepConfig
from sgt_pipeline.sweep.storage import open_storage
from sgt_pipeline.sweep.trial import RUNS_KEY

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
# Extra workers on one study set SGT_SWEEP_WORKER=1, 2, ... so that their samplers' seeds differ.
WORKER_ENV = "SGT_SWEEP_WORKER"


def make_pruner(config: SweepConfig) -> optuna.pruners.BasePruner:
    pruner, steps = config.pruner, config.trial.steps
    if config.objective.mode == "multi" or pruner.kind == "none":
        return optuna.pruners.NopPruner()
    if pruner.kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=pruner.startup_trials,
                                           n_warmup_steps=pruner.warmup_steps,
                                           interval_steps=config.trial.report_every)
    return optuna.pruners.HyperbandPruner(min_resource=config.trial.report_every, max_resource=steps,
                                          reduction_factor=pruner.reduction_factor)


def open_study(config: SweepConfig, sampler_seed: int | None = None) -> optuna.Study:
    """Create the study, or load it when it exists (a resumed sweep, another worker)."""
    directions = ["maximize"] if config.objective.mode == "single" else ["maximize", "maximize"]
    storage = open_storage(config.storage)
    try:
        study = optuna.load_study(study_name=config.study_name, storage=storage)
    except KeyError:
        study = None
    if study is not None and study.directions != [optuna.study.StudyDirection.MAXIMIZE] * len(directions):
        raise ValueError(f"study {config.study_name!r} in {config.storage.url} has {len(study.directions)} "
                         f"objective(s), but sweep.objective.mode={config.objective.mode!r}; "
                         "use another sweep.study_name for a different objective")
    if sampler_seed is None:  # this worker's seed: reproducible for one worker, distinct across workers
        existing = len(study.trials) if study is not None else 0
        sampler_seed = config.seed + existing + 1000 * int(os.environ.get(WORKER_ENV, "0"))
    sampler = optuna.samplers.TPESampler(seed=sampler_seed, constant_liar=True,
                                         n_startup_trials=min(5, config.n_trials))
    study = optuna.create_study(study_name=config.study_name, storage=storage, directions=directions,
                                sampler=sampler, pruner=make_pruner(config), load_if_exists=True)
    if RUNS_KEY not in study.user_attrs:
        study.set_user_attr(RUNS_KEY, uuid.uuid4().hex[:12])
    return study


def finished_trials(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def run_worker(study: optuna.Study, objective, config: SweepConfig) -> int:
    """Run trials until the study has ``n_trials`` finished ones (or ``timeout_s``); returns how many the
    study finished meanwhile (this worker's and any other's). Stale trials of dead workers are failed and re-queued by Optuna at each trial start."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise RuntimeError("a sweep worker is one process: start several workers (one per GPU) instead of "
                           "running the sweep under torchrun")
    before = finished_trials(study)
    if before < config.n_trials:
        study.optimize(objective, timeout=config.timeout_s, gc_after_trial=True,
                       callbacks=[MaxTrialsCallback(config.n_trials, states=FINISHED)])
    return finished_trials(study) - before
