"""``parameters_study.yml``: the arms, the seeds, the per-arm budget and the held-out scoring."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from sgt_pipeline.training.umm import ProxyKind


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Arm(_Strict):
    name: str
    proxy_kind: ProxyKind  # none: SFT only (understanding + text-to-image, same steps and batch size)


DEFAULT_ARMS = [Arm(name="sft_only", proxy_kind="none"), Arm(name="reconstruction", proxy_kind="reconstruction"),
                Arm(name="edge", proxy_kind="edge"), Arm(name="depth", proxy_kind="depth"),
                Arm(name="semantic", proxy_kind="semantic"), Arm(name="instance", proxy_kind="instance")]


class StudyConfig(_Strict):
    arms: list[Arm] = Field(default_factory=lambda: list(DEFAULT_ARMS))
    baseline: str = "sft_only"  # the arm every paired difference is taken against
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    steps: int | None = Field(None, gt=0)  # optimizer steps per arm; None: train.run.trainer.max_steps
    # Evaluation of every arm: the evaluation pipeline's settings with these keys replaced.
    evaluation: dict = Field(default_factory=dict)
    questions_per_type: int = Field(100, gt=0)  # held-out likelihood scores (evaluation.held_out)
    generation_prompts: int = Field(128, gt=0)
    confidence: float = Field(0.95, gt=0, lt=1)
    results_dir: str = "data/07_model_output/study"  # one JSON per finished (arm, seed): a rerun resumes
    runs_dir: str = "data/06_models/study_runs"  # checkpoints of the arm being trained (removed after)

    @model_validator(mode="after")
    def _arms(self) -> StudyConfig:
        names = [a.name for a in self.arms]
        if len(set(names)) != len(names):
            raise ValueError(f"study.arms: duplicate names in {names}")
        if self.baseline not in names:
            raise ValueError(f"study.baseline {self.baseline!r} is not one of the arms {names}")
        return self
