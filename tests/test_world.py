"""The shapes world: exact COCO annotations, depth, VQA, captions, determinism, atomic regeneration."""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pydantic import ValidationError

from sgt_pipeline.world import QUESTION_TYPES, WorldConfig, generate_world, vocabulary
from sgt_pipeline.world.annotations import encoding_of, uncompressed_counts
from sgt_pipeline.world.background import BACKGROUND_MAX_CHANNEL
from sgt_pipeline.world.language import NUMBER_WORDS, plural, words_of

DEPTH_BACKGROUND = 65535
SMALL = {"splits": {"train": 40, "val": 16}, "uncompressed_rle_fraction": 0.5}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world") / "shapes"
    config = WorldConfig(root=str(root), **SMALL)
    return config, generate_world(config, progress=False)


def _load_split(manifest: dict, split: str):
    paths = manifest["splits"][split]
    coco = COCO(paths["instances_json"])
    with open(paths["vqa_jsonl"]) as handle:
        questions = [json.loads(line) for line in handle]
    with open(paths["captions_json"]) as handle:
        captions = json.load(handle)
    return paths, coco, questions, captions


def _image_arrays(paths: dict, file_name: str) -> tuple[np.ndarray, np.ndarray]:
    image = Image.open(os.path.join(paths["images_dir"], file_name))
    depth = Image.open(os.path.join(paths["depth_dir"], file_name))
    assert image.mode == "RGB" and depth.mode == "I;16"
    return np.asarray(image), np.asarray(depth)


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_manifest_lists_every_split_with_paths_joined_from_a_relative_root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = WorldConfig(root="data/shapes", splits={"train": 3, "val": 2})
    manifest = generate_world(config, progress=False)

    assert manifest == json.loads(Path("data/shapes/manifest.json").read_text())
    assert manifest["kind"] == "shapes" and manifest["root"] == "data/shapes"
    assert manifest["config"] == config.model_dump(mode="json")
    assert manifest["splits"]["val"] == {
        "instances_json": "data/shapes/annotations/instances_val.json",
        "images_dir": "data/shapes/images/val",
        "captions_json": "data/shapes/annotations/captions_val.json",
        "vqa_jsonl": "data/shapes/annotations/vqa_val.jsonl",
        "depth_dir": "data/shapes/depth/val",
        "panoptic_json": None,
    }
    assert sorted(os.listdir("data/shapes/images/val")) == ["000000000004.png", "000000000005.png"]
    assert sorted(os.listdir("data")) == ["shapes"]  # no temporary directory left behind


def test_annotations_decode_exactly_to_the_painted_pixels(world):
    config, manifest = world
    encodings = Counter()
    for split in config.splits:
        paths, coco, _, _ = _load_split(manifest, split)
        assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == config.categories
        for image_id in coco.getImgIds():
            info = coco.imgs[image_id]
            image, _ = _image_arrays(paths, info["file_name"])
            assert image.shape == (config.image_size, config.image_size, 3)
            annotations = coco.imgToAnns[image_id]
            assert config.min_objects <= len(annotations) <= config.max_objects
            painted = np.zeros(image.shape[:2], dtype=int)
            for ann in annotations:
                mask = coco.annToMask(ann).astype(bool)
                rle = coco.annToRLE(ann)
                assert mask.sum() >= config.min_visible_area
                assert (image[mask] == config.colors[ann["color"]]).all()
                assert ann["area"] == mask.sum() == mask_utils.area(rle)
                assert ann["bbox"] == pytest.approx(mask_utils.toBbox(rle).tolist())
                assert ann["iscrowd"] == 0
                encodings[encoding_of(ann["segmentation"])] += 1
                painted += mask
            assert painted.max() <= 1, "visible regions of one image must not overlap"
            assert image[painted == 0].max() <= BACKGROUND_MAX_CHANNEL  # no object colour in the background
            assert len({ann["color"] for ann in annotations}) == len(annotations)
    assert encodings["polygon"] and encodings["compressed_rle"] and encodings["uncompressed_rle"], encodings


