"""One evaluation of a unified model on a held-out split: understanding, generation, proxy quality and the
two mechanistic analyses, as flat metrics plus the tables and sample images the report shows.

Inputs are in the model's frame: ``images`` (N, H, W, 3) uint8 at the model's resolution (the rendered
``reconstruction`` targets) and ``targets`` of the same rows; ``coco`` is the split's pycocotools index, from
which the questions and the probe labels come (so the same code runs on real COCO val).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel, ConfigDict, Field

from sgt_pipeline.evaluation.attention import (
    attention_allocation,
    pooled_image_features,
)
from sgt_pipeline.evaluation.checker import check_images
from sgt_pipeline.evaluation.detection import PromptVocabulary, ShapesDetector
from sgt_pipeline.evaluation.geneval import prompt_suite
from sgt_pipeline.evaluation.probe import layer_metrics, probe_layers
from sgt_pipeline.evaluation.proxy_quality import proxy_metrics
from sgt_pipeline.evaluation.questions import QuestionConfig, build_questions
from sgt_pipeline.evaluation.understanding import evaluate_understanding
from sgt_pipeline.rendering import Palette
from sgt_pipeline.training.instructions import CAPTION_QUESTION, PROXY_INSTRUCTIONS
from sgt_pipeline.world.language import with_article


class EvaluationConfig(BaseModel):
    """``parameters_evaluation.yml``: what to evaluate and how much of it."""

    model_config = ConfigDict(extra="forbid")

    split: str = "val"
    questions: QuestionConfig = Field(default_factory=QuestionConfig)
    batch_size: int = Field(64, gt=0)  # questions (or prompts) per forward pass
    proxy_images: int = Field(64, ge=0)  # generated proxy targets scored against the rendered ones
    cfg_scale: float = Field(3.0, ge=1.0)  # classifier-free guidance of every generation
    geneval_per_task: int = Field(8, ge=0)  # GenEval-style prompts per task
    # Real data: a local transformers universal-segmentation checkpoint (e.g. Mask2Former trained on COCO)
    # as the GenEval detector; None: GenEval only on the shapes world, with its classical checker.
    detector_path: str | None = None
    detector_threshold: float = Field(0.5, ge=0, le=1)
    analysis_images: int = Field(256, ge=0)  # images for the probe and attention analyses
    grid_images: int = Field(8, ge=0)  # columns of the sample grid
    seed: int = 0


@dataclass
class Evaluation:
    metrics: dict[str, float]
    answers: pd.DataFrame  # one row per question, with the prediction
    probe: pd.DataFrame  # one row per layer
    attention: pd.DataFrame  # one row per layer
    geneval: pd.DataFrame = field(default_factory=pd.DataFrame)  # one row per prompt
    grid: np.ndarray | None = None  # input | target | generated target | text-to-image, stacked rows


def category_presence(coco, image_ids) -> np.ndarray:
    """(N, C) bool: category c has a (non-crowd) instance in image n."""
    categories = sorted(coco.cats)
    column = {c: k for k, c in enumerate(categories)}
    presence = np.zeros((len(image_ids), len(categories)), bool)
    for row, image_id in enumerate(image_ids):
        for ann in coco.imgToAnns.get(image_id, []):
            if not ann.get("iscrowd", 0):
                presence[row, column[ann["category_id"]]] = True
    return presence


def foreground_masks(targets: np.ndarray) -> np.ndarray:
    """Objects vs background in the model's frame: every non-black pixel of an instance/semantic target."""
    return targets.max(axis=-1) > 0


def _batched(function, count: int, batch_size: int, *arrays):
    return [function(*(a[s:s + batch_size] for a in arrays)) for s in range(0, count, batch_size)]


