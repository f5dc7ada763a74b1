"""The GenEval-style suite and its classical checker: accurate on ground-truth renders, and able to say no."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from sgt_pipeline.evaluation.checker import check_images, detect_objects, geneval_scores
from sgt_pipeline.evaluation.geneval import (
    ALL_RELATIONS,
    TASKS,
    prompt_suite,
    render_prompt,
)
from sgt_pipeline.world import WorldConfig
from sgt_pipeline.world.language import vocabulary

FOUR_SHAPES = WorldConfig(categories=["circle", "square", "triangle", "star"], min_radius=0.16, max_radius=0.28)
SIX_SHAPES = WorldConfig()


def _renders(config: WorldConfig, per_task: int, seed: int):
    specs = prompt_suite(config, per_task=per_task, seed=seed)
    rng = np.random.default_rng(seed)
    return specs, [render_prompt(spec, config, rng) for spec in specs]


@pytest.mark.parametrize("config", [FOUR_SHAPES, SIX_SHAPES], ids=["pipeline-default", "library-default"])
def test_checker_accepts_ground_truth_renders(config):
    specs, images = _renders(config, per_task=20, seed=3)
    scores = geneval_scores(specs, images, config)
    assert set(scores) == {*TASKS, "overall"}
    assert scores["overall"] >= 0.95, scores
    assert min(scores[task] for task in TASKS) >= 0.9, scores


def test_checker_rejects_blank_and_mismatched_images():
    specs, images = _renders(SIX_SHAPES, per_task=10, seed=5)
    assert not any(check_images(specs, [np.zeros_like(i) for i in images], SIX_SHAPES))
    assert not any(check_images(specs, [np.full_like(i, 120) for i in images], SIX_SHAPES))
    # Another prompt's image rarely satisfies a prompt (only when it happens to contain what is asked).
    shifted = images[7:] + images[:7]
    assert np.mean(check_images(specs, shifted, SIX_SHAPES)) < 0.3


def _variant(spec, **changes):
    objects = (dataclasses.replace(spec.objects[0], **changes), *spec.objects[1:])
    return dataclasses.replace(spec, objects=objects)


@pytest.mark.parametrize("change", ["color", "category", "count"])
def test_checker_rejects_a_render_of_a_different_prompt(change):
    config, rng = SIX_SHAPES, np.random.default_rng(0)
    task = {"color": "colors", "category": "single_object", "count": "counting"}[change]
    specs = [s for s in prompt_suite(config, per_task=10, seed=1) if s.task == task]
    rejected = 0
    for spec in specs:
        first = spec.objects[0]
        other = {"color": {"color": next(c for c in config.colors if c != first.color)},
                 "category": {"category": next(c for c in config.categories if c != first.category)},
                 "count": {"count": first.count % 3 + 1}}[change]
        wrong = render_prompt(_variant(spec, **other), config, rng)
        assert check_images([_variant(spec, **other)], [wrong], config) == [True]  # the variant itself passes
        rejected += not check_images([spec], [wrong], config)[0]
    assert rejected == len(specs)


def test_relation_is_checked():
    config = SIX_SHAPES
    specs = [s for s in prompt_suite(config, per_task=10, seed=2) if s.task == "position"]
    rng = np.random.default_rng(1)
    for spec in specs:
        image = render_prompt(spec, config, rng)
        mirrored = image[:, ::-1] if spec.relation.relation in ("left of", "right of") else image[::-1]
        assert check_images([spec], [image], config) == [True]
        assert check_images([spec], [np.ascontiguousarray(mirrored)], config) == [False]


def test_detections_name_the_painted_objects():
    specs, images = _renders(FOUR_SHAPES, per_task=5, seed=9)
    for spec, image in zip(specs, images, strict=True):
        if spec.task != "single_object":
            continue
        (found,) = detect_objects(image, FOUR_SHAPES)
        assert found.category == spec.objects[0].category


def test_suite_is_deterministic_and_speaks_the_worlds_language():
    first, again = prompt_suite(SIX_SHAPES, per_task=6, seed=4), prompt_suite(SIX_SHAPES, per_task=6, seed=4)
    assert first == again and first != prompt_suite(SIX_SHAPES, per_task=6, seed=5)
    assert [s.task for s in first] == [t for t in TASKS for _ in range(6)]
    words = set(vocabulary(SIX_SHAPES))
    unknown = {w for s in first for w in s.prompt.replace(",", " ").split()} - words
    assert not unknown, unknown


def test_renders_satisfy_their_spec_pixel_for_pixel():
    """Checked without the checker: objects are painted in exact palette colours and never touch."""
    from scipy import ndimage

    from sgt_pipeline.evaluation.geneval import relation_holds

    config = SIX_SHAPES
    specs, images = _renders(config, per_task=8, seed=6)
    for spec, image in zip(specs, images, strict=True):
        painted = {}  # colour -> list of (area, centroid) of its connected pieces
        for name, rgb in config.colors.items():
            pieces, n = ndimage.label((image == rgb).all(axis=-1), structure=np.ones((3, 3)))
            for index in range(1, n + 1):
                ys, xs = np.nonzero(pieces == index)
                painted.setdefault(name, []).append((len(xs), (xs.mean() + 0.5, ys.mean() + 0.5)))
        assert all(len(p) == 1 for p in painted.values()), spec.prompt  # one object per colour, in one piece
        assert len(painted) == sum(obj.count for obj in spec.objects), spec.prompt
        for obj in spec.objects:
            if obj.color is not None:
                assert obj.color in painted, spec.prompt
        if spec.relation is not None:
            subject, reference = (painted[spec.objects[i].color][0][1]
                                  for i in (spec.relation.subject, spec.relation.reference))
            assert relation_holds(spec.relation.relation, subject, reference, spec.relation_gap), spec.prompt


def test_blurred_renders_still_pass_and_plain_blobs_are_no_shapes():
    from scipy import ndimage

    config = SIX_SHAPES
    specs, images = _renders(config, per_task=4, seed=12)
    blurred = [np.clip(ndimage.gaussian_filter(i.astype(float), (0.7, 0.7, 0)), 0, 255).astype(np.uint8)
               for i in images]
    assert np.mean(check_images(specs, blurred, config)) >= 0.9
    # A white ellipse (what a blurry generator paints) resembles a diamond, but is not one.
    ys, xs = np.mgrid[0:64, 0:64] + 0.5
    image = np.full((64, 64, 3), 90, dtype=np.uint8)
    image[((xs - 30) / 5) ** 2 + ((ys - 34) / 9) ** 2 <= 1] = config.colors["white"]
    assert detect_objects(image, config) == []


def test_unoccluded_objects_of_world_scenes_are_named_right():
    """The world's own scenes (as in the dataset): every fully visible object found with its colour and shape."""
    from sgt_pipeline.world.generate import image_rng
    from sgt_pipeline.world.scene import sample_scene

    config, checked = FOUR_SHAPES, 0
    for index in range(40):
        scene = sample_scene(config, image_rng(config.seed, "val", index, 0))
        found = {(d.color, d.category) for d in detect_objects(scene.image, config)}
        for obj in scene.objects:
            if not obj.occluded:
                assert (obj.color, obj.category) in found, (index, obj.color, obj.category)
                checked += 1
    assert checked >= 40


