"""A GenEval-style prompt suite for the shapes world, and ground-truth renders of its prompts.

GenEval (Ghosh et al., 2023) scores text-to-image models on six tasks with structured prompts and an
object detector. Here the tasks are the same, the vocabulary is the shapes world's own (captions phrase
objects as "a red circle" and relations as "left of" / "above"), and ``checker.py`` plays the detector.

    suite = prompt_suite(WorldConfig(), per_task=50, seed=0)
    image = render_prompt(suite[0], WorldConfig(), np.random.default_rng(0))
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from sgt_pipeline.world.background import BACKGROUND_KINDS, sample_background
from sgt_pipeline.world.config import WorldConfig
from sgt_pipeline.world.language import count_word, noun_for_count, with_article
from sgt_pipeline.world.scene import visible_centroid
from sgt_pipeline.world.shapes import outline_offsets, place_polygon, rasterise_polygon

TASKS = ("single_object", "two_objects", "counting", "colors", "position", "color_attribution")
# Tasks whose score also checks the colours the prompt names (GenEval checks colour only in these two).
COLOR_TASKS = frozenset({"colors", "color_attribution"})
# The captions only ever say "left of" and "above"; swapping the two objects covers right of / below.
CAPTION_RELATIONS = ("left of", "above")
# All four GenEval directions, for a model whose vocabulary also has "right of" / "below" (the VQA does).
ALL_RELATIONS = ("left of", "right of", "above", "below")
MAX_COUNT = 4

_SCENE_ATTEMPTS = 100  # whole-scene redraws before giving up on a render
_OBJECT_ATTEMPTS = 50  # redraws of one object's size/pose/position within a scene attempt
_RELATION_MARGIN = 1.0  # pixels beyond the relation gap, so the relation holds clearly in a render


@dataclass(frozen=True)
class ObjectSpec:
    """``count`` objects of ``category``; ``color`` is the colour the prompt names (None: unnamed)."""

    category: str
    color: str | None = None
    count: int = 1


@dataclass(frozen=True)
class RelationSpec:
    """``objects[subject] <relation> objects[reference]``, judged by centroids with a minimum gap."""

    subject: int
    relation: str  # one of ALL_RELATIONS
    reference: int


@dataclass(frozen=True)
class PromptSpec:
    task: str
    prompt: str
    objects: tuple[ObjectSpec, ...]
    relation: RelationSpec | None = None
    background: str | None = None  # the background kind the prompt names, if any
    relation_gap: float = 0.0  # pixels two centroids must differ by for a relation to hold
    exact_count: bool = False  # counting: exactly ``count`` objects of the category, not at least

    @property
    def checks_colors(self) -> bool:
        return self.task in COLOR_TASKS


def relation_holds(relation: str, subject_xy: tuple[float, float], reference_xy: tuple[float, float], gap: float) -> bool:
    """The world's own rule (captions/questions): centroids differ by >= gap along the relation's axis."""
    dx, dy = reference_xy[0] - subject_xy[0], reference_xy[1] - subject_xy[1]
    return {"left of": dx >= gap, "right of": -dx >= gap, "above": dy >= gap, "below": -dy >= gap}[relation]


def _phrase(obj: ObjectSpec) -> str:
    if obj.color is None:  # counting: "two circles", "one star"
        return f"{count_word(obj.count)} {noun_for_count(obj.count, obj.category)}"
    return with_article(f"{obj.color} {obj.category}")


def _prompt_text(objects: tuple[ObjectSpec, ...], relation: RelationSpec | None, background: str | None) -> str:
    if relation is not None:
        text = f"{_phrase(objects[relation.subject])} {relation.relation} {_phrase(objects[relation.reference])}"
    else:
        text = " and ".join(_phrase(obj) for obj in objects)
    return text if background is None else f"{text} on {with_article(background)} background"


def _make_spec(task: str, config: WorldConfig, rng: np.random.Generator, relations: tuple[str, ...]) -> PromptSpec:
    categories, colors = list(config.categories), list(config.colors)
    # Two-object tasks use distinct categories (as GenEval does) and, as in the world, distinct colours.
    cats = [categories[i] for i in rng.permutation(len(categories))[:2]]
    cols = [colors[i] for i in rng.permutation(len(colors))[:2]]
    relation, exact = None, False
    if task in ("single_object", "colors"):
        objects = (ObjectSpec(cats[0], cols[0]),)
    elif task in ("two_objects", "color_attribution", "position"):
        objects = (ObjectSpec(cats[0], cols[0]), ObjectSpec(cats[1], cols[1]))
        if task == "position":
            relation = RelationSpec(0, relations[int(rng.integers(len(relations)))], 1)
    elif task == "counting":
        top = min(MAX_COUNT, config.max_objects, len(colors))
        objects, exact = (ObjectSpec(cats[0], None, int(rng.integers(1, top + 1))),), True
    else:
        raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
    return PromptSpec(task, "", objects, relation, relation_gap=config.min_relation_offset * config.image_size,
                      exact_count=exact)


def prompt_suite(
    config: WorldConfig,
    per_task: int = 50,
    seed: int = 0,
    with_background: bool = True,
    relations: tuple[str, ...] = CAPTION_RELATIONS,
) -> list[PromptSpec]:
    """``per_task`` prompts for each task in TASKS, deterministic in (config, seed).

    ``with_background`` appends "on a striped background" etc., as every training caption does; the
    checker ignores the background either way.
    """
    unknown = set(relations) - set(ALL_RELATIONS)
    if unknown:
        raise ValueError(f"unknown relations {sorted(unknown)}; expected some of {ALL_RELATIONS}")
    suite: list[PromptSpec] = []
    for task_index, task in enumerate(TASKS):
        rng = np.random.default_rng([seed, task_index])  # one stream per task: tasks don't shift each other
        for _ in range(per_task):
            spec = _make_spec(task, config, rng, relations)
            background = BACKGROUND_KINDS[int(rng.integers(len(BACKGROUND_KINDS)))] if with_background else None
            prompt = _prompt_text(spec.objects, spec.relation, background)
            suite.append(PromptSpec(spec.task, prompt, spec.objects, spec.relation, background,
                                    spec.relation_gap, spec.exact_count))
    return suite


def _background(kind: str | None, size: int, rng: np.random.Generator) -> np.ndarray:
    # sample_background picks its own kind; redraw until it is the named one (1 in 3 per draw).
    while True:
        drawn, image = sample_background(size, rng)
        if kind is None or drawn == kind:
            return image


def _instances(spec: PromptSpec, config: WorldConfig, rng: np.random.Generator) -> list[tuple[str, str]]:
    """(category, colour) of every object to draw; unnamed colours are drawn distinct, as in the world."""
    named = {obj.color for obj in spec.objects if obj.color is not None}
    free = [c for c in config.colors if c not in named]
    free = [free[i] for i in rng.permutation(len(free))]
    instances = []
    for obj in spec.objects:
        for _ in range(obj.count):
            instances.append((obj.category, obj.color if obj.color is not None else free.pop()))
    return instances


def _try_scene(spec: PromptSpec, instances: list[tuple[str, str]], config: WorldConfig,
               rng: np.random.Generator, max_radius: float) -> list[np.ndarray] | None:
    """Non-touching masks for every instance (and the relation, if any), or None if this attempt fails."""
    size = config.image_size
    masks: list[np.ndarray] = []
    taken = np.zeros((size, size), dtype=bool)  # placed objects grown by one pixel: objects never touch
    for index, (category, _) in enumerate(instances):
        for _ in range(_OBJECT_ATTEMPTS):
            radius = rng.uniform(config.min_radius, max_radius) * size
            offsets = outline_offsets(category, radius, angle=rng.uniform(0, 2 * np.pi))
            mask = rasterise_polygon(place_polygon(offsets, size, rng), size)
            if (mask & taken).any():
                continue
            relation = spec.relation
            if relation is not None and index == max(relation.subject, relation.reference):
                first = masks[min(relation.subject, relation.reference)]
                subject, reference = (mask, first) if relation.subject == index else (first, mask)
                if not relation_holds(relation.relation, visible_centroid(subject), visible_centroid(reference),
                                      spec.relation_gap + _RELATION_MARGIN):
                    continue
            masks.append(mask)
            taken |= ndimage.binary_dilation(mask, iterations=1)
            break
        else:
            return None
    return masks


def render_prompt(spec: PromptSpec, config: WorldConfig, rng: np.random.Generator) -> np.ndarray:
    """A (size, size, 3) uint8 image that satisfies ``spec``, drawn with the world's own shapes and textures.

    Objects never overlap or touch, so every one stays fully visible and the spec holds exactly.
    """
    if spec.relation is not None and any(obj.count != 1 for obj in spec.objects):
        raise ValueError("relations are defined between single objects")
    image = _background(spec.background, config.image_size, rng).copy()
    instances = _instances(spec, config, rng)
    for attempt in range(_SCENE_ATTEMPTS):
        # Crowded scenes may not fit at full size: shrink the largest allowed radius as attempts fail.
        shrink = attempt / _SCENE_ATTEMPTS
        max_radius = config.max_radius - shrink * (config.max_radius - config.min_radius)
        masks = _try_scene(spec, instances, config, rng, max_radius)
        if masks is not None:
            for mask, (_, color) in zip(masks, instances):
                image[mask] = config.colors[color]
            return image
    raise RuntimeError(f"could not place the objects of {spec.prompt!r} in a {config.image_size}px image")
