"""``parameters_sweep.yml``: the search space, the per-trial budget, the objective, the pruner, the storage."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# What a search-space entry may set: the SGT loss weights, the proxy:SFT micro-batch ratio, the proxy kind.
SWEEPABLE = ("loss_weights.understanding", "loss_weights.generation", "loss_weights.proxy",
             "proxy_sft_ratio", "proxy_kind")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Dimension(_Strict):
    """One searched parameter: a float range (``low``/``high``, optionally log-uniform) or ``choices``."""

    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: list[str] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Dimension:
        ranged = self.low is not None and self.high is not None
        if ranged == (self.choices is not None):
            raise ValueError("a dimension is either a range (low, high[, log]) or a list of choices")
        if ranged and not (0 < self.low < self.high if self.log else self.low < self.high):
            raise ValueError(f"need low < high (and low > 0 for log): got {self.low}, {self.high}")
        return self


class TrialBudget(_Strict):
    """One trial: a short post-training from the base, scored on a fixed held-out subset."""

    steps: int = Field(60, gt=0)  # optimizer steps of post-training
    report_every: int = Field(20, gt=0)  # intermediate objective (and pruning decision) every this many steps
    questions_per_type: int = Field(40, gt=0)  # held-out questions per type (count, colour, POPE, ...)
    generation_prompts: int = Field(64, gt=0)  # held-out captions whose image tokens are scored


class Objective(_Strict):
    """``single``: maximise ``weights.understanding * U + weights.generation * G`` (weights normalised to sum
    to 1); ``multi``: maximise (U, G) jointly and report the Pareto front. U = mean held-out question
    accuracy (``und/overall``); G = 1 - NLL / ln(codebook size) of held-out image tokens given their
    caption (0: no better than guessing codes uniformly, 1: perfect)."""

    mode: Literal["single", "multi"] = "single"
    weights: dict[Literal["understanding", "generation"], float] = Field(
        default_factory=lambda: {"understanding": 0.5, "generation": 0.5})

    @model_validator(mode="after")
    def _positive(self) -> Objective:
        if sum(self.weights.values()) <= 0 or min(self.weights.values()) < 0:
            raise ValueError("objective weights must be >= 0 and not all zero")
        return self


class Pruner(_Strict):
    """Single-objective only (Optuna cannot prune multi-objective trials)."""

    kind: Literal["none", "median", "hyperband"] = "median"
    startup_trials: int = Field(3, ge=0)  # median: trials completed before any pruning
    warmup_steps: int = Field(0, ge=0)  # median: steps of a trial before it may be pruned
    reduction_factor: int = Field(3, ge=2)  # hyperband


class Storage(_Strict):
    """Where the study lives. ``url``: an Optuna storage URL (``sqlite:///...``, ``postgresql://...``) or
    ``journal:<path>`` for a JournalStorage file. ``url_env``: an environment variable that, when set,
    overrides ``url`` (keeps database passwords out of configuration files)."""

    url: str = "sqlite:///data/07_model_output/sweep/optuna.db"
    url_env: str | None = "SGT_OPTUNA_STORAGE"
    # RDB storages only: a running trial beats every heartbeat_interval seconds; one silent for
    # grace_period seconds (a killed worker) is marked failed and re-queued up to max_retry times.
    heartbeat_interval: int | None = Field(10, gt=0)
    grace_period: int | None = Field(40, gt=0)
    max_retry: int = Field(2, ge=0)


class SweepConfig(_Strict):
    study_name: str = "sgt-proxy-weights"
    space: dict[str, Dimension]
    trial: TrialBudget = Field(default_factory=TrialBudget)
    objective: Objective = Field(default_factory=Objective)
    pruner: Pruner = Field(default_factory=Pruner)
    storage: Storage = Field(default_factory=Storage)
    n_trials: int = Field(12, gt=0)  # finished (complete or pruned) trials of the whole study, all workers
    timeout_s: float | None = Field(None, gt=0)  # this worker stops starting trials after this long
    seed: int = 0  # sampler seed (each worker offsets it by its process id, so workers do not duplicate)
    runs_dir: str = "data/06_models/sweep_runs"  # per-trial checkpoints (deleted when a trial finishes)

    @model_validator(mode="after")
    def _known_dimensions(self) -> SweepConfig:
        unknown = sorted(set(self.space) - set(SWEEPABLE))
        if unknown:
            raise ValueError(f"sweep.space: unknown parameter(s) {unknown}; sweepable: {list(SWEEPABLE)}")
        if "proxy_kind" in self.space and self.space["proxy_kind"].choices is None:
            raise ValueError("sweep.space.proxy_kind needs choices")
        return self
