"""Grounding the tiny model's language side before the base: questions answered from a grid of words.

A from-scratch language model binds a question's object word to context *words* within ~100 steps, but
does not learn to bind it to image tokens from the base's answers (docs/embedded_default.md). Real Janus
brings a pretrained LLM and a stage-1-trained aligner; the tiny default gets both from this stage:

- **language**: the understanding conversations of each image, with its 64 image placeholders replaced by
  the words of its patch grid (each patch's category name, or ``BACKGROUND_WORD``; the labels are the
  encoder stage's, from the semantic targets), so the model learns to answer from a 64-token scene in the
  image's layout and the chat template's format. Each conversation opens with "is there a <category>?" for
  every category, in a random order, answered from the grid: asking about all categories of one scene side
  by side is what lets the model learn to read the object word (docs/embedded_default.md);
- **alignment**: the aligner (and encoder) map each image token onto the input embedding of its patch's
  word (squared error against the detached embeddings, relative to their scale), so the image then reads as that grid.

Both losses share each step. The base then trains on the real images from there.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from sgt_pipeline.training.config import TrainerConfig, TrainSummary
from sgt_pipeline.training.examples import SplitExamples
from sgt_pipeline.training.trainer import Trainer
from sgt_pipeline.world.language import NO, YES, with_article

BACKGROUND_WORD = "background"


class GroundingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    steps: int = Field(0, ge=0)  # 0 (the default): no grounding stage
    batch_size: int = Field(32, gt=0)  # conversations per step
    turns: int = Field(12, ge=1)  # questions per conversation (``SplitExamples.conversations``)
    lr: float = Field(2e-3, gt=0)
    warmup_steps: int = Field(20, ge=0)
    align_weight: float = Field(1.0, ge=0)
    presence_turns: bool = True  # open each conversation with a presence question per category
    precision: str = "fp32"
    seed: int = 0
    checkpoint_every: int = Field(200, gt=0)


def grid_words(categories: list[str]) -> list[str]:
    """The word of each patch class: ``BACKGROUND_WORD``, then the first word of each category's name."""
    return [BACKGROUND_WORD, *(name.split()[0].lower() for name in categories)]


def grid_word_ids(patches: np.ndarray, categories: list[str], tokenizer) -> np.ndarray:
    """(N, P) token ids of ``grid_words``: class 0 -> background, class k -> category k."""
    words = grid_words(categories)
    ids = tokenizer.convert_tokens_to_ids(words)
    unknown = [w for w, i in zip(words, ids) if i == tokenizer.unk_token_id]
    if unknown:
        raise ValueError(f"grounding: words {unknown} are not in the tokenizer's vocabulary")
    return np.asarray(ids, dtype=np.int64)[patches]


class GroundingObjective(torch.nn.Module):
    """``forward(batch) -> (loss, metrics)``: answer loss on word-grid conversations + alignment MSE."""

    def __init__(self, adapter, align_weight: float):
        super().__init__()
        self.adapter, self.model, self.align_weight = adapter, adapter.model, align_weight

    def forward(self, batch: dict):
        words = self.model.get_input_embeddings()(batch["grid_ids"])
        text = {k: batch[k] for k in ("input_ids", "attention_mask", "labels")}
        answer_loss = self.adapter.understanding_loss(text)
        images = self.model.model.get_image_features(batch["pixel_values"]).pooler_output
        words = words.detach().float()
        # Relative to the embeddings' own scale (tiny at initialisation): 1 = no better than predicting zero.
        align_loss = F.mse_loss(images.float(), words) / words.pow(2).mean()
        loss = answer_loss + self.align_weight * align_loss
        return loss, {"loss/answers": answer_loss.detach(), "loss/align": align_loss.detach()}


class GroundingBatches:
    """Conversations about randomly drawn images (a function of (seed, step, micro)): the placeholders in
    ``input_ids`` hold the image's grid words; ``pixel_values`` and ``grid_ids`` feed the alignment."""

    def __init__(self, adapter, examples: SplitExamples, grid_ids: np.ndarray, categories: list[str],
                 config: GroundingConfig):
        self.adapter, self.images, self.grid_ids = adapter, examples.images, torch.from_numpy(grid_ids)
        self.conversations = examples.conversations(config.turns, config.seed)
        self.batch_size, self.seed = config.batch_size, config.seed
        self.placeholder = adapter.model.config.image_token_id
        # Category k's grid word id, and its presence question, when presence turns open the conversations.
        self.category_ids = adapter.tokenizer.convert_tokens_to_ids(grid_words(categories)[1:])
        self.presence = ([f"is there {with_article(name)}?" for name in categories]
                         if config.presence_turns else [])

    def _presence_turns(self, grid: torch.Tensor, rng: np.random.Generator) -> list[tuple[str, str]]:
        present = [bool((grid == token).any()) for token in self.category_ids]
        return [(self.presence[k], YES if present[k] else NO) for k in rng.permutation(len(self.presence))]

    def __call__(self, step: int, micro: int, rank: int = 0, world_size: int = 1) -> dict:
        rng = np.random.default_rng([self.seed, step, micro])
        picked = np.array_split(rng.integers(0, len(self.conversations), self.batch_size), world_size)[rank]
        chosen = self.conversations.iloc[picked]
        rows = np.array(chosen["row"])  # a writable copy: it indexes a torch tensor
        grid = self.grid_ids[rows]
        turns = [self._presence_turns(cells, rng) + list(conversation)
                 for cells, conversation in zip(grid, chosen["turns"])]
        batch = self.adapter.conversation_batch(self.images[rows], turns)
        input_ids = batch["input_ids"].clone()
        input_ids[input_ids == self.placeholder] = grid.flatten()  # every row holds exactly P placeholders
        return {**batch, "input_ids": input_ids, "grid_ids": grid}


def ground_language_model(adapter, examples: SplitExamples, grid_ids: np.ndarray, categories: list[str],
                          config: GroundingConfig, out_dir: str | Path) -> TrainSummary | None:
    """Train ``adapter.model`` in place on both grounding losses (checkpoints under ``out_dir``);
    ``grid_ids`` from ``grid_word_ids`` over ``categories`` (names, in patch-class order)."""
    if not config.steps:
        return None
    trainer = Trainer(
        GroundingObjective(adapter, config.align_weight), lambda module, batch: module(batch),
        GroundingBatches(adapter, examples, grid_ids, categories, config),
        TrainerConfig(max_steps=config.steps, lr=config.lr, warmup_steps=config.warmup_steps, schedule="cosine",
                      precision=config.precision, seed=config.seed, checkpoint_every=config.checkpoint_every,
                      out_dir=str(out_dir), log_every=25, find_unused_parameters=True),
        trainable_parameters=adapter.trainable_parameters())
    summary = trainer.fit()
    adapter.model.eval()
    return summary