def evaluate_model(adapter, coco, images: np.ndarray, image_ids: list[int], targets: dict[str, np.ndarray],
                   palettes: dict[str, Palette], proxy_kind: str, config: EvaluationConfig,
                   world=None, detector=None) -> Evaluation:
    """Every metric of one model. ``proxy_kind`` 'none' skips proxy quality; ``world`` (a WorldConfig)
    enables the GenEval-style suite with its classical checker; on real data, ``detector``
    (``detection.SegmentationDetector``) enables it over the split's categories."""
    rows = {image_id: k for k, image_id in enumerate(image_ids)}
    questions = build_questions(coco, config.questions)
    answers, metrics = evaluate_understanding(adapter, questions, images, rows, config.batch_size,
                                              shuffled_images=True, seed=config.seed)

    n = min(config.analysis_images, len(image_ids))
    features = _batched(lambda x: adapter.features(x, [CAPTION_QUESTION] * len(x)), n, 32, images[:n])
    probe = probe_layers(pooled_image_features(features), category_presence(coco, image_ids[:n]), seed=config.seed)
    metrics.update(layer_metrics(probe, "probe", {"probe_acc": "acc", "fisher_ratio": "fisher"}))
    mask_source = targets.get("instance", targets.get("semantic"))
    attention = (attention_allocation(features, foreground_masks(mask_source[:n])) if mask_source is not None
                 else pd.DataFrame())
    if len(attention):
        metrics.update(layer_metrics(attention, "attention", {"question_image_share": "image_share",
                                                              "question_object_ratio": "object_ratio"}))
        metrics["attention/image_share_mean"] = float(attention["question_image_share"].mean())
    metrics["probe/acc_mean"] = float(probe["probe_acc"].mean())

    generated = None
    if proxy_kind != "none" and config.proxy_images:
        k = min(config.proxy_images, len(image_ids))
        instruction = PROXY_INSTRUCTIONS[proxy_kind][0]
        generated = np.concatenate(_batched(
            lambda x: adapter.generate_target(x, [instruction] * len(x), cfg_scale=config.cfg_scale,
                                              temperature=0.0, seed=config.seed), k, 32, images[:k]))
        palette = palettes.get(proxy_kind) if proxy_kind == "semantic" else None
        truth = targets[proxy_kind][:k]
        metrics.update(proxy_metrics(proxy_kind, generated, truth, palette))
        # The VQ tokenizer's ceiling: the true targets' own tokens, decoded and scored the same way. The gap
        # to it is the language model's; the ceiling's gap to 1 is the tokenizer's.
        truth_tokens = adapter.image_tokens(truth)
        round_trip = np.concatenate(_batched(adapter.decode_image_tokens, k, 32, truth_tokens))
        # Teacher-forced: each token the model's best guess given the TRUE tokens before it. Far above the
        # generated score, the model knows the target but its own earlier tokens derail it (exposure bias).
        teacher_forced = np.concatenate(_batched(
            lambda x, t: adapter.decode_image_tokens(_teacher_forced_tokens(adapter, x, instruction, t)),
            k, 32, images[:k], truth_tokens))
        for prefix, decoded in (("proxy_ceiling/", round_trip), ("proxy_teacher_forced/", teacher_forced)):
            metrics.update({key.replace("proxy/", prefix, 1): value
                            for key, value in proxy_metrics(proxy_kind, decoded, truth, palette).items()})

    geneval = pd.DataFrame()
    if config.geneval_per_task and (world is not None or detector is not None):
        if world is not None:
            vocabulary, detector = world, detector or ShapesDetector(world)
        else:
            vocabulary = PromptVocabulary([c["name"] for c in coco.loadCats(sorted(coco.cats))],
                                          image_size=images.shape[1])
        geneval = _geneval(adapter, vocabulary, detector, config, with_background=world is not None)
        metrics.update({f"gen/geneval_{task}": float(score) for task, score in
                        geneval.groupby("task")["correct"].mean().items()})
        metrics["gen/geneval_overall"] = float(geneval.groupby("task")["correct"].mean().mean())

    grid = _sample_grid(adapter, images, targets.get(proxy_kind), generated, coco, image_ids, config)
    return Evaluation(metrics, answers, probe, attention, geneval, grid)


def _teacher_forced_tokens(adapter, images, instruction: str, target_tokens):
    """Argmax of the generation head at every position of proxy rows fed the true target tokens."""
    with torch.no_grad():
        batch = adapter.proxy_batch(images, [instruction] * len(images), target_tokens)
        return adapter.image_logits(batch).argmax(-1)


def _geneval(adapter, vocabulary, detector, config: EvaluationConfig, with_background: bool) -> pd.DataFrame:
    specs = prompt_suite(vocabulary, per_task=config.geneval_per_task, seed=config.seed,
                         with_background=with_background)
    prompts = [spec.prompt for spec in specs]
    images = np.concatenate(_batched(
        lambda p: adapter.generate_image(list(p), cfg_scale=config.cfg_scale, temperature=1.0, top_k=None,
                                         seed=config.seed), len(prompts), 32, np.array(prompts, dtype=object)))
    correct = check_images(specs, list(images), detector=detector)
    return pd.DataFrame({"task": [s.task for s in specs], "prompt": prompts, "correct": correct})


def _sample_grid(adapter, images, targets, generated, coco, image_ids, config) -> np.ndarray | None:
    k = min(config.grid_images, len(image_ids), len(generated) if generated is not None else len(image_ids))
    if not k:
        return None
    prompts = [coco.imgs[i].get("caption") or _caption(coco, i) for i in image_ids[:k]]
    text_to_image = adapter.generate_image(prompts, cfg_scale=config.cfg_scale, temperature=1.0,
                                           seed=config.seed)
    blank = np.zeros_like(images[:k])
    rows = [images[:k], blank if targets is None else targets[:k],
            blank if generated is None else generated[:k], text_to_image]
    return np.concatenate([np.concatenate(list(row), axis=1) for row in rows], axis=0)


def _caption(coco, image_id: int) -> str:
    """A prompt naming the image's objects in the world's caption phrasing (COCO captions live elsewhere)."""
    names = [coco.cats[a["category_id"]]["name"] for a in coco.imgToAnns.get(image_id, [])]
    colored = [f"{a['color']} {n}" if "color" in a else n
               for a, n in zip(coco.imgToAnns.get(image_id, []), names, strict=True)]
    phrases = [with_article(c) for c in colored] or ["a circle"]
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]
