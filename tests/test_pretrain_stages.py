"""The tiny base's encoder and grounding stages: patch labels, grid words, batches, and losses that fall."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from pycocotools.coco import COCO

from sgt_pipeline.models import JanusAdapter, TinyJanusConfig, build_processor, build_tiny_janus
from sgt_pipeline.models.tokenizer import build_word_tokenizer
from sgt_pipeline.rendering import Palette
from sgt_pipeline.rendering.targets import render_target
from sgt_pipeline.training.encoder import (
    EncoderTrainingConfig,
    patch_labels,
    presence_from_patches,
    train_vision_encoder,
)
from sgt_pipeline.training.examples import SplitExamples
from sgt_pipeline.training.grounding import (
    BACKGROUND_WORD,
    GroundingBatches,
    GroundingConfig,
    grid_word_ids,
    ground_language_model,
)
from sgt_pipeline.world import WorldConfig, generate_world, vocabulary

torch.set_num_threads(2)
TINY = TinyJanusConfig(image_size=32, patch_size=8, hidden_size=64, num_layers=2, num_heads=2, intermediate_size=128,
                       vision_hidden_size=64, vision_layers=1, vq_codebook_size=64, vision_stem_channels=[16, 16, 32])
PALETTE = Palette([0, 3, 7], [[0, 0, 0], [200, 30, 30], [30, 30, 200]])  # category ids 3 and 7
WORDS = ["is", "there", "a", "circle", "square", "?", "yes", "no", BACKGROUND_WORD]


def _scenes(n: int, seed: int = 0):
    """Semantic targets with one square block of category 3 or 7 (or both) on a 4 x 4 patch grid."""
    rng = np.random.default_rng(seed)
    targets = np.zeros((n, 32, 32, 3), np.uint8)
    for target in targets:
        for label in (3, 7):
            if rng.uniform() < 0.6:
                y, x = rng.integers(0, 3, 2) * 8
                target[y:y + 16, x:x + 16] = PALETTE.encode(np.full((1, 1), label))[0, 0]
    images = targets.copy()
    images[targets.max(-1) == 0] = 128
    return images, targets


def test_patch_labels_take_each_patch_majority_category():
    target = np.zeros((1, 32, 32, 3), np.uint8)
    red, blue = PALETTE.encode(np.array([[3, 7]]))[0]
    target[0, 0:8, 0:5] = red      # 40 of 64 pixels of patch (0, 0): category 3 -> class 1
    target[0, 8:11, 8:16] = blue   # 24 of 64 pixels of patch (1, 1): background wins
    target[0, 24:32, 24:32] = blue  # all of patch (3, 3): category 7 -> class 2
    labels, categories = patch_labels(target, PALETTE, grid=4)
    assert categories == [3, 7] and labels.shape == (1, 16)
    expected = np.zeros(16, np.int64)
    expected[0], expected[15] = 1, 2
    assert labels[0].tolist() == expected.tolist()
    assert presence_from_patches(labels, 3).tolist() == [[1.0, 1.0]]
    with pytest.raises(ValueError, match="patch grid"):
        patch_labels(target, PALETTE, grid=5)


def test_grid_words_are_the_category_names_and_background():
    tokenizer = build_word_tokenizer(WORDS)
    ids = grid_word_ids(np.array([[0, 1, 2]]), ["circle", "square"], tokenizer)
    assert tokenizer.convert_ids_to_tokens(ids[0].tolist()) == [BACKGROUND_WORD, "circle", "square"]
    with pytest.raises(ValueError, match="star"):
        grid_word_ids(np.array([[0]]), ["circle", "star"], tokenizer)


@pytest.fixture(scope="module")
def setup():
    tokenizer = build_word_tokenizer(WORDS)
    adapter = JanusAdapter(build_tiny_janus(TINY, tokenizer),
                           build_processor(tokenizer, TINY.image_size, TINY.num_image_tokens))
    images, targets = _scenes(48)
    patches, categories = patch_labels(targets, PALETTE, grid=4)
    names = {3: "circle", 7: "square"}
    questions, answers, rows = [], [], []
    for row, present in enumerate(presence_from_patches(patches, 3)):
        for k, category in enumerate(categories):
            rows.append(row)
            questions.append(f"is there a {names[category]}?")
            answers.append("yes" if present[k] else "no")
    examples = SplitExamples(np.arange(len(images)), images, {"semantic": targets},
                             pd.DataFrame({"row": rows, "question": questions, "answer": answers, "type": "exists"}),
                             pd.DataFrame({"row": [], "prompt": []}))
    grid = grid_word_ids(patches, [names[c] for c in categories], tokenizer)
    return adapter, examples, patches, grid, ["circle", "square"]


def test_grounding_batches_put_the_grid_words_in_the_image_slots(setup):
    adapter, examples, patches, grid, names = setup
    batches = GroundingBatches(adapter, examples, grid, names, GroundingConfig(batch_size=4, turns=2))
    batch = batches(0, 0)
    placeholder = adapter.model.config.image_token_id
    plain = adapter.conversation_batch(examples.images[:1], [[("is there a circle?", "yes")]])
    assert (plain["input_ids"] == placeholder).sum() == adapter.num_image_tokens
    assert not (batch["input_ids"] == placeholder).any()
    for row in range(4):
        kept = batch["input_ids"][row][batch["attention_mask"][row].bool()]
        start = int((plain["input_ids"][0] == placeholder).nonzero()[0])
        assert kept[start:start + adapter.num_image_tokens].tolist() == batch["grid_ids"][row].tolist()
    assert torch.equal(batches(0, 0)["input_ids"], batch["input_ids"])  # a function of the step
    # Every conversation opens with a presence question per category, answered from the grid.
    for cells in batch["grid_ids"]:
        turns = batches._presence_turns(cells, np.random.default_rng(0))
        assert sorted(q for q, _ in turns) == ["is there a circle?", "is there a square?"]
        word = dict(zip(["is there a circle?", "is there a square?"], adapter.tokenizer.convert_tokens_to_ids(names)))
        assert all((a == "yes") == bool((cells == word[q]).any()) for q, a in turns)
    plain = GroundingBatches(adapter, examples, grid, names,
                             GroundingConfig(batch_size=4, turns=2, presence_turns=False))(0, 0)
    assert plain["input_ids"].shape[1] < batch["input_ids"].shape[1]


def test_encoder_and_grounding_losses_fall(setup, tmp_path):
    adapter, examples, patches, grid, names = setup
    encoder, quality = train_vision_encoder(adapter, examples.images, patches, 3, EncoderTrainingConfig(
        steps=40, batch_size=16, held_out=8, warmup_steps=5, checkpoint_every=1000), tmp_path / "encoder")
    assert encoder.final_step == 40 and quality["held_out_images"] == 8
    assert quality["patch_accuracy"] > quality["patch_majority"], quality
    summary = ground_language_model(adapter, examples, grid, names, GroundingConfig(
        steps=40, batch_size=8, turns=2, warmup_steps=5, checkpoint_every=1000), tmp_path / "grounding")
    log = pd.read_json(tmp_path / "grounding" / "train_log.jsonl", lines=True)
    first, last = log.iloc[0], log.iloc[-1]
    assert last["loss/answers"] < first["loss/answers"] and last["loss/align"] < first["loss/align"], log
    assert summary.final_step == 40


@pytest.mark.slow
def test_the_default_encoder_learns_which_shapes_an_image_holds(tmp_path):
    """The shipped architecture and encoder settings, on a small world of the shipped kind: the held-out set
    categories (colour is drawn independently of the category, so only shape tells them apart) are told
    present or absent well above the constant answer, and the exact set above the commonest set."""
    conf = Path(__file__).resolve().parents[1] / "conf" / "base"
    world = yaml.safe_load((conf / "parameters_world.yml").read_text())["world"]
    pretrain = yaml.safe_load((conf / "parameters_pretrain.yml").read_text())
    config = WorldConfig(**{**world, "root": str(tmp_path / "shapes"), "splits": {"train": 800}})
    paths = generate_world(config, progress=False)["splits"]["train"]
    coco, images_dir = COCO(paths["instances_json"]), paths["images_dir"]
    ids = sorted(coco.getImgIds())
    images = np.stack([render_target("reconstruction", coco, i, images_dir=images_dir) for i in ids])
    palette = Palette.for_categories(coco.dataset["categories"])
    targets = np.stack([render_target("semantic", coco, i, palette, images_dir=images_dir) for i in ids])

    tiny = TinyJanusConfig(**pretrain["model"]["tiny"])
    tokenizer = build_word_tokenizer(vocabulary(config) + [BACKGROUND_WORD])
    adapter = JanusAdapter(build_tiny_janus(tiny, tokenizer),
                           build_processor(tokenizer, tiny.image_size, tiny.num_image_tokens))
    patches, categories = patch_labels(targets, palette, grid=tiny.image_size // tiny.patch_size)
    settings = {**pretrain["pretrain"]["encoder"], "steps": 200, "held_out": 160}
    _, quality = train_vision_encoder(adapter, images, patches, len(categories) + 1,
                                      EncoderTrainingConfig(**settings), tmp_path / "encoder")
    assert quality["presence_accuracy"] > quality["presence_accuracy_majority"] + 0.05, quality
    assert quality["presence_exact_set"] > 1.4 * quality["presence_majority"], quality
    assert quality["foreground_patch_accuracy"] > 0.4, quality
