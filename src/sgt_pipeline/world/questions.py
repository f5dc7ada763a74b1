"""VQA items about one scene: only well-defined questions, yes/no answers balanced by construction.

Answers are single lowercase words: "yes"/"no", number words ("zero".."ten"), colour or category names.
"""

from __future__ import annotations

from collections import Counter
from itertools import combinations

import numpy as np

from .config import WorldConfig
from .language import NO, YES, count_word, plural, with_article
from .scene import Scene, SceneObject

QUESTION_TYPES = ("count", "color", "exists", "left_right", "above_below", "front_behind")
PRESENCE = "presence"  # the type of the every-category existence questions (WorldConfig.ask_every_category)
_ATTEMPTS_PER_QUESTION = 4  # redraws when a drawn question repeats one already asked about the image


def _pick(rng: np.random.Generator, items: list):
    return items[int(rng.integers(len(items)))]


def reference(obj: SceneObject, objects: list[SceneObject], rng: np.random.Generator) -> str:
    """ "the star" when that is unambiguous (half of the time), else "the red star" (colours are unique)."""
    unique_category = sum(other.category == obj.category for other in objects) == 1
    if unique_category and rng.uniform() < 0.5:
        return f"the {obj.category}"
    return f"the {obj.color} {obj.category}"


def _count(scene: Scene, config: WorldConfig, rng: np.random.Generator) -> tuple[str, str] | None:
    counts = Counter(obj.category for obj in scene.objects)
    if rng.uniform() < 1 / 3:
        return "how many shapes are there?", count_word(len(scene.objects))
    absent = [name for name in config.categories if name not in counts]
    # Mostly present categories (answers one..four), sometimes absent ones (answer zero).
    category = _pick(rng, absent) if absent and rng.uniform() < 0.3 else _pick(rng, sorted(counts))
    return f"how many {plural(category)} are there?", count_word(counts[category])


def _color(scene: Scene, config: WorldConfig, rng: np.random.Generator) -> tuple[str, str] | None:
    counts = Counter(obj.category for obj in scene.objects)
    singles = [obj for obj in scene.objects if counts[obj.category] == 1]
    if not singles:
        return None
    obj = _pick(rng, singles)
    return f"what color is the {obj.category}?", obj.color


def _exists(scene: Scene, config: WorldConfig, rng: np.random.Generator) -> tuple[str, str] | None:
    present = {obj.category for obj in scene.objects}
    pairs = {(obj.color, obj.category) for obj in scene.objects}
    answer_yes, about_colour = rng.uniform() < 0.5, rng.uniform() < 0.5
    if about_colour:
        if answer_yes:
            color, category = _pick(rng, sorted(pairs))
        else:  # a hard negative: a shape that is present, in a colour it does not have here
            category = _pick(rng, sorted(present))
            other_colors = [c for c in config.colors if (c, category) not in pairs]
            if not other_colors:
                return None
            color = _pick(rng, other_colors)
        return f"is there {with_article(f'{color} {category}')}?", YES if answer_yes else NO
    absent = [name for name in config.categories if name not in present]
    if not answer_yes and not absent:
        return None
    category = _pick(rng, sorted(present) if answer_yes else absent)
    return f"is there {with_article(category)}?", YES if answer_yes else NO


def _relation(
    pairs: list[tuple[SceneObject, SceneObject]],
    holds,  # holds(a, b) -> True when "a <first word> b" is true
    words: tuple[str, str],
    scene: Scene,
    rng: np.random.Generator,
) -> tuple[str, str] | None:
    if not pairs:
        return None
    a, b = _pick(rng, pairs)
    if rng.uniform() < 0.5:
        a, b = b, a
    use_first = rng.uniform() < 0.5
    truth = holds(a, b) if use_first else holds(b, a)
    word = words[0] if use_first else words[1]
    ref_a, ref_b = reference(a, scene.objects, rng), reference(b, scene.objects, rng)
    return f"is {ref_a} {word} {ref_b}?", YES if truth else NO


def _left_right(scene: Scene, config: WorldConfig, rng: np.random.Generator) -> tuple[str, str] | None:
    gap = config.min_relation_offset * config.image_size
    pairs = [(a, b) for a, b in combinations(scene.objects, 2) if abs(a.centroid[0] - b.centroid[0]) >= gap]
    return _relation(pairs, lambda a, b: a.centroid[0] < b.centroid[0], ("left of", "right of"), scene, rng)


def _above_below(scene: Scene, config: WorldConfig, rng: np.random.Generator) -> tuple[str, str] | None:
    gap = config.min_relation_offset * config.image_size
    pairs = [(a, b) for a, b in combinations(scene.objects, 2) if abs(a.centroid[1] - b.centroid[1]) >= gap]
    return _relation(pairs, lambda a, b: a.centroid[1] < b.centroid[1], ("above", "below"), scene, rng)


def _front_behind(scene: Scene, config: WorldConfig, rng: np.random.Generator) -> tuple[str, str] | None:
    # Only overlapping pairs: there the occlusion itself shows which object is in front.
    pairs = [(a, b) for a, b in combinations(scene.objects, 2) if (a.full_mask & b.full_mask).any()]
    return _relation(pairs, lambda a, b: a.depth < b.depth, ("in front of", "behind"), scene, rng)


_MAKERS = {
    "count": _count,
    "color": _color,
    "exists": _exists,
    "left_right": _left_right,
    "above_below": _above_below,
    "front_behind": _front_behind,
}


def scene_questions(scene: Scene, config: WorldConfig, rng: np.random.Generator) -> list[dict]:
    """Up to ``questions_per_type`` distinct items per type, then the presence items when asked for: dicts
    with question, answer, type."""
    items: list[dict] = []
    for question_type in QUESTION_TYPES:
        asked: set[str] = set()
        for _ in range(config.questions_per_type * _ATTEMPTS_PER_QUESTION):
            if len(asked) == config.questions_per_type:
                break
            made = _MAKERS[question_type](scene, config, rng)
            if made is None:
                break  # the type is ill-defined for this scene
            question, answer = made
            if question not in asked:
                asked.add(question)
                items.append({"question": question, "answer": answer, "type": question_type})
    if config.ask_every_category:
        present = {obj.category for obj in scene.objects}
        items += [{"question": f"is there {with_article(name)}?", "answer": YES if name in present else NO,
                   "type": PRESENCE} for name in config.categories]
    return items