def test_ids_are_unique_across_splits(world):
    config, manifest = world
    seen = Counter()
    for split in config.splits:
        _, coco, questions, captions = _load_split(manifest, split)
        seen.update(("image", i) for i in coco.getImgIds())
        seen.update(("annotation", i) for i in coco.getAnnIds())
        seen.update(("question", q["question_id"]) for q in questions)
        seen.update(("caption", c["id"]) for c in captions["annotations"])
    assert max(seen.values()) == 1


def test_depth_map_holds_each_visible_objects_depth_and_far_background(world):
    config, manifest = world
    paths, coco, _, _ = _load_split(manifest, "train")
    for image_id in coco.getImgIds():
        _, depth = _image_arrays(paths, coco.imgs[image_id]["file_name"])
        annotations = coco.imgToAnns[image_id]
        covered = np.zeros(depth.shape, dtype=bool)
        for ann in annotations:
            mask = coco.annToMask(ann).astype(bool)
            assert (depth[mask] == ann["depth"]).all() and ann["depth"] < DEPTH_BACKGROUND
            covered |= mask
        assert (depth[~covered] == DEPTH_BACKGROUND).all()
        depths = [ann["depth"] for ann in annotations]
        assert len(set(depths)) == len(depths)
        # Only what lies behind something can be occluded: the nearest object is always whole (a polygon),
        # and every RLE (occluded) object has a nearer one.
        nearest = min(annotations, key=lambda a: a["depth"])
        assert encoding_of(nearest["segmentation"]) == "polygon"
        for ann in annotations:
            if encoding_of(ann["segmentation"]) != "polygon":
                assert any(other["depth"] < ann["depth"] for other in annotations)


def _resolve(reference: str, annotations: list[dict], names: dict[int, str]) -> dict:
    words = reference.split()
    assert words[0] == "the"
    matches = [a for a in annotations if names[a["category_id"]] == words[-1]]
    if len(words) == 3:
        matches = [a for a in matches if a["color"] == words[1]]
    assert len(matches) == 1, f"ambiguous or dangling reference {reference!r}"
    return matches[0]


def _expected_answer(question: dict, coco: COCO, config: WorldConfig) -> str:
    annotations = coco.imgToAnns[question["image_id"]]
    names = {c["id"]: c["name"] for c in coco.dataset["categories"]}
    categories = Counter(names[a["category_id"]] for a in annotations)
    text, kind = question["question"], question["type"]
    yes_no = {True: "yes", False: "no"}
    if kind == "count":
        noun = re.fullmatch(r"how many (\w+) are there\?", text)[1]
        if noun == "shapes":
            return NUMBER_WORDS[len(annotations)]
        return NUMBER_WORDS[categories[{plural(c): c for c in config.categories}[noun]]]
    if kind == "color":
        category = re.fullmatch(r"what color is the (\w+)\?", text)[1]
        assert categories[category] == 1
        return next(a["color"] for a in annotations if names[a["category_id"]] == category)
    if kind in ("exists", "presence"):
        color, category = re.fullmatch(r"is there an? (?:(\w+) )?(\w+)\?", text).groups()
        present = {(a["color"], names[a["category_id"]]) for a in annotations}
        return yes_no[any(c == category and color in (None, col) for col, c in present)]
    match = re.fullmatch(r"is (the .+?) (left of|right of|above|below|in front of|behind) (the .+)\?", text)
    first, relation, second = match.groups()
    a, b = _resolve(first, annotations, names), _resolve(second, annotations, names)
    if kind == "front_behind":
        return yes_no[(a["depth"] < b["depth"]) == (relation == "in front of")]
    axis = 0 if kind == "left_right" else 1
    centre_a, centre_b = (_centroid(coco.annToMask(ann))[axis] for ann in (a, b))
    assert abs(centre_a - centre_b) >= config.min_relation_offset * config.image_size
    return yes_no[(centre_a < centre_b) == (relation in ("left of", "above"))]


def _centroid(mask: np.ndarray) -> tuple[float, float]:
    ys, xs = np.nonzero(mask)
    return xs.mean() + 0.5, ys.mean() + 0.5


