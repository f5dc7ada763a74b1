"""sgt_pipeline.evaluation: proxy quality metrics, linear probes and attention allocation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sgt_pipeline.evaluation.attention import (
    ATTENTION_COLUMNS,
    attention_allocation,
    object_tokens,
    pooled_image_features,
)
from sgt_pipeline.evaluation.probe import PROBE_COLUMNS, layer_metrics, probe_layers
from sgt_pipeline.evaluation.proxy_quality import proxy_metrics
from sgt_pipeline.models.features import Features
from sgt_pipeline.rendering.palette import Palette
from sgt_pipeline.rendering.targets import depth_target, edge_mask

torch.set_num_threads(2)
CATEGORIES = [{"id": 1, "name": "circle"}, {"id": 2, "name": "square"}, {"id": 3, "name": "star"}]


# ----- synthetic rendered targets -----
def _scenes(count: int = 6, size: int = 64, seed: int = 0):
    """Label maps of random overlapping rectangles: (instance map by descending area, semantic map, depth)."""
    rng = np.random.default_rng(seed)
    scenes = []
    for _ in range(count):
        boxes = []
        for _ in range(3):
            y, x = rng.integers(0, size - 8, 2)
            h, w = rng.integers(6, 24, 2)
            boxes.append((int(y), int(x), int(h), int(w), int(rng.integers(1, 4))))
        boxes.sort(key=lambda b: -(min(b[2], size - b[0]) * min(b[3], size - b[1])))  # painting order
        instance, semantic = np.zeros((size, size), int), np.zeros((size, size), int)
        depth = np.full((size, size), 100.0)
        for k, (y, x, h, w, category) in enumerate(boxes, start=1):
            instance[y : y + h, x : x + w], semantic[y : y + h, x : x + w] = k, category
            depth[y : y + h, x : x + w] = 90 - 10 * k + rng.normal(0, 1, (min(h, size - y), min(w, size - x)))
        scenes.append((instance, semantic, depth))
    return scenes


@pytest.fixture(scope="module")
def targets():
    scenes = _scenes()
    semantic_palette = Palette.for_categories(CATEGORIES)
    instance = np.stack([Palette.for_instances(3).encode(s[0]) for s in scenes]).astype(np.uint8)
    semantic = np.stack([semantic_palette.encode(s[1]) for s in scenes])
    depth = np.stack([depth_target(s[2]) for s in scenes])
    edge = np.stack([np.where(edge_mask(d), 255, 0).astype(np.uint8) for d in depth])[..., None].repeat(3, axis=3)
    return {"instance": instance, "panoptic": instance, "semantic": semantic, "depth": depth, "edge": edge,
            "semantic_palette": semantic_palette}


@pytest.mark.parametrize("kind", ["semantic", "instance", "panoptic", "depth", "edge"])
def test_perfect_prediction_scores_perfectly(targets, kind):
    palette = targets["semantic_palette"] if kind == "semantic" else None
    metrics = proxy_metrics(kind, targets[kind], targets[kind], palette)
    assert all(key.startswith("proxy/") for key in metrics)
    expected = {
        "semantic": {"proxy/miou": 1, "proxy/pixel_acc": 1, "proxy/background_iou": 1, "proxy/fg_pixel_acc": 1},
        "instance": {"proxy/pq": 1, "proxy/sq": 1, "proxy/rq": 1, "proxy/instance_iou": 1, "proxy/foreground_iou": 1},
        "depth": {"proxy/depth_rmse": 0, "proxy/depth_mae": 0, "proxy/depth_spearman": 1},
        "edge": {"proxy/edge_f1": 1, "proxy/edge_precision": 1, "proxy/edge_recall": 1, "proxy/pixel_acc": 1},
    }["instance" if kind == "panoptic" else kind]
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value, abs=1e-9), key


@pytest.mark.parametrize("kind", ["semantic", "instance", "edge"])
def test_shuffled_and_blank_predictions_score_low(targets, kind):
    palette = targets["semantic_palette"] if kind == "semantic" else None
    key = {"semantic": "proxy/miou", "instance": "proxy/pq", "edge": "proxy/edge_f1"}[kind]
    shuffled = np.roll(targets[kind], 1, axis=0)  # another image's target
    assert proxy_metrics(kind, shuffled, targets[kind], palette)[key] < 0.35
    assert proxy_metrics(kind, np.zeros_like(targets[kind]), targets[kind], palette)[key] == 0
    if kind == "instance":
        assert proxy_metrics(kind, shuffled, targets[kind])["proxy/instance_iou"] < 0.35


def test_depth_is_scored_up_to_monotone_rescaling(targets):
    depth = targets["depth"]
    gamma = (255 * (depth / 255.0) ** 2).round().astype(np.uint8)
    metrics = proxy_metrics("depth", gamma, depth)
    assert metrics["proxy/depth_rmse"] > 0.05 and metrics["proxy/depth_spearman"] > 0.99
    inverted = proxy_metrics("depth", 255 - depth, depth)
    assert inverted["proxy/depth_spearman"] == pytest.approx(-1) and inverted["proxy/depth_rmse"] > 0.3


def test_reconstruction_psnr(targets):
    image = targets["depth"]
    assert proxy_metrics("reconstruction", image, image) == {"proxy/psnr": 100.0, "proxy/mae": 0.0}
    noisy = proxy_metrics("reconstruction", np.clip(image.astype(int) + 10, 0, 255).astype(np.uint8), image)
    assert 25 < noisy["proxy/psnr"] < 35 and noisy["proxy/mae"] < 10 / 255 + 1e-9


def test_edges_have_one_pixel_tolerance(targets):
    edge = targets["edge"]
    assert proxy_metrics("edge", np.roll(edge, 1, axis=2), edge)["proxy/edge_f1"] > 0.97
    assert proxy_metrics("edge", np.roll(edge, 4, axis=2), edge)["proxy/edge_f1"] < 0.6


def test_semantic_miou_hand_computed():
    palette = Palette([0, 1, 2], [[0, 0, 0], [255, 0, 0], [0, 255, 0]])
    truth, predicted = np.array([[0, 1, 1, 2]]), np.array([[0, 1, 2, 2]])
    metrics = proxy_metrics("semantic", palette.encode(predicted), palette.encode(truth), palette)
    # Category 1: TP 1, FN 1 -> 1/2; category 2: TP 1, FP 1 -> 1/2. Background alone, IoU 1.
    assert metrics["proxy/miou"] == pytest.approx(0.5)
    assert metrics["proxy/background_iou"] == pytest.approx(1.0)
    assert metrics["proxy/pixel_acc"] == pytest.approx(3 / 4)
    assert metrics["proxy/fg_pixel_acc"] == pytest.approx(2 / 3)


def test_panoptic_quality_hand_computed():
    palette = Palette.for_instances(2)
    truth = np.array([[1, 1, 1, 1, 2, 2, 2, 2, 0, 0]])
    # Colours swapped on purpose (colour identity must not matter): A -> label 2 colour, B -> label 1 colour.
    predicted = np.array([[2, 2, 2, 0, 0, 0, 1, 1, 1, 1]])
    metrics = proxy_metrics("instance", palette.encode(predicted), palette.encode(truth))
    # A: IoU 3/4 -> TP. B vs prediction: 2 shared, 2 predicted pixels on void -> PQ IoU 2 / (4 + 4 - 2 - 2)
    # = 0.5, not > 0.5 -> FN; that prediction is half void (not more) -> FP.
    assert metrics["proxy/sq"] == pytest.approx(0.75)
    assert metrics["proxy/rq"] == pytest.approx(1 / (1 + 0.5 + 0.5))
    assert metrics["proxy/pq"] == pytest.approx(0.375)
    # Hungarian on plain IoU: A 3/4, B 2 / (4 + 4 - 2) = 1/3.
    assert metrics["proxy/instance_iou"] == pytest.approx((0.75 + 1 / 3) / 2)
    assert metrics["proxy/foreground_iou"] == pytest.approx(5 / 10)
    # A prediction lying on void only (a speck of noise on the background) is not a false positive.
    speck = np.array([[1, 1, 1, 1, 2, 2, 2, 2, 0, 2]])
    assert proxy_metrics("instance", palette.encode(speck), palette.encode(truth))["proxy/pq"] == pytest.approx(1)


def test_semantic_requires_a_palette_and_shapes_must_match(targets):
    with pytest.raises(ValueError, match="palette"):
        proxy_metrics("semantic", targets["semantic"], targets["semantic"])
    with pytest.raises(ValueError, match="pair 0"):
        proxy_metrics("edge", targets["edge"][:, :16], targets["edge"])


# ----- linear probe -----
def _probe_data(n: int = 240, d: int = 12, c: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = rng.random((n, c)) < np.array([0.5, 0.3, 0.6])[:c]
    directions = rng.normal(size=(c, d))
    separable = rng.normal(size=(n, d)) + 4.0 * labels @ directions
    return np.stack([rng.normal(size=(n, d)), separable]), labels


def test_probe_separates_separable_features_and_not_shuffled_labels():
    features, labels = _probe_data()
    frame = probe_layers(features, labels, seed=0)
    assert list(frame.columns) == list(PROBE_COLUMNS) and list(frame["layer"]) == [0, 1]
    noise, signal = frame.iloc[0], frame.iloc[1]
    assert signal["probe_acc"] > 0.97 and signal["probe_balanced_acc"] > 0.95
    assert signal["fisher_ratio"] > 5 and signal["scatter_ratio"] > 0.3
    assert abs(noise["probe_acc"] - noise["majority_acc"]) < 0.1 and noise["fisher_ratio"] < 0.2
    shuffled = probe_layers(features, np.random.default_rng(1).permutation(labels), seed=0).iloc[1]
    assert abs(shuffled["probe_acc"] - shuffled["majority_acc"]) < 0.1
    assert abs(shuffled["probe_balanced_acc"] - 0.5) < 0.12
    assert shuffled["fisher_ratio"] < 0.2 and shuffled["scatter_ratio"] < 0.05
    again = probe_layers(features, labels, seed=0)
    assert again.equals(frame)  # deterministic
    metrics = layer_metrics(frame, "probe", {"probe_acc": "acc"})
    assert set(metrics) == {"probe/acc_layer_0", "probe/acc_layer_1"}


def test_probe_drops_constant_categories_and_rejects_all_constant():
    features, labels = _probe_data(c=2)
    with_constant = np.concatenate([labels, np.ones((len(labels), 1), bool)], axis=1)
    assert probe_layers(features, with_constant).equals(probe_layers(features, labels))
    with pytest.raises(ValueError, match="nothing to probe"):
        probe_layers(features, np.zeros((len(labels), 2), bool))


# ----- attention allocation on hand-built features -----
def _hand_features() -> Features:
    """Two prompts of length 8; row 1 left-padded by one. Head 0 attends uniformly (causally) to the
    non-padding keys, head 1 puts all its mass on the first image token."""
    image_positions = torch.tensor([[1, 2, 3, 4], [2, 3, 4, 5]])
    question_positions = [torch.tensor([5, 6]), torch.tensor([6])]
    attention_mask = torch.tensor([[1] * 8, [0] + [1] * 7])
    attention = torch.zeros(2, 2, 8, 8)
    for row in range(2):
        for i in range(8):
            keys = [j for j in range(i + 1) if attention_mask[row, j]]
            if keys:
                attention[row, 0, i, keys] = 1.0 / len(keys)
                attention[row, 1, i, image_positions[row, 0] if i >= image_positions[row, 0] else keys[-1]] = 1.0
    image_mask = torch.zeros(2, 8, dtype=torch.bool).scatter_(1, image_positions, True)
    question_mask = torch.zeros(2, 8, dtype=torch.bool)
    for row, positions in enumerate(question_positions):
        question_mask[row, positions] = True
    hidden = tuple(torch.arange(2 * 8 * 3, dtype=torch.float32).reshape(2, 8, 3) * (k + 1) for k in range(2))
    return Features(hidden_states=hidden, attentions=(attention,), input_ids=torch.zeros(2, 8, dtype=torch.long),
                    attention_mask=attention_mask, image_mask=image_mask, question_mask=question_mask,
                    image_positions=image_positions, question_positions=question_positions,
                    last_positions=torch.tensor([7, 7]))


def test_attention_shares_match_hand_computation():
    masks = np.zeros((2, 4, 4), bool)
    masks[0, :2, :2] = True  # prompt 0: image token 0 (top-left patch) is the only object token
    frame = attention_allocation(_hand_features(), masks)
    assert list(frame.columns) == list(ATTENTION_COLUMNS) and len(frame) == 1
    row = frame.iloc[0]
    # Prompt 0, question rows 5 and 6 (6 and 7 visible keys); prompt 1, question row 6 (6 visible keys).
    q0 = {"image": ((4 / 6 + 1) / 2 + (4 / 7 + 1) / 2) / 2, "question": (1 / 6 + 2 / 7) / 4, "other": (1 / 6 + 1 / 7) / 4}
    q1 = {"image": (4 / 6 + 1) / 2, "question": 1 / 6 / 2, "other": 1 / 6 / 2}
    # Last position: 8 keys in prompt 0 (4 image, 2 question, bos + itself), 7 in prompt 1.
    l0 = {"image": (4 / 8 + 1) / 2, "question": 2 / 8 / 2, "other": 2 / 8 / 2}
    l1 = {"image": (4 / 7 + 1) / 2, "question": 1 / 7 / 2, "other": 2 / 7 / 2}
    for group in ("image", "question", "other"):
        assert row[f"question_{group}_share"] == pytest.approx((q0[group] + q1[group]) / 2)
        assert row[f"last_{group}_share"] == pytest.approx((l0[group] + l1[group]) / 2)
    # Object share of prompt 0 pools heads and query rows; prompt 1 has no object token (share 0, no ratio).
    q_share = (1 / 6 + 1 / 7 + 2) / (4 / 6 + 4 / 7 + 2)
    l_share = (1 / 8 + 1) / (4 / 8 + 1)
    assert row["question_object_share"] == pytest.approx(q_share / 2)
    assert row["question_object_ratio"] == pytest.approx(q_share * 4)
    assert row["last_object_share"] == pytest.approx(l_share / 2)
    assert row["last_object_ratio"] == pytest.approx(l_share * 4)
    assert row["object_token_fraction"] == pytest.approx(1 / 8)


def test_object_tokens_and_pooled_features():
    mask = np.zeros((4, 4), bool)
    mask[0, 2:] = True  # top-right patch: exactly half foreground -> object
    mask[2, 0] = True  # bottom-left patch: a quarter -> background
    assert object_tokens(mask, 4).tolist() == [[False, True, False, False]]
    assert object_tokens(np.ones((5, 7), bool), 4).all()  # sizes that do not divide the grid
    features = _hand_features()
    pooled = pooled_image_features([features, features])
    assert pooled.shape == (2, 4, 3)
    expected = features.hidden_states[1][1, 2:6].mean(0).numpy()
    assert np.allclose(pooled[1, 1], expected) and np.allclose(pooled[1, 3], expected)


# ----- end to end on a tiny Janus -----
def test_features_to_probe_and_attention_end_to_end():
    from sgt_pipeline.models import (
        JanusAdapter,
        TinyJanusConfig,
        build_processor,
        build_tiny_janus,
        build_word_tokenizer,
    )
    from sgt_pipeline.world import WorldConfig, vocabulary
    from sgt_pipeline.world.questions import scene_questions
    from sgt_pipeline.world.scene import sample_scene

    world = WorldConfig(image_size=64)
    tokenizer = build_word_tokenizer(vocabulary(world))
    config = TinyJanusConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64,
                             vision_hidden_size=32, vision_layers=1, vq_codebook_size=16)
    adapter = JanusAdapter(build_tiny_janus(config, tokenizer),
                           build_processor(tokenizer, config.image_size, config.num_image_tokens))
    rng = np.random.default_rng(0)
    scenes = [sample_scene(world, rng) for _ in range(8)]
    items = [scene_questions(scene, world, rng) for scene in scenes]
    questions = [row[i % len(row)]["question"] for i, row in enumerate(items)]  # mixed lengths -> padding
    batches = [adapter.features(np.stack([s.image for s in scenes[i : i + 4]]), questions[i : i + 4])
               for i in (0, 4)]
    pooled = pooled_image_features(batches)
    assert pooled.shape == (config.num_layers + 1, 8, config.hidden_size) and np.isfinite(pooled).all()
    labels = np.array([[any(o.category == c for o in s.objects) for c in world.categories] for s in scenes])
    labels[:4, 0], labels[4:, 0] = True, False  # make sure at least one category varies
    probe = probe_layers(pooled, labels, seed=0)
    assert len(probe) == config.num_layers + 1 and probe[["probe_acc", "probe_balanced_acc"]].stack().between(0, 1).all()
    masks = np.stack([np.logical_or.reduce([o.visible_mask for o in s.objects]) for s in scenes])
    frame = attention_allocation(batches, masks)
    assert len(frame) == config.num_layers and list(frame.columns) == list(ATTENTION_COLUMNS)
    shares = [c for c in frame.columns if c.endswith("_share")] + ["object_token_fraction"]
    assert frame[shares].stack().between(0, 1).all()
    for group in ("question", "last"):
        total = frame[[f"{group}_{k}_share" for k in ("image", "question", "other")]].sum(axis=1)
        assert np.allclose(total, 1.0, atol=1e-6)
    assert (frame["question_image_share"] > 0).all() and math.isfinite(frame["last_object_ratio"].iloc[0])
    # Independently: raw attention of the last position on the image tokens (rows sum to 1 over all keys,
    # padding included, so normalising by the non-padding mass must change nothing).
    assert any((batch.attention_mask == 0).any() for batch in batches)  # padding was exercised
    for layer in range(config.num_layers):
        raw = [batch.attentions[layer][row, :, -1, batch.image_positions[row]].sum(-1).mean().item()
               for batch in batches for row in range(4)]
        assert frame["last_image_share"].iloc[layer] == pytest.approx(np.mean(raw), abs=1e-5)
