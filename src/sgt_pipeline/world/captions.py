"""Varied one-line captions of a scene, e.g. "a red circle in front of a blue square on a striped background"."""

from __future__ import annotations

from itertools import permutations

import numpy as np

from .config import WorldConfig
from .language import count_word, noun_for_count, with_article
from .scene import Scene, SceneObject

_ATTEMPTS_PER_CAPTION = 8  # redraws when a drawn caption repeats one already written for the image


def _phrase(obj: SceneObject) -> str:
    return with_article(f"{obj.color} {obj.category}")


def _shuffled_list(scene: Scene, rng: np.random.Generator) -> str:
    phrases = [_phrase(scene.objects[i]) for i in rng.permutation(len(scene.objects))]
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]


def _on_background(scene: Scene) -> str:
    return f"on {with_article(scene.background)} background"


def _listing(scene: Scene, config: WorldConfig, rng: np.random.Generator) -> str:
    return f"{_shuffled_list(scene, rng)} {_on_background(scene)}"


def _background_first(scene: Scene, config: WorldConfig, rng: np.random.Generator) -> str:
    return f"{with_article(scene.background)} background with {_shuffled_list(scene, rng)}"


def _counted(scene: Scene, config: WorldConfig, rng: np.random.Generator) -> str:
    n = len(scene.objects)
    return f"{count_word(n)} {noun_for_count(n, 'shape')}, {_shuffled_list(scene, rng)}, {_on_background(scene)}"


def _relation(scene: Scene, config: WorldConfig, rng: np.random.Generator) -> str | None:
    """Two objects and one true relation between them (occlusion first: it is the most visible)."""
    gap = config.min_relation_offset * config.image_size
    facts = []
    for a, b in permutations(scene.objects, 2):
        if (a.full_mask & b.full_mask).any():
            facts.append((a, "in front of" if a.depth < b.depth else "behind", b))
        elif b.centroid[0] - a.centroid[0] >= gap:
            facts.append((a, "left of", b))
        elif b.centroid[1] - a.centroid[1] >= gap:
            facts.append((a, "above", b))
    if not facts:
        return None
    a, relation, b = facts[int(rng.integers(len(facts)))]
    return f"{_phrase(a)} {relation} {_phrase(b)} {_on_background(scene)}"


_TEMPLATES = (_listing, _background_first, _counted, _relation)


def scene_captions(scene: Scene, config: WorldConfig, rng: np.random.Generator) -> list[str]:
    """``captions_per_image`` captions, distinct whenever the scene allows that many phrasings."""
    order = [_TEMPLATES[i] for i in rng.permutation(len(_TEMPLATES))]
    captions: list[str] = []
    for attempt in range(config.captions_per_image * _ATTEMPTS_PER_CAPTION):
        if len(captions) == config.captions_per_image:
            break
        caption = order[attempt % len(order)](scene, config, rng)
        if caption is not None and caption not in captions:
            captions.append(caption)
    while len(captions) < config.captions_per_image:  # a very simple scene: repeat rather than fail
        captions.append(captions[len(captions) % max(1, len(captions))])
    return captions
