"""Fast held-out scores of a model: what a sweep trial (and its intermediate reports) and a study arm are
judged on, cheaper than the full evaluation.

- ``understanding``: mean accuracy over the question types of a fixed, stratified subset of the split's
  questions (the evaluation's option scoring);
- ``generation``: ``1 - NLL / ln K`` of the image tokens of held-out images given their captions, i.e. the
  text-to-image likelihood normalised by a uniform guess over the K codes (0: no better than guessing,
  1: perfect). It moves with every step of training, where GenEval at a small scale stays at 0;
- ``generation_nll``: that NLL in nats per token.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from sgt_pipeline.evaluation.questions import QuestionConfig, build_questions
from sgt_pipeline.evaluation.understanding import evaluate_understanding
from sgt_pipeline.training.examples import SplitExamples


@dataclass
class HeldOut:
    """A fixed held-out subset: questions over ``images``, and captions with their images' VQ tokens."""

    questions: pd.DataFrame
    images: np.ndarray  # (N, H, W, 3): the split's images, rows indexed by ``rows``
    rows: dict[int, int]  # image id -> row of ``images``
    prompts: list[str]  # captions ...
    image_tokens: torch.Tensor  # ... and the VQ tokens of their images (the frozen VQ's, so computed once)
    codebook_size: int


def held_out_set(adapter, val: SplitExamples, coco, questions_per_type: int,
                 generation_prompts: int, seed: int = 0) -> HeldOut:
    """``questions_per_type`` questions of each type (from ``coco``, the split's index) and
    ``generation_prompts`` captions, sampled with ``seed``. The VQ is frozen after pretraining, so its
    tokens are computed once, here."""
    questions = build_questions(coco, QuestionConfig(seed=seed))
    questions = (questions.sample(frac=1.0, random_state=seed).groupby("type").head(questions_per_type)
                 .sort_index().reset_index(drop=True))
    captions = val.generation.sample(min(len(val.generation), generation_prompts), random_state=seed)
    tokens = adapter.image_tokens(val.images[captions["row"].to_numpy()])
    return HeldOut(questions, val.images, {int(i): k for k, i in enumerate(val.image_ids)},
                   list(captions["prompt"]), tokens, adapter.model.config.vq_config.num_embeddings)


@torch.no_grad()
def score(adapter, held_out: HeldOut, batch_size: int = 32) -> dict[str, float]:
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


