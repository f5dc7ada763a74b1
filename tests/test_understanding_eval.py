"""Held-out understanding questions (COCO -> count / color / POPE / relation / depth), scoring and POPE metrics."""

from __future__ import annotations

import contextlib
import io
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from coco_fixture import write_coco_fixture
from pycocotools.coco import COCO

from sgt_pipeline.evaluation.pope import (
    margin_auroc,
    margin_word_spread,
    pope_metrics,
    pope_table,
    yes_no_margins,
)
from sgt_pipeline.evaluation.questions import (
    POPE_SETTINGS,
    QuestionConfig,
    build_questions,
)
from sgt_pipeline.evaluation.understanding import (
    evaluate_understanding,
    image_array,
    score_questions,
    shuffled_rows,
    understanding_metrics,
)
from sgt_pipeline.ingestion.tables import index_coco
from sgt_pipeline.world import WorldConfig, generate_world
from sgt_pipeline.world.generate import image_rng
from sgt_pipeline.world.language import plural, vocabulary, words_of
from sgt_pipeline.world.scene import sample_scene

SPLITS = {"train": 30, "val": 20}
RELATION = re.compile(r"^is (the [a-z ]+?) (left of|right of|above|below|in front of|behind) (the [a-z ]+)\?$")


def _load(path: str) -> COCO:
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints while indexing
        return COCO(path)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    config = WorldConfig(root=str(tmp_path_factory.mktemp("world") / "shapes"), splits=SPLITS)
    manifest = generate_world(config, progress=False)
    cocos = {split: _load(manifest["splits"][split]["instances_json"]) for split in SPLITS}
    questions = {split: build_questions(coco) for split, coco in cocos.items()}
    return config, manifest, cocos, questions


def _scenes(config: WorldConfig, split: str) -> dict:
    """The ground-truth scenes, regenerated from the world's own random streams (ids continue across splits)."""
    first = 1 + sum(n for name, n in SPLITS.items() if list(SPLITS).index(name) < list(SPLITS).index(split))
    return {first + i: sample_scene(config, image_rng(config.seed, split, i, 0)) for i in range(SPLITS[split])}


def _find(ref: str, objects: list) -> object:
    words = ref.split()[1:]  # "the star" / "the red star"
    matches = [o for o in objects if o.category == words[-1] and (len(words) == 1 or o.color == words[0])]
    assert len(matches) == 1, ref
    return matches[0]


def _synthetic(images: dict[int, list[tuple]], names: list[str]) -> COCO:
    """A COCO of square objects: image_id -> [(category_id, x, y, size[, iscrowd])]."""
    anns, next_id = [], 1
    for image_id, objects in images.items():
        for category_id, x, y, s, *crowd in objects:
            anns.append({"id": next_id, "image_id": image_id, "category_id": category_id, "iscrowd": crowd[0] if crowd else 0,
                         "segmentation": [[x, y, x + s, y, x + s, y + s, x, y + s]], "area": s * s, "bbox": [x, y, s, s]})
            next_id += 1
    return index_coco({"images": [{"id": i, "file_name": f"{i}.png", "width": 64, "height": 64} for i in images],
                       "annotations": anns,
                       "categories": [{"id": k + 1, "name": n, "supercategory": "x"} for k, n in enumerate(names)]})


def _pope_world(n_images: int = 120, seed: int = 3) -> COCO:
    """Skewed category frequencies and co-occurrences, so popular / adversarial choices are non-trivial."""
    rng = np.random.default_rng(seed)
    weights = np.array([8, 6, 5, 4, 3, 2, 1, 1], float)
    images = {}
    for image_id in range(1, n_images + 1):
        cats = set(rng.choice(8, size=int(rng.integers(1, 5)), p=weights / weights.sum()) + 1)
        if 1 in cats:
            cats.add(5)  # 1 and 5 co-occur always
        images[image_id] = [(int(c), 4 * k, 4 * k, 3) for k, c in enumerate(sorted(cats))]
    return _synthetic(images, ["circle", "square", "triangle", "star", "diamond", "cross", "hexagon", "ring"])


class Oracle:
    """Scores 0 for the true answer and -inf otherwise; reads the image id from the pixels it is given."""

    def __init__(self, questions: pd.DataFrame):
        self.truth = {(i, q): a for i, q, a in zip(questions["image_id"], questions["question"], questions["answer"])}
        self.calls: list[int] = []

    def option_scores(self, images, questions, options):
        self.calls.append(len(questions))
        ids = [int(image[0, 0, 0]) + 256 * int(image[0, 0, 1]) for image in images]
        return [[0.0 if o == self.truth[(i, q)] else -np.inf for o in opts] for i, q, opts in zip(ids, questions, options)]


