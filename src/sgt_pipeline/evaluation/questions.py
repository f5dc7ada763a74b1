"""Held-out understanding question sets built from COCO instances annotations (read through pycocotools).

The same code runs on the shapes world and on real COCO val 2017; phrasing is the shapes world's
(``world.questions``), since the tiny model's word-level tokenizer knows only that vocabulary. One row per
item: COLUMNS (``sampling`` is the POPE setting, NaN otherwise; ``ann_ids`` the annotations it is about).

- count: "how many circles are there?" = non-crowd instances; options "zero".."N", N = most non-crowd
  instances in one image capped at max_count. A category with a crowd region in the image is not asked.
- color (annotations with ``color`` only): "what color is the star?" for categories with exactly one
  annotation in the image; options = every colour seen in the dataset.
- pope (Li et al. 2023): "is there a circle?"; per image n = min(pope_per_image, #present, #absent)
  positives (shared by the settings) and n negatives per setting: random (uniform among absent), popular
  (absent categories in most images of the dataset), adversarial (absent categories with the largest
  summed co-occurrence with the present ones); ties: more frequent, then lower id. Crowd counts as present.
- relation_2d (CV-Bench 2D): "is the red star left of the circle?" (left of / right of / above / below)
  when *mask* centroids (``COCO.annToMask``, pixel centres as the world computes them; bbox centre only for
  an empty mask) differ by >= min_relation_offset of the image width / height.
- depth_order (CV-Bench 3D): "is the circle in front of the square?" (in front of / behind); depth = the
  annotation's ``depth`` (smaller = nearer), else the median of the depth map (``depth_dir``/<stem>.png or
  the record's ``depth_path``) under the mask. By default only pairs whose visible masks touch: in the
  shapes world occlusion is the only depth cue (``depth_pairs="all"`` for photos).

References: "the <category>" when unique in the image, else "the <colour> <category>" when that is unique;
other objects are never named. relation_2d / depth_order draw up to k (pair, axis) units per image, give
them exactly balanced answers across the set (seeded permutation), then a phrasing with that answer.
Questions are unique per (image, type, setting); everything is deterministic from ``seed``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from scipy import ndimage

from sgt_pipeline.rendering.images import read_depth
from sgt_pipeline.world.language import (
    NO,
    NUMBER_WORDS,
    YES,
    count_word,
    plural,
    with_article,
)

QUESTION_TYPES = ("count", "color", "pope", "relation_2d", "depth_order")
POPE_SETTINGS = ("random", "popular", "adversarial")
COLUMNS = ["question_id", "image_id", "type", "sampling", "question", "options", "answer", "category_ids", "ann_ids"]
_RELATION_WORDS = {0: ("left of", "right of"), 1: ("above", "below")}  # axis 0 = x, 1 = y (down)
_DEPTH_WORDS = ("in front of", "behind")


# 8-neighbourhood: "touching" includes masks that only share a border or a corner.
TOUCHING = np.ones((3, 3), dtype=bool)


class QuestionConfig(BaseModel):
    """How a question set is drawn; mirrored by a parameters YAML block."""

    model_config = ConfigDict(extra="forbid")

    seed: int = 0
    types: list[Literal["count", "color", "pope", "relation_2d", "depth_order"]] = list(QUESTION_TYPES)
    max_count: int = Field(10, ge=1, le=len(NUMBER_WORDS) - 1)  # options are number words
    count_absent_per_image: int = Field(0, ge=0)  # extra "zero" questions about absent categories
    pope_per_image: int = Field(3, ge=1)  # POPE: 3 positives + 3 negatives per image and setting
    pope_min_categories: int = Field(1, ge=1)  # POPE itself used images with >= 3 objects
    pope_images: int | None = Field(None, ge=1)  # sample this many eligible images (POPE: 500)
    relation_per_image: int = Field(2, ge=0)
    min_relation_offset: float = Field(0.1, ge=0, le=1)  # as the world's min_relation_offset
    depth_per_image: int = Field(2, ge=0)
    depth_pairs: Literal["touching", "all"] = "touching"
    min_depth_gap: float = Field(0.0, ge=0)  # depths must differ by more than this (depth units)


@dataclass
class _Object:
    ann_id: int
    category_id: int
    crowd: bool
    ref: str | None  # "the star" / "the red star"; None when ambiguous or crowd
    centroid: tuple[float, float] | None = None
    depth: float | None = None
    mask: np.ndarray | None = None


def pope_statistics(coco: Any) -> tuple[pd.Series, pd.DataFrame]:
    """(images containing each category, images containing both of two categories), indexed by category id."""
    cat_ids = sorted(coco.getCatIds())
    present = np.zeros((len(coco.imgs), len(cat_ids)), dtype=np.int64)
    column = {cid: k for k, cid in enumerate(cat_ids)}
    for row, image_id in enumerate(sorted(coco.imgs)):
        for ann in coco.imgToAnns[image_id]:
            present[row, column[ann["category_id"]]] = 1
    frequency = pd.Series(present.sum(axis=0), index=cat_ids)
    cooccurrence = pd.DataFrame(present.T @ present, index=cat_ids, columns=cat_ids)
    return frequency, cooccurrence


def build_questions(coco: Any, config: QuestionConfig | None = None, depth_dir: str | Path | None = None) -> pd.DataFrame:
    """The question set of every image in ``coco`` (a ``pycocotools.coco.COCO``), as a DataFrame of COLUMNS."""
    config = config or QuestionConfig()
    names = {c["id"]: c["name"] for c in coco.loadCats(sorted(coco.getCatIds()))}
    all_anns = coco.loadAnns(sorted(coco.anns))
    colors = sorted({a["color"] for a in all_anns if a.get("color")})
    per_image = Counter(a["image_id"] for a in all_anns if not a.get("iscrowd"))
    count_options = [count_word(n) for n in range(min(config.max_count, max(per_image.values(), default=0)) + 1)]
    frequency, cooccurrence = pope_statistics(coco)
    pope_ids = _pope_images(coco, config)
    rows: list[dict] = []
    units: dict[str, list[dict]] = {"relation_2d": [], "depth_order": []}
    for image_id in sorted(coco.imgs):
        image = coco.imgs[image_id]
        objects = _objects(coco, image_id, names, depth_dir, "depth_order" in config.types)
        rng = {t: np.random.default_rng([config.seed, image_id, k]) for k, t in enumerate(QUESTION_TYPES)}
        if "count" in config.types:
            rows += _count(image_id, objects, names, count_options, config, rng["count"])
        if "color" in config.types and colors:
            rows += _color(image_id, coco.imgToAnns[image_id], names, colors)
        if "pope" in config.types and image_id in pope_ids:
            rows += _pope(image_id, objects, names, frequency, cooccurrence, config, rng["pope"])
        if "relation_2d" in config.types:
            gaps = (config.min_relation_offset * image["width"], config.min_relation_offset * image["height"])
            units["relation_2d"] += _relation_units(image_id, objects, gaps, config, rng["relation_2d"])
        if "depth_order" in config.types:
            units["depth_order"] += _depth_units(image_id, objects, config, rng["depth_order"])
    for question_type, found in units.items():
        rng = np.random.default_rng([config.seed, QUESTION_TYPES.index(question_type)])
        answers = rng.permutation(np.arange(len(found)) < (len(found) + 1) // 2)  # exactly balanced
        rows += [_phrase(unit, bool(yes)) for unit, yes in zip(found, answers)]
    table = pd.DataFrame(rows, columns=COLUMNS[1:])
    table["order"] = table["type"].map(QUESTION_TYPES.index)
    table = table.sort_values(["image_id", "order"], kind="stable").drop(columns="order")
    table.insert(0, "question_id", np.arange(len(table)))
    return table.reset_index(drop=True)


def _pope_images(coco: Any, config: QuestionConfig) -> set[int]:
    eligible = [i for i in sorted(coco.imgs)
                if len({a["category_id"] for a in coco.imgToAnns[i]}) >= config.pope_min_categories]
    if config.pope_images is not None and config.pope_images < len(eligible):
        rng = np.random.default_rng([config.seed, len(QUESTION_TYPES)])
        eligible = [eligible[k] for k in rng.choice(len(eligible), config.pope_images, replace=False)]
    return set(eligible)


def _objects(coco: Any, image_id: int, names: dict, depth_dir, with_depth: bool) -> list[_Object]:
    """One entry per annotation, with a reference phrase, mask centroid and depth where defined."""
    anns = sorted(coco.imgToAnns[image_id], key=lambda a: a["id"])
    per_category = Counter(a["category_id"] for a in anns)
    per_colour = Counter((a.get("color"), a["category_id"]) for a in anns)
    depth_map = None
    objects = []
    for ann in anns:
        name, color, crowd = names[ann["category_id"]], ann.get("color"), bool(ann.get("iscrowd"))
        ref = None
        if not crowd and per_category[ann["category_id"]] == 1:
            ref = f"the {name}"
        elif not crowd and color and per_colour[(color, ann["category_id"])] == 1:
            ref = f"the {color} {name}"
        obj = _Object(ann["id"], ann["category_id"], crowd, ref)
        if not crowd:
            obj.mask = coco.annToMask(ann).astype(bool)
            ys, xs = np.nonzero(obj.mask)
            x, y, w, h = ann["bbox"]
            obj.centroid = (xs.mean() + 0.5, ys.mean() + 0.5) if len(xs) else (x + w / 2, y + h / 2)
            obj.depth = ann.get("depth")
            if obj.depth is None and with_depth and obj.mask.any():
                if depth_map is None:
                    depth_map = _depth_map(coco.imgs[image_id], depth_dir)
                obj.depth = None if depth_map is False else float(np.median(depth_map[obj.mask]))
        objects.append(obj)
    return objects


def _depth_map(image: dict, depth_dir) -> np.ndarray | bool:
    """The image's depth map, or False when it has none."""
    if depth_dir is not None:
        image = {**image, "depth_path": str(Path(depth_dir) / (Path(image["file_name"]).stem + ".png"))}
    return read_depth(image) if image.get("depth_path") else False