def test_vqa_answers_follow_from_the_annotations(world):
    config, manifest = world
    words = set(vocabulary(config))
    kinds, yes_no = Counter(), Counter()
    for split in config.splits:
        _, coco, questions, _ = _load_split(manifest, split)
        for question in questions:
            assert set(question) == {"question_id", "image_id", "question", "answer", "type"}
            assert question["answer"] == _expected_answer(question, coco, config), question
            assert re.fullmatch(r"[a-z]+", question["answer"])
            assert set(words_of(question["question"])) <= words
            kinds[question["type"]] += 1
            if question["answer"] in ("yes", "no"):
                yes_no[question["answer"]] += 1
    assert set(kinds) == set(QUESTION_TYPES)
    assert 0.35 < yes_no["yes"] / sum(yes_no.values()) < 0.65, yes_no


def test_every_category_is_asked_side_by_side_when_configured(tmp_path):
    config = WorldConfig(root=str(tmp_path / "shapes"), splits={"train": 12}, ask_every_category=True)
    _, coco, questions, _ = _load_split(generate_world(config, progress=False), "train")
    presence = [q for q in questions if q["type"] == "presence"]
    per_image = Counter(q["image_id"] for q in presence)
    assert set(per_image.values()) == {len(config.categories)} and len(per_image) == 12
    for question in presence:
        assert question["answer"] == _expected_answer(question, coco, config), question


def test_captions_are_varied_and_use_the_vocabulary(world):
    config, manifest = world
    words = set(vocabulary(config))
    _, coco, _, captions = _load_split(manifest, "train")
    per_image: dict[int, list[str]] = {}
    for item in captions["annotations"]:
        per_image.setdefault(item["image_id"], []).append(item["caption"])
    assert set(per_image) == set(coco.getImgIds())
    for texts in per_image.values():
        assert len(texts) == config.captions_per_image == len(set(texts))
        for text in texts:
            assert "background" in text and set(words_of(text)) <= words


def test_same_seed_gives_identical_bytes_for_any_worker_count(tmp_path):
    trees = []
    for name, seed, workers in (("a", 3, 1), ("b", 3, 2), ("c", 4, 1)):
        config = WorldConfig(root=str(tmp_path / name), seed=seed, splits={"train": 10, "val": 4})
        generate_world(config, progress=False, workers=workers)
        trees.append(_tree_bytes(tmp_path / name))
    same_a, same_b, other = ({k: v for k, v in tree.items() if k != "manifest.json"} for tree in trees)
    assert same_a == same_b
    assert same_a.keys() == other.keys()
    assert same_a["images/train/000000000001.png"] != other["images/train/000000000001.png"]


def test_an_image_does_not_depend_on_split_sizes(tmp_path):
    small = generate_world(WorldConfig(root=str(tmp_path / "s"), splits={"train": 3}), progress=False)
    large = generate_world(WorldConfig(root=str(tmp_path / "l"), splits={"train": 6, "val": 1}), progress=False)
    for index in range(1, 4):
        name = f"{index:012d}.png"
        for directory in ("images_dir", "depth_dir"):
            small_file = Path(small["splits"]["train"][directory]) / name
            assert small_file.read_bytes() == (Path(large["splits"]["train"][directory]) / name).read_bytes()


def test_regeneration_replaces_a_larger_previous_dataset(tmp_path):
    root = tmp_path / "shapes"
    generate_world(WorldConfig(root=str(root), splits={"train": 12}), progress=False)
    generate_world(WorldConfig(root=str(root), splits={"train": 4}), progress=False)
    assert len(os.listdir(root / "images" / "train")) == 4
    assert sorted(os.listdir(tmp_path)) == ["shapes"]


def test_uncompressed_counts_round_trip_through_pycocotools():
    rng = np.random.default_rng(0)
    for first_pixel in (0, 1):
        mask = rng.uniform(size=(7, 5)) < 0.5
        mask[0, 0] = first_pixel
        rle = mask_utils.frPyObjects({"size": [7, 5], "counts": uncompressed_counts(mask)}, 7, 5)
        assert (mask_utils.decode(rle).astype(bool) == mask).all()


def test_config_rejects_unknown_keys_and_inconsistent_values():
    with pytest.raises(ValidationError):
        WorldConfig(image_sise=64)
    with pytest.raises(ValidationError, match="min_objects"):
        WorldConfig(min_objects=3, max_objects=2)
    with pytest.raises(ValidationError, match="categories"):
        WorldConfig(categories=["circle", "blob"])
    with pytest.raises(ValidationError, match="splits"):
        WorldConfig(splits={"../train": 3})
