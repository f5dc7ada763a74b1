"""Running the study's arms: the same base, steps and batch size for every arm, each seed in turn.

Every finished (arm, seed) is written to ``results_dir`` as one JSON keyed by everything it depends on, so
an interrupted study resumes where it stopped and a changed setting is never answered from a stale result.
Seeds run in the outer loop: a study stopped early still has complete pairs for the seeds it finished.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from sgt_pipeline.evaluation.evaluate import EvaluationConfig, evaluate_model
from sgt_pipeline.evaluation.held_out import HeldOut, score
from sgt_pipeline.io import atomic_write
from sgt_pipeline.models.adapter import JanusAdapter
from sgt_pipeline.rendering import Palette
from sgt_pipeline.study.config import Arm, StudyConfig
from sgt_pipeline.training.base_model import code_digest
from sgt_pipeline.training.examples import SplitExamples
from sgt_pipeline.training.umm import MixtureTrainingConfig, train_umm

# The proxy-quality measure of each kind (arms differ in kind, so each reports its own).
PROXY_QUALITY = {"reconstruction": "proxy/psnr", "edge": "proxy/edge_f1", "depth": "proxy/depth_spearman",
                 "semantic": "proxy/miou", "instance": "proxy/instance_iou", "panoptic": "proxy/pq"}
# CV-Bench's vision-centric tasks in the shapes world: counting and 2D relations (2D), depth order (3D).
VISION_CENTRIC = ("und/count_acc", "und/relation_2d_acc", "und/depth_order_acc")
# GenEval's layout tasks.
LAYOUT = ("gen/geneval_position", "gen/geneval_counting")


@dataclass
class StudyInputs:
    base_path: str
    base_fingerprint: str
    train: SplitExamples
    val: SplitExamples  # with the targets of every arm's kind (and instance, for the attention analysis)
    coco: object  # the val split's pycocotools index
    palettes: dict[str, Palette]
    world: object | None  # the shapes world's WorldConfig (GenEval's classical checker), else None
    held_out: HeldOut
    evaluation: EvaluationConfig


def arm_run(run: MixtureTrainingConfig, arm: Arm, seed: int, steps: int | None, out_dir: Path) -> MixtureTrainingConfig:
    """``run`` with the arm's proxy kind (SFT-only: the proxy's share goes to the SFT tasks, so every arm
    sees the same number of examples per step), the seed, the budget and a fresh checkpoint directory."""
    mixture = dict(run.mixture)
    if arm.proxy_kind == "none":
        mixture.pop("proxy", None)
    trainer = run.trainer.model_copy(update={
        "seed": seed, "max_steps": steps or run.trainer.max_steps, "resume": "auto", "out_dir": str(out_dir),
        "keep_checkpoints": 1})
    return run.model_copy(update={"proxy_kind": arm.proxy_kind, "mixture": mixture, "trainer": trainer})


def derived_metrics(metrics: dict[str, float], proxy_kind: str) -> dict[str, float]:
    """The study's summary measures from an evaluation's flat metrics."""
    mean = lambda keys: float(np.mean([metrics[k] for k in keys])) if all(k in metrics for k in keys) else float("nan")
    fisher = [v for k, v in metrics.items() if k.startswith("probe/fisher_layer_")]
    return {"und/vision_centric": mean(VISION_CENTRIC), "gen/layout": mean(LAYOUT),
            "probe/fisher_mean": float(np.mean(fisher)) if fisher else float("nan"),
            "proxy/quality": metrics.get(PROXY_QUALITY.get(proxy_kind, ""), float("nan"))}


def run_arm(inputs: StudyInputs, run: MixtureTrainingConfig, arm: Arm, seed: int, config: StudyConfig) -> dict:
    """Post-train one arm from the base with one seed, then evaluate it; returns flat metrics."""
    started = time.perf_counter()
    out_dir = Path(config.runs_dir) / f"{arm.name}_seed{seed}"
    adapter = JanusAdapter.from_pretrained(inputs.base_path)
    summary = train_umm(adapter, inputs.train, arm_run(run, arm, seed, config.steps, out_dir))
    trained = time.perf_counter()
    val = inputs.val
    evaluation = evaluate_model(adapter, inputs.coco, val.images, [int(i) for i in val.image_ids], val.targets,
                                inputs.palettes, arm.proxy_kind, inputs.evaluation, inputs.world)
    held_out = score(adapter, inputs.held_out)
    shutil.rmtree(out_dir, ignore_errors=True)
    metrics = {**evaluation.metrics, **derived_metrics(evaluation.metrics, arm.proxy_kind),
               "gen/likelihood_score": held_out["generation"], "gen/nll": held_out["generation_nll"],
               **{f"train/{k}": v for k, v in summary.mean_metrics.items()},
               "train/steps": summary.final_step, "time/train_s": trained - started,
               "time/eval_s": time.perf_counter() - trained}
    return {k: float(v) for k, v in metrics.items()}


def _result_key(inputs: StudyInputs, run: MixtureTrainingConfig, arm: Arm, seed: int, config: StudyConfig) -> str:
    arm_config = arm_run(run, arm, seed, config.steps, Path(".")).result_json()
    parts = [inputs.base_fingerprint, arm_config,
             inputs.evaluation.model_dump_json(), str(config.questions_per_type), str(config.generation_prompts),
             code_digest()]
    return hashlib.blake2b("|".join(parts).encode(), digest_size=8).hexdigest()


def run_study(inputs: StudyInputs, run: MixtureTrainingConfig, config: StudyConfig) -> pd.DataFrame:
    """Every (seed, arm): long table ``arm, proxy_kind, seed, metric, value`` (finished ones are reused)."""
    results_dir = Path(config.results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    jobs = [(seed, arm) for seed in config.seeds for arm in config.arms]
    rows, reused, started = [], 0, time.perf_counter()
    bar = tqdm(jobs, desc="study", unit="arm", dynamic_ncols=True)
    for seed, arm in bar:
        bar.set_postfix_str(f"{arm.name} seed {seed}")
        key = _result_key(inputs, run, arm, seed, config)
        path = results_dir / f"{arm.name}_seed{seed}.json"
        stored = json.loads(path.read_text()) if path.is_file() else {}
        if stored.get("key") == key:
            metrics, reused = stored["metrics"], reused + 1
        else:
            metrics = run_arm(inputs, run, arm, seed, config)
            text = json.dumps({"key": key, "arm": arm.name, "seed": seed, "metrics": metrics}, indent=1)
            atomic_write(path, lambda tmp, text=text: tmp.write_text(text))
        rows += [{"arm": arm.name, "proxy_kind": arm.proxy_kind, "seed": seed, "metric": k, "value": v}
                 for k, v in metrics.items()]
    print(f"study: {len(jobs)} arm runs ({reused} reused from {results_dir}) in "
          f"{time.perf_counter() - started:.0f} s")
    return pd.DataFrame(rows)
