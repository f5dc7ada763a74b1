"""One sweep trial: the sampled parameters -> a short SGT post-training from the base -> held-out scores.

Trials run in the sweep's own process, one after another, reusing the training and evaluation library: the
base model is re-read from disk per trial (a second for the tiny model), the data and the held-out set are
built once. A subprocess per trial would buy isolation from leaked state, but the trainer keeps none between
runs and the cost would be a Python + torch + transformers start-up (~8 s) per trial; parallelism comes from
several worker processes instead (see ``sweep.study``).
"""

from __future__ import annotations

import os
import shutil
import socket
import warnings
from pathlib import Path

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback

from sgt_pipeline.evaluation.held_out import HeldOut, held_out_set, score
from sgt_pipeline.models.adapter import JanusAdapter
from sgt_pipeline.sweep.config import Dimension, SweepConfig
from sgt_pipeline.training.examples import SplitExamples
from sgt_pipeline.training.umm import MixtureTrainingConfig, train_umm

OBJECTIVES = ("understanding", "generation")  # the keys of ``evaluation.held_out.score``
RUNS_KEY = "runs_key"  # study user attribute: see ``study_runs_dir``


def suggest(trial: optuna.Trial, space: dict[str, Dimension]) -> dict:
    return {name: (trial.suggest_categorical(name, dim.choices) if dim.choices is not None
                   else trial.suggest_float(name, dim.low, dim.high, log=dim.log))
            for name, dim in space.items()}


def apply_params(run: MixtureTrainingConfig, params: dict) -> MixtureTrainingConfig:
    """The post-training configuration with a trial's parameters substituted.

    ``proxy_sft_ratio`` r sets the proxy's mixture weight to r times the SFT (understanding + generation)
    weight, keeping the SFT split of ``run``; ``loss_weights.<task>`` sets λ_task; ``proxy_kind`` the kind.
    """
    update: dict = {}
    weights = {k.removeprefix("loss_weights."): v for k, v in params.items() if k.startswith("loss_weights.")}
    if weights:
        update["loss_weights"] = run.loss_weights.model_copy(update=weights)
    if "proxy_sft_ratio" in params:
        sft = run.mixture.get("understanding", 0.0) + run.mixture.get("generation", 0.0)
        if sft <= 0:
            raise ValueError("proxy_sft_ratio needs understanding or generation in train.run.mixture")
        update["mixture"] = {**run.mixture, "proxy": params["proxy_sft_ratio"] * sft}
    if "proxy_kind" in params:
        update["proxy_kind"] = params["proxy_kind"]
    return run.model_copy(update=update)


def study_runs_dir(config: SweepConfig, study: optuna.Study) -> Path:
    """Checkpoints of this study's trials: keyed by a random id the study stores at creation as well as by
    its name, so a new study of the same name (a deleted database) never resumes an old study's trial."""
    return Path(config.runs_dir) / f"{study.study_name}-{study.user_attrs.get(RUNS_KEY, 'unkeyed')}"


def scalarise(scores: dict[str, float], weights: dict[str, float]) -> float:
    return sum(w * scores[k] for k, w in weights.items()) / sum(weights.values())


class TrialRunner:
    """The objective ``study.optimize`` calls: ``runner(trial) -> value`` (single) or ``(U, G)`` (multi)."""

    def __init__(self, config: SweepConfig, base_path: str, run: MixtureTrainingConfig, train: SplitExamples,
                 held_out: HeldOut):
        self.config, self.base_path, self.run, self.train, self.held_out = config, base_path, run, train, held_out

    def run_config(self, params: dict, out_dir: Path) -> MixtureTrainingConfig:
        budget, trainer = self.config.trial, self.run.trainer
        run = apply_params(self.run, params)
        return run.model_copy(update={"trainer": trainer.model_copy(update={
            "max_steps": budget.steps, "warmup_steps": min(trainer.warmup_steps, budget.steps // 4),
            "checkpoint_every": budget.report_every, "log_every": budget.report_every, "keep_checkpoints": 1,
            "resume": "auto", "out_dir": str(out_dir)})})

    def __call__(self, trial: optuna.Trial):
        params = suggest(trial, self.config.space)
        # A retried trial (its worker died) continues the original's checkpoints: same result, less compute.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            origin = RetryHeartbeatStaleTrialCallback.retried_trial_number(
                trial.study.get_trials(deepcopy=False)[trial.number])
        out_dir = study_runs_dir(self.config, trial.study) / f"trial_{trial.number if origin is None else origin}"
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        run = self.run_config(params, out_dir)
        adapter = JanusAdapter.from_pretrained(self.base_path)
        single = self.config.objective.mode == "single"
        weights = self.config.objective.weights

        def report(step: int) -> None:
            if single and step % self.config.trial.report_every == 0 and step < run.trainer.max_steps:
                trial.report(scalarise(score(adapter, self.held_out), weights), step)
                if trial.should_prune():
                    trial.set_user_attr("steps", step)
                    raise optuna.TrialPruned(f"pruned at step {step}")

        try:
            summary = train_umm(adapter, self.train, run, after_step=report)
        except optuna.TrialPruned:
            shutil.rmtree(out_dir, ignore_errors=True)
            raise
        scores = score(adapter, self.held_out)
        for key, value in {**scores, "train_loss": summary.mean_metrics.get("loss", float("nan")),
                           "samples_per_second": summary.samples_per_second}.items():
            trial.set_user_attr(key, float(value))
        trial.set_user_attr("steps", run.trainer.max_steps)
        shutil.rmtree(out_dir, ignore_errors=True)
        if single:
            return scalarise(scores, weights)
        return tuple(scores[k] for k in OBJECTIVES)


def build_runner(config: SweepConfig, base_path: str, run: MixtureTrainingConfig, train: SplitExamples,
                 val: SplitExamples, coco) -> TrialRunner:
    """The objective for a study: ``train`` examples to post-train on, ``val`` + its COCO index to score."""
    held_out = held_out_set(JanusAdapter.from_pretrained(base_path), val, coco, config.trial.questions_per_type,
                            config.trial.generation_prompts, config.seed)
    return TrialRunner(config, base_path, run, train, held_out)
