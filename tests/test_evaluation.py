"""``evaluate_model`` end to end on a Hugging Face checkpoint this project did not train, and the report."""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools.coco import COCO
from test_models import make_adapter

from sgt_pipeline.evaluation.evaluate import (
    EvaluationConfig,
    category_presence,
    evaluate_model,
)
from sgt_pipeline.evaluation.report import grid_image, layer_plot, markdown_report
from sgt_pipeline.evaluation.understanding import image_array
from sgt_pipeline.models import JanusAdapter, build_word_tokenizer
from sgt_pipeline.rendering import Palette, render_target
from sgt_pipeline.training.instructions import instruction_words
from sgt_pipeline.world import WorldConfig, generate_world, vocabulary


@pytest.fixture(scope="module")
def tokenizer():
    """The pipeline's vocabulary: the world's words plus the instructions (the probe prompt is one)."""
    return build_word_tokenizer(sorted({*vocabulary(WorldConfig()), *instruction_words()}))


@pytest.fixture(scope="module")
def val_split(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    config = WorldConfig(root=str(root / "shapes"), image_size=16, min_radius=0.2, max_radius=0.45,
                         min_visible_area=4, splits={"val": 12})
    paths = generate_world(config, progress=False)["splits"]["val"]
    coco = COCO(paths["instances_json"])
    images, rows = image_array(coco, paths["images_dir"])
    ids = sorted(rows)
    instance = np.stack([render_target("instance", coco, i, images_dir=paths["images_dir"]) for i in ids])
    return config, coco, images, ids, {"instance": instance}


def test_evaluates_a_checkpoint_trained_elsewhere(tmp_path, tokenizer, val_split):
    world, coco, images, ids, targets = val_split
    make_adapter(tokenizer, seed=3).save_pretrained(tmp_path / "elsewhere")  # plain HF files on disk
    adapter = JanusAdapter.from_pretrained(tmp_path / "elsewhere")
    config = EvaluationConfig(proxy_images=4, geneval_per_task=1, analysis_images=12, grid_images=3)
    result = evaluate_model(adapter, coco, images, ids, targets, {}, "instance", config, world)

    m = result.metrics
    for key in ("und/count_acc", "und/color_acc", "und/pope_f1", "und/relation_2d_acc", "und/overall",
                "gen/geneval_overall", "proxy/instance_iou", "proxy/pq", "proxy_ceiling/instance_iou",
                "proxy_ceiling/pq", "proxy_teacher_forced/pq", "proxy_teacher_forced/foreground_iou",
                "probe/acc_layer_0",
                "attention/image_share_mean"):
        assert 0.0 <= m[key] <= 1.0, key
    assert len(result.probe) == adapter.model.config.text_config.num_hidden_layers + 1
    assert len(result.attention) == adapter.model.config.text_config.num_hidden_layers
    answers = result.answers
    assert all(p in o for p, o in zip(answers["prediction"], answers["options"], strict=True))
    assert m["und/count_acc"] == pytest.approx(answers.loc[answers["type"] == "count", "correct"].mean())
    assert set(result.geneval["task"]) == {"single_object", "two_objects", "counting", "colors", "position",
                                           "color_attribution"}
    assert result.grid.shape == (4 * 16, 3 * 16, 3)
    # A random model: no better than the majority answer by a wide margin on the yes/no sets.
    assert m["und/pope_acc"] <= 0.75

    assert grid_image(result, scale=2).shape == (128, 96, 3)
    assert layer_plot(result).ndim == 3
    report = markdown_report(result, str(tmp_path / "elsewhere"), "instance")
    assert "und/color_acc" in report and "proxy/instance_iou" in report
    ceiling = (f"| `proxy/pq` | {m['proxy/pq']:.3f} | {m['proxy_teacher_forced/pq']:.3f} | "
               f"{m['proxy_ceiling/pq']:.3f} |")
    assert ceiling in report, report


def test_category_presence_reads_the_annotations(val_split):
    _, coco, _, ids, _ = val_split
    presence = category_presence(coco, ids)
    for row, image_id in enumerate(ids):
        expected = {a["category_id"] for a in coco.imgToAnns[image_id] if not a["iscrowd"]}
        assert {sorted(coco.cats)[k] for k in np.flatnonzero(presence[row])} == expected


def test_semantic_proxy_needs_its_palette(tokenizer, val_split):
    _, coco, images, ids, targets = val_split
    palette = Palette.for_categories(coco.loadCats(sorted(coco.cats)))
    semantic = np.zeros_like(images)  # all background: the metric needs the palette, not the content
    config = EvaluationConfig(proxy_images=2, geneval_per_task=0, analysis_images=4, grid_images=3)
    adapter = make_adapter(tokenizer)
    result = evaluate_model(adapter, coco, images, ids, {**targets, "semantic": semantic},
                            {"semantic": palette}, "semantic", config, None)
    assert "proxy/miou" in result.metrics and result.geneval.empty
    # The grid has as many columns as generated proxy targets (2), not grid_images (3).
    assert result.grid.shape[1] == 2 * images.shape[2]
