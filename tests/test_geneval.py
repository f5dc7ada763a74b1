"""The GenEval-style suite and its classical checker: accurate on ground-truth renders, and able to say no."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from sgt_pipeline.evaluation.checker import check_images, detect_objects, geneval_scores
from sgt_pipeline.evaluation.geneval import TASKS, prompt_suite, render_prompt
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