class RandomScorer:
    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)

    def option_scores(self, images, questions, options):
        return [list(self.rng.normal(size=len(opts))) for opts in options]


class SoftOracle(Oracle):
    """Probability 0.9 on the true answer about the image it is given; uniform about any other image."""

    def option_scores(self, images, questions, options):
        ids = [int(image[0, 0, 0]) + 256 * int(image[0, 0, 1]) for image in images]
        out = []
        for i, q, opts in zip(ids, questions, options):
            truth = self.truth.get((i, q))
            out.append([float(np.log(1 / len(opts))) if truth is None else
                        float(np.log(0.9 if o == truth else 0.1 / (len(opts) - 1))) for o in opts])
        return out


class QuestionOnly:
    """Scores from the question text alone, never the image."""

    def option_scores(self, images, questions, options):
        return [[-float(len(q) % 7 + k) for k, _ in enumerate(opts)] for q, opts in zip(questions, options)]


def _id_images(questions: pd.DataFrame) -> tuple[np.ndarray, dict[int, int]]:
    """Tiny images encoding their id, in reversed row order (so a wrong row lookup is caught)."""
    ids = sorted(set(questions["image_id"]), reverse=True)
    images = np.zeros((len(ids), 2, 2, 3), np.uint8)
    for row, image_id in enumerate(ids):
        images[row, ..., 0], images[row, ..., 1] = image_id % 256, image_id // 256
    return images, {image_id: row for row, image_id in enumerate(ids)}


# --- POPE sampling ------------------------------------------------------------------------------------

def test_pope_sampling_properties():
    coco = _pope_world()
    questions = build_questions(coco, QuestionConfig(types=["pope"], seed=7))
    frequency = Counter(c for i in coco.imgs for c in {a["category_id"] for a in coco.imgToAnns[i]})
    pairs = Counter((g, c) for i in coco.imgs for g in {a["category_id"] for a in coco.imgToAnns[i]}
                    for c in {a["category_id"] for a in coco.imgToAnns[i]})
    name_to_id = {c["name"]: c["id"] for c in coco.cats.values()}
    assert set(questions["sampling"]) == set(POPE_SETTINGS)
    for (image_id, setting), part in questions.groupby(["image_id", "sampling"]):
        present = {a["category_id"] for a in coco.imgToAnns[image_id]}
        absent = sorted(set(coco.cats) - present)
        asked = {name_to_id[q.split()[-1].rstrip("?")]: a for q, a in zip(part["question"], part["answer"])}
        assert part["question"].is_unique
        yes = sorted(c for c, a in asked.items() if a == "yes")
        no = sorted(c for c, a in asked.items() if a == "no")
        assert len(yes) == len(no) == min(3, len(present), len(absent))  # balanced per image and setting
        assert set(yes) <= present and not set(no) & present  # negatives truly absent
        if setting == "popular":
            assert no == sorted(sorted(absent, key=lambda c: (-frequency[c], c))[: len(no)])
        if setting == "adversarial":
            score = {c: sum(pairs[(g, c)] for g in present) for c in absent}
            assert no == sorted(sorted(absent, key=lambda c: (-score[c], -frequency[c], c))[: len(no)])
    for setting, part in questions.groupby("sampling"):
        assert (part["answer"] == "yes").sum() == (part["answer"] == "no").sum()
    # positives are shared by the three settings, as in POPE
    positives = questions[questions["answer"] == "yes"].groupby("sampling")["question"].apply(list)
    assert positives["random"] == positives["popular"] == positives["adversarial"]