def test_all_four_relations_use_the_worlds_words():
    specs = prompt_suite(SIX_SHAPES, per_task=20, seed=0, relations=ALL_RELATIONS)
    assert {s.relation.relation for s in specs if s.task == "position"} == set(ALL_RELATIONS)
    unknown = {w for s in specs for w in s.prompt.split()} - set(vocabulary(SIX_SHAPES))
    assert not unknown, unknown


# ----- pluggable detectors -----

def test_scoring_is_the_same_through_the_detector_interface():
    from sgt_pipeline.evaluation.detection import ShapesDetector

    specs, images = _renders(FOUR_SHAPES, per_task=3, seed=8)
    images = images[2:] + images[:2]  # a mix of accepted and rejected prompts
    assert check_images(specs, images, FOUR_SHAPES) == check_images(specs, images,
                                                                    detector=ShapesDetector(FOUR_SHAPES))


def test_segmentation_detector_loads_a_local_mask2former(tmp_path):
    """The real-data detector path: a (tiny, random) Mask2Former saved in HF format, loaded from disk."""
    from transformers import (
        Mask2FormerConfig,
        Mask2FormerForUniversalSegmentation,
        Mask2FormerImageProcessor,
        SwinConfig,
    )

    from sgt_pipeline.evaluation.detection import (
        PromptVocabulary,
        SegmentationDetector,
        nearest_color,
    )

    names = {0: "person", 1: "car", 2: "dog"}
    backbone = SwinConfig(embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1], image_size=64,
                          out_features=["stage1", "stage2", "stage3", "stage4"])
    config = Mask2FormerConfig(backbone_config=backbone, num_queries=8, hidden_dim=32, feature_size=32,
                               mask_feature_size=32, encoder_layers=1, decoder_layers=2, num_attention_heads=2,
                               dim_feedforward=64, encoder_feedforward_dim=64, num_labels=3, id2label=names,
                               label2id={v: k for k, v in names.items()})
    Mask2FormerForUniversalSegmentation(config).save_pretrained(tmp_path / "m2f")
    Mask2FormerImageProcessor(size={"height": 64, "width": 64}).save_pretrained(tmp_path / "m2f")

    detector = SegmentationDetector.from_pretrained(tmp_path / "m2f", threshold=0.0)
    image = np.random.default_rng(0).integers(0, 255, (48, 40, 3), dtype=np.uint8)
    detections = detector.detect(image)
    assert detections and all(d.category in names.values() and d.area > 0 for d in detections)
    assert all(0 <= d.centroid[0] <= 40 and 0 <= d.centroid[1] <= 48 for d in detections)
    assert [d.area for d in detections] == sorted((d.area for d in detections), reverse=True)

    specs = prompt_suite(PromptVocabulary(list(names.values()), image_size=48), per_task=2, seed=0,
                         with_background=False)
    assert len(check_images(specs, [image] * len(specs), detector=detector)) == len(specs)
    assert nearest_color(np.array([[250, 20, 25]] * 5), {"red": (220, 30, 30), "blue": (40, 80, 220)}) == "red"
    with pytest.raises(FileNotFoundError, match="no downloads"):
        SegmentationDetector.from_pretrained(tmp_path / "missing")