def _count(image_id, objects, names, options, config, rng) -> list[dict]:
    counts = Counter(o.category_id for o in objects if not o.crowd)
    crowded = {o.category_id for o in objects if o.crowd}
    rows = []
    for cid, n in sorted(counts.items()):
        if cid not in crowded and count_word(n) in options:
            ids = [o.ann_id for o in objects if o.category_id == cid]
            rows.append(_row(image_id, "count", f"how many {plural(names[cid])} are there?", options,
                             count_word(n), [cid], ids))
    absent = [cid for cid in sorted(names) if cid not in counts and cid not in crowded]
    for cid in rng.permutation(absent)[: config.count_absent_per_image]:
        rows.append(_row(image_id, "count", f"how many {plural(names[cid])} are there?", options,
                         count_word(0), [int(cid)], []))
    return rows


def _color(image_id, anns, names, colors) -> list[dict]:
    per_category = Counter(a["category_id"] for a in anns)
    return [_row(image_id, "color", f"what color is the {names[a['category_id']]}?", colors, a["color"],
                 [a["category_id"]], [a["id"]])
            for a in sorted(anns, key=lambda a: a["category_id"])
            if per_category[a["category_id"]] == 1 and not a.get("iscrowd") and a.get("color")]


def _pope(image_id, objects, names, frequency, cooccurrence, config, rng) -> list[dict]:
    present = sorted({o.category_id for o in objects})
    absent = [cid for cid in sorted(names) if cid not in present]
    n = min(config.pope_per_image, len(present), len(absent))
    if n == 0:
        return []
    positives = sorted(int(c) for c in rng.choice(present, n, replace=False))
    score = cooccurrence.loc[present].sum(axis=0)
    negatives = {
        "random": sorted(int(c) for c in rng.choice(absent, n, replace=False)),
        "popular": sorted(absent, key=lambda c: (-frequency[c], c))[:n],
        "adversarial": sorted(absent, key=lambda c: (-score[c], -frequency[c], c))[:n],
    }
    rows = []
    for setting in POPE_SETTINGS:
        for cid, answer in [(c, YES) for c in positives] + [(c, NO) for c in negatives[setting]]:
            ids = [o.ann_id for o in objects if o.category_id == cid]
            row = _row(image_id, "pope", f"is there {with_article(names[cid])}?", [YES, NO], answer, [cid], ids)
            rows.append({**row, "sampling": setting})
    return rows