def test_pope_popular_and_adversarial_by_hand():
    # circle(1) in 4 images, square(2) in 4, triangle(3) in 5; image 9 has only a square.
    images = {1: [(1, 0, 0, 4), (2, 8, 8, 4)], 2: [(1, 0, 0, 4), (2, 8, 8, 4)], 3: [(1, 0, 0, 4), (2, 8, 8, 4)],
              4: [(3, 0, 0, 4), (4, 8, 8, 4)], 5: [(3, 0, 0, 4), (4, 8, 8, 4)], 6: [(3, 0, 0, 4)],
              7: [(3, 0, 0, 4)], 8: [(3, 0, 0, 4), (1, 8, 8, 4)], 9: [(2, 0, 0, 4)], 10: [(5, 0, 0, 4)]}
    coco = _synthetic(images, ["circle", "square", "triangle", "star", "cross"])
    questions = build_questions(coco, QuestionConfig(types=["pope"]))
    ninth = questions[(questions["image_id"] == 9) & (questions["answer"] == "no")].set_index("sampling")
    assert ninth.loc["popular", "question"] == "is there a triangle?"  # most frequent absent
    assert ninth.loc["adversarial", "question"] == "is there a circle?"  # co-occurs with the square
    assert ninth.loc["random", "question"] in {"is there a circle?", "is there a triangle?", "is there a star?",
                                               "is there a cross?"}


def test_questions_are_deterministic_by_seed(world):
    _, _, cocos, questions = world
    again = build_questions(cocos["val"])
    pd.testing.assert_frame_equal(questions["val"], again)
    other = build_questions(cocos["val"], QuestionConfig(seed=1))
    assert not questions["val"].equals(other)
    for frame in (questions["val"], other):
        assert not frame.duplicated(["image_id", "type", "sampling", "question"]).any()


# --- the shapes world: answers against the ground-truth scenes --------------------------------------------

def test_answers_match_the_ground_truth_scene(world):
    config, _, cocos, questions = world
    scenes, coco, table = _scenes(config, "val"), cocos["val"], questions["val"]
    assert set(table["type"]) == {"count", "color", "pope", "relation_2d", "depth_order"}
    gap = config.min_relation_offset * config.image_size
    for row in table.itertuples():
        objects = scenes[row.image_id].objects
        if row.type == "count":
            category = {plural(c): c for c in config.categories}[row.question.split()[2]]  # "how many crosses ..."
            truth = sum(o.category == category for o in objects)
            crowd_free = coco.getAnnIds(imgIds=[row.image_id], catIds=row.category_ids, iscrowd=False)
            assert row.answer == row.options[truth] and len(crowd_free) == truth
        elif row.type == "color":
            assert row.answer == _find("the " + row.question.split()[-1].rstrip("?"), objects).color
        elif row.type == "pope":
            category = row.question.split()[-1].rstrip("?")
            assert row.answer == ("yes" if any(o.category == category for o in objects) else "no")
        else:
            ref_a, word, ref_b = RELATION.match(row.question).groups()
            a, b = _find(ref_a, objects), _find(ref_b, objects)
            decoded = [coco.annToMask(coco.anns[i]).nonzero() for i in row.ann_ids]  # (ys, xs)
            if row.type == "relation_2d":
                axis = 0 if word in ("left of", "right of") else 1
                first = word in ("left of", "above")
                assert abs(a.centroid[axis] - b.centroid[axis]) >= gap
                assert row.answer == ("yes" if (a.centroid[axis] < b.centroid[axis]) == first else "no")
                centres = [decoded[k][1 - axis].mean() + 0.5 for k in (0, 1)]  # pycocotools' view agrees
                assert (centres[0] < centres[1]) == (a.centroid[axis] < b.centroid[axis])
            else:
                assert row.answer == ("yes" if (a.depth < b.depth) == (word == "in front of") else "no")
                assert [coco.anns[i]["depth"] for i in row.ann_ids] == [a.depth_value, b.depth_value]


def test_yes_no_types_are_balanced(world):
    _, _, _, questions = world
    for split_table in questions.values():
        for question_type in ("relation_2d", "depth_order"):
            answers = split_table.loc[split_table["type"] == question_type, "answer"]
            assert len(answers) and abs((answers == "yes").sum() - (answers == "no").sum()) <= 1


def test_only_shapes_world_words(world):
    config, manifest, _, questions = world
    paths = manifest["splits"]["val"]
    known = set(vocabulary(config))
    lines = Path(paths["vqa_jsonl"]).read_text().splitlines()
    known |= {w for line in lines for key in ("question", "answer") for w in words_of(json.loads(line)[key])}
    captions = json.loads(Path(paths["captions_json"]).read_text())["annotations"]
    known |= {w for c in captions for w in words_of(c["caption"])}
    used = {w for q in questions["val"]["question"] for w in words_of(q)}
    used |= {w for options in questions["val"]["options"] for o in options for w in words_of(o)}
    assert used <= known, used - known


