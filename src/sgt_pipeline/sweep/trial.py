"""One sweep trial: the sampled parameters -> a short SGT post-training from the base -> held-out scores.

Trials run in the sweep's own process, one after another, reusing the training and evaluation library: the
base model is re-read from disk per trial (a second for the tiny model), the data and the held-out set are
built once. A subprocess per trial would buy isolation from leaked state, but the trainer keeps none between
runs and the cost would be a Python + torch + transformers start-up (~8 s) per trial; parallelism comes from
several worker processes instead (see ``sweep.study``).
"""

from __future__ import annotations

import math
import os
import shutil
import socket
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import torch
from optuna.storages import RetryHeartbeatStaleTrialCallback

from sgt_pipeline.evaluation.questions import QuestionConfig, build_questions
from sgt_pipeline.evaluation.understanding import evaluate_understanding
from sgt_pipeline.models.adapter import JanusAdapter
from sgt_pipeline.sweep.config import Dimension, SweepConfig
from sgt_pipeline.training.examples import SplitExamples
from sgt_pipeline.training.umm import MixtureTrainingConfig, train_umm

OBJECTIVES = ("understanding", "generation")
RUNS_KEY = "runs_key"  # study user attribute: see ``study_runs_dir``


@dataclass
class HeldOut:
    """The fixed held-out subset every trial (and every intermediate report) is scored on."""

    questions: pd.DataFrame
    images: np.ndarray  # (N, H, W, 3): the split's images, rows indexed by ``rows``
    rows: dict[int, int]  # image id -> row of ``images``
    prompts: list[str]  # captions ...
    image_tokens: torch.Tensor  # ... and the VQ tokens of their images (the frozen VQ's, so computed once)
    codebook_size: int


def held_out_set(adapter: JanusAdapter, val: SplitExamples, coco, questions_per_type: int,
                 generation_prompts: int, seed: int = 0) -> HeldOut:
    questions = build_questions(coco, QuestionConfig(seed=seed))
    questions = (questions.sample(frac=1.0, random_state=seed).groupby("type").head(questions_per_type)
                 .sort_index().reset_index(drop=True))
    captions = val.generation.sample(min(len(val.generation), generation_prompts), random_state=seed)
    tokens = adapter.image_tokens(val.images[captions["row"].to_numpy()])
    return HeldOut(questions, val.images, {int(i): k for k, i in enumerate(val.image_ids)},
                   list(captions["prompt"]), tokens, adapter.model.config.vq_config.num_embeddings)


@torch.no_grad()
def score(adapter: JanusAdapter, held_out: HeldOut, batch_size: int = 32) -> dict[str, float]:
    """``understanding`` (mean question accuracy), ``generation`` (1 - NLL / ln K) and ``generation_nll``."""
    _, metrics = evaluate_understanding(adapter, held_out.questions, held_out.images, held_out.rows, batch_size)
    adapter.model.eval()
    total, count = 0.0, 0
    for start in range(0, len(held_out.prompts), batch_size):
        prompts = held_out.prompts[start:start + batch_size]
        batch = adapter.generation_batch(prompts, held_out.image_tokens[start:start + batch_size])
        total += float(adapter.generation_loss(batch)) * len(prompts)
        count += len(prompts)
    nll = total / count
    return {"understanding": metrics["und/overall"], "generation": 1.0 - nll / math.log(held_out.codebook_size),
            "generation_nll": nll}


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