def _relation_units(image_id, objects, gaps, config, rng) -> list[dict]:
    named = [o for o in objects if o.ref is not None]
    found = [_unit(image_id, "relation_2d", a, b, a.centroid[axis] < b.centroid[axis], _RELATION_WORDS[axis])
             for a, b in combinations(named, 2) for axis in (0, 1)
             if abs(a.centroid[axis] - b.centroid[axis]) >= gaps[axis]]
    return _choose(found, config.relation_per_image, rng)


def _depth_units(image_id, objects, config, rng) -> list[dict]:
    named = [o for o in objects if o.ref is not None and o.depth is not None]
    found = [_unit(image_id, "depth_order", a, b, a.depth < b.depth, _DEPTH_WORDS)
             for a, b in combinations(named, 2)
             if abs(a.depth - b.depth) > config.min_depth_gap
             and (config.depth_pairs == "all" or (ndimage.binary_dilation(a.mask, TOUCHING) & b.mask).any())]
    return _choose(found, config.depth_per_image, rng)


def _unit(image_id, question_type, a: _Object, b: _Object, holds: bool, words) -> dict:
    # holds: "a <words[0]> b" is true.
    return {"image_id": image_id, "type": question_type, "a": a, "b": b, "holds": holds, "words": words}


def _choose(found: list[dict], k: int, rng: np.random.Generator) -> list[dict]:
    chosen = [found[i] for i in rng.permutation(len(found))[:k]]
    for unit in chosen:
        unit["flip"] = bool(rng.integers(2))  # which of the two phrasings with the drawn answer
    return chosen


def _phrase(unit: dict, yes: bool) -> dict:
    """A phrasing of the unit whose answer is ``yes``: of the four, two have each answer."""
    a, b, (first, second), holds = unit["a"], unit["b"], unit["words"], unit["holds"]
    phrasings = [(a, first, b, holds), (a, second, b, not holds), (b, first, a, not holds), (b, second, a, holds)]
    x, word, y, _ = [p for p in phrasings if p[3] == yes][int(unit["flip"])]
    return _row(unit["image_id"], unit["type"], f"is {x.ref} {word} {y.ref}?", [YES, NO], YES if yes else NO,
                [x.category_id, y.category_id], [x.ann_id, y.ann_id])


def _row(image_id, question_type, question, options, answer, category_ids, ann_ids) -> dict:
    return {"image_id": int(image_id), "type": question_type, "sampling": None, "question": question,
            "options": list(options), "answer": answer, "category_ids": [int(c) for c in category_ids],
            "ann_ids": [int(i) for i in ann_ids]}