def test_depth_falls_back_to_the_depth_map(world):
    _, manifest, _, questions = world
    paths = manifest["splits"]["val"]
    data = json.loads(Path(paths["instances_json"]).read_text())
    for ann in data["annotations"]:
        del ann["depth"]
    no_field = index_coco(data)
    config = QuestionConfig(types=["depth_order"])
    assert build_questions(no_field, config).empty  # no depth anywhere: no depth questions
    expected = questions["val"][questions["val"]["type"] == "depth_order"].reset_index(drop=True)
    from_dir = build_questions(no_field, config, depth_dir=paths["depth_dir"])
    for image in data["images"]:  # the record's depth_path (as ingestion's to_coco sets it) works too
        image["depth_path"] = str(Path(paths["depth_dir"]) / image["file_name"])
    from_record = build_questions(index_coco(data), config)
    for frame in (from_dir, from_record):
        assert frame[["image_id", "question", "answer"]].equals(expected[["image_id", "question", "answer"]])


def test_coco_like_data_without_colours_or_depth(tmp_path):
    coco = _load(write_coco_fixture(tmp_path, panoptic=False)["instances_json"])
    questions = build_questions(coco)
    assert set(questions["type"]) == {"count", "pope", "relation_2d"}  # no colour / depth fields in COCO
    counts = questions[questions["type"] == "count"]
    # image 632: a crowd "person" region beside a car -> the person count is undefined and not asked
    assert list(counts.loc[counts["image_id"] == 632, "question"]) == ["how many cars are there?"]
    assert set(counts["answer"]) == {"one"} and counts["options"].iloc[0] == ["zero", "one", "two"]
    pope = questions[(questions["type"] == "pope") & (questions["image_id"] == 632)]
    assert "is there a person?" in set(pope.loc[pope["answer"] == "yes", "question"])  # crowd is present


# --- scoring ----------------------------------------------------------------------------------------

def test_oracle_scores_one_everywhere_and_batches(world):
    _, _, _, questions = world
    table = questions["val"]
    images, rows = _id_images(table)
    oracle = Oracle(table)
    predictions, metrics = evaluate_understanding(oracle, table, images, rows, batch_size=64)
    assert predictions["correct"].all() and len(predictions) == len(table)
    for key, value in metrics.items():
        if key.endswith(("_acc", "_precision", "_recall", "_f1")) or key == "und/overall":
            assert value == 1.0, key
    assert metrics["und/pope_f1"] == 1.0 and metrics["und/pope_random_yes_ratio"] == 0.5
    for key in ("count_acc", "color_acc", "relation_2d_acc", "depth_order_acc", "count_majority", "pope_majority"):
        assert f"und/{key}" in metrics
    assert max(oracle.calls) <= 64
    unique = len(table.drop_duplicates(["image_id", "question"]))
    assert sum(oracle.calls) == unique < len(table)  # POPE positives repeat across settings: scored once


def test_random_model_is_near_chance(world):
    _, _, _, questions = world
    table = pd.concat(list(questions.values()), ignore_index=True)
    images, rows = _id_images(table)
    predictions, metrics = evaluate_understanding(RandomScorer(0), table, images, rows)
    assert (predictions["type"] == "pope").sum() >= 300
    for setting in POPE_SETTINGS:
        assert abs(metrics[f"und/pope_{setting}_acc"] - 0.5) < 0.1
    count = predictions[predictions["type"] == "count"]
    assert abs(metrics["und/count_acc"] - 1 / len(count["options"].iloc[0])) < 0.1
    assert metrics["und/count_acc"] < metrics["und/count_majority"]
    assert metrics["und/pope_majority"] == 0.5


def test_pope_metrics_by_hand():
    answers = ["yes", "yes", "yes", "no", "no", "no", "no", "no"]
    predicted = ["yes", "no", "yes", "yes", "no", "no", "no", "no"]  # tp 2, fn 1, fp 1, tn 4
    assert pope_metrics(answers, predicted) == pytest.approx(
        {"acc": 6 / 8, "precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "yes_ratio": 3 / 8})
    assert pope_metrics([True, False, True, False], [True, True, True, False]) == pytest.approx(
        {"acc": 0.75, "precision": 2 / 3, "recall": 1.0, "f1": 0.8, "yes_ratio": 0.75})
    assert pope_metrics(["yes", "no"], ["no", "no"]) == {
        "acc": 0.5, "precision": 0.0, "recall": 0.0, "f1": 0.0, "yes_ratio": 0.0}
    table = pope_table(pd.DataFrame({"sampling": ["random"] * 4 + ["popular"] * 4,
                                     "answer": ["yes", "yes", "no", "no"] * 2,
                                     "prediction": ["yes", "no", "no", "no", "yes", "yes", "yes", "no"]}))
    assert table.loc["random", "f1"] == pytest.approx(2 / 3) and table.loc["popular", "f1"] == pytest.approx(0.8)
    assert table.loc["mean", "acc"] == pytest.approx((0.75 + 0.75) / 2)


def test_threshold_free_pope_measures_by_hand():
    # AUROC of the margin: 3 of the 4 (yes, no) pairs ordered right, one tie (counts half).
    assert margin_auroc(["yes", "yes", "no", "no"], [2.0, 0.5, 0.5, -1.0]) == pytest.approx(3.5 / 4)
    assert margin_auroc(["yes", "no"], [-1.0, -1.0]) == 0.5  # a constant margin says nothing
    assert np.isnan(margin_auroc(["no", "no"], [0.0, 1.0]))
    frame = pd.DataFrame({"image_id": [1, 1, 1, 2, 2], "question": ["a", "b", "a", "c", "d"],
                          "options": [["yes", "no"], ["no", "yes"], ["yes", "no"], ["yes", "no"], ["yes", "no"]],
                          "scores": [[-1.0, -2.0], [-1.0, -3.0], [-1.0, -2.0], [-2.0, -2.0], [-2.0, -2.0]]})
    margins = yes_no_margins(frame)
    assert margins.tolist() == [1.0, -2.0, 1.0, 0.0, 0.0]  # option order is read, not assumed
    # image 1: distinct questions a, b -> margins 1, -2 (std 1.5); image 2: both 0
    assert margin_word_spread(frame, margins) == pytest.approx(0.75)


def test_shuffled_image_control_separates_a_model_that_reads_the_image(world):
    _, _, _, questions = world
    table = questions["val"]
    images, rows = _id_images(table)
    moved = shuffled_rows(rows, seed=1)
    assert set(moved) == set(rows) and sorted(moved.values()) == sorted(rows.values())
    assert all(moved[i] != rows[i] for i in rows)
    _, reads = evaluate_understanding(SoftOracle(table), table, images, rows, shuffled_images=True)
    _, ignores = evaluate_understanding(QuestionOnly(), table, images, rows, shuffled_images=True)
    for question_type in ("count", "pope", "relation_2d"):
        assert reads[f"und/{question_type}_nll"] < reads[f"und/{question_type}_nll_shuffled"]
        assert ignores[f"und/{question_type}_nll"] == ignores[f"und/{question_type}_nll_shuffled"]
    assert reads["und/pope_auroc"] == 1.0 and reads["und/pope_margin_spread"] > 0


def test_understanding_metrics_by_hand():
    rows = [("count", None, "one", "one"), ("count", None, "one", "two"), ("count", None, "two", "two"),
            ("count", None, "one", "one")]
    rows += [("pope", s, a, p) for s in POPE_SETTINGS
             for a, p in [("yes", "yes"), ("yes", "yes"), ("no", "yes"), ("no", "no")]]
    frame = pd.DataFrame(rows, columns=["type", "sampling", "answer", "prediction"])
    frame["correct"] = frame["answer"] == frame["prediction"]
    metrics = understanding_metrics(frame)
    assert metrics["und/count_acc"] == 0.75 and metrics["und/count_majority"] == 0.75
    assert metrics["und/pope_adversarial_precision"] == pytest.approx(2 / 3)
    assert metrics["und/pope_f1"] == pytest.approx(0.8) and metrics["und/pope_acc"] == 0.75
    assert metrics["und/overall"] == 0.75 and "und/color_acc" not in metrics


def test_image_array_and_bad_scores(world):
    _, manifest, cocos, questions = world
    images, rows = image_array(cocos["val"], manifest["splits"]["val"]["images_dir"])
    assert images.shape == (SPLITS["val"], 64, 64, 3) and images.dtype == np.uint8 and len(rows) == SPLITS["val"]

    class Short:
        def option_scores(self, images, questions, options):
            return [[0.0] for _ in options]

    with pytest.raises(ValueError, match="one score per option"):
        score_questions(Short(), questions["val"], images, rows)
