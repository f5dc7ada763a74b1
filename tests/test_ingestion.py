"""Ingestion: real-COCO-like data ingests exactly; every kind of bad input is refused precisely."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from coco_fixture import H, IMAGE_IDS, W, write_coco_fixture
from sgt_pipeline.ingestion import InvalidDatasetError, ingest, report_markdown, to_coco


@pytest.fixture(scope="module")
def fixture_dir(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("coco")
    return root, write_coco_fixture(root)


@pytest.fixture(scope="module")
def ingested(fixture_dir):
    return ingest(**fixture_dir[1], split="val")


def test_real_coco_traits_ingest(ingested):
    t = ingested.tables
    assert sorted(t["images"]["image_id"]) == IMAGE_IDS  # non-contiguous ids kept as they are
    assert set(t["images"]["mode"]) == {"RGB", "L", "RGBA", "I;16"}  # converted later, not rejected
    assert t["images"]["decodes"].all()
    assert sorted(t["categories"]["category_id"]) == [1, 3, 18, 90, 184]  # gaps + panoptic stuff
    colors = dict(zip(t["categories"]["category_id"], t["categories"]["color"], strict=True))
    assert json.loads(colors[184]) == [107, 142, 35]
    assert set(t["annotations"]["seg_format"]) == {"polygon", "compressed_rle", "rle"}
    assert t["annotations"].loc[t["annotations"]["ann_id"] == 3001, "iscrowd"].item() == 1
    assert len(t["captions"]) == 4 and len(t["qa"]) == 4 and len(t["segments"]) == 8
    assert ingested.report["success"]
    assert "PASSED" in report_markdown(ingested.report)


def test_to_coco_decodes_the_same_masks_as_the_source(fixture_dir, ingested):
    original = COCO(fixture_dir[1]["instances_json"])
    rebuilt = to_coco(ingested.tables)
    assert sorted(rebuilt.getAnnIds()) == sorted(original.getAnnIds())
    for ann_id in original.getAnnIds():
        expected = original.annToMask(original.anns[ann_id])
        np.testing.assert_array_equal(rebuilt.annToMask(rebuilt.anns[ann_id]), expected)
    image = rebuilt.imgs[139]
    assert Path(image["path"]).is_file()
    assert [s["category_id"] for s in image["segments_info"]] == [184, 3]


# Each bad input: how to break the fixture, and what the error must name (record, field).
Mutation = Callable[[dict, dict], None]


def _instances(fn: Callable[[dict], None]) -> Mutation:
    def mutate(data: dict, paths: dict) -> None:
        fn(data)
    return mutate


def _truncate(data, paths):
    text = Path(paths["instances_json"]).read_text()
    Path(paths["instances_json"]).write_text(text[: len(text) // 2])


def _remove_image_file(data, paths):
    next(Path(paths["images_dir"]).glob("000000000285.*")).unlink()


def _resize_image_file(data, paths):
    path = next(Path(paths["images_dir"]).glob("000000000632.*"))
    Image.new("RGB", (W + 3, H)).save(path, format="PNG")


def _corrupt_image_file(data, paths):
    path = next(Path(paths["images_dir"]).glob("000000000724.*"))
    path.write_bytes(path.read_bytes()[:40])


def _empty_caption(data, paths):
    captions = json.loads(Path(paths["captions_json"]).read_text())
    captions["annotations"][1]["caption"] = "   "
    Path(paths["captions_json"]).write_text(json.dumps(captions))


def _empty_answer(data, paths):
    lines = Path(paths["vqa_jsonl"]).read_text().splitlines()
    record = json.loads(lines[2])
    record["answer"] = ""
    lines[2] = json.dumps(record)
    Path(paths["vqa_jsonl"]).write_text("\n".join(lines) + "\n")


def _ann(ann_id: int, data: dict) -> dict:
    return next(a for a in data["annotations"] if a["id"] == ann_id)


def _img(image_id: int, data: dict) -> dict:
    return next(i for i in data["images"] if i["id"] == image_id)


BAD_INPUTS: dict[str, tuple[Mutation, str, str]] = {
    "truncated JSON": (_truncate, "line 1 column", "<json>"),
    "missing key": (_instances(lambda d: _ann(2001, d).pop("bbox")), "annotation id=2001", "bbox"),
    "missing top-level key": (_instances(lambda d: d.pop("categories")), "<top level>", "categories"),
    "wrong type": (_instances(lambda d: _img(632, d).update(width="48")), "image id=632", "width"),
    "wrong type of area": (_instances(lambda d: _ann(1002, d).update(area=None)),
                           "annotation id=1002", "area"),
    "duplicate image id": (_instances(lambda d: _img(285, d).update(id=139)), "image id=139", "id"),
    "duplicate annotation id": (_instances(lambda d: _ann(2002, d).update(id=2001)),
                                "annotation id=2001", "id"),
    "annotation to missing image": (_instances(lambda d: _ann(4001, d).update(image_id=999)),
                                    "annotation id=4001", "image_id"),
    "annotation to missing category": (_instances(lambda d: _ann(3002, d).update(category_id=2)),
                                       "annotation id=3002", "category_id"),
    "bbox outside the image": (_instances(lambda d: _ann(1002, d).update(bbox=[30, 10, 25, 5])),
                               "annotation id=1002", "bbox"),
    "bbox with negative size": (_instances(lambda d: _ann(3002, d).update(bbox=[30, 5, -4, 17])),
                                "annotation id=3002", "bbox"),
    "zero area": (_instances(lambda d: _ann(4001, d).update(area=0)), "annotation id=4001", "area"),
    "polygon with 2 points": (_instances(lambda d: _ann(1002, d).update(segmentation=[[1, 1, 9, 9]])),
                              "annotation id=1002", "segmentation"),
    "RLE size differs": (_instances(lambda d: _ann(2002, d)["segmentation"].update(size=[H, W + 1])),
                         "annotation id=2002", "segmentation"),
    "missing image file": (_remove_image_file, "image id=285", "file_name"),
    "image does not decode": (_corrupt_image_file, "image id=724", "file_name"),
    "file_name with ..": (_instances(lambda d: _img(285, d).update(file_name="../secret.png")),
                          "image id=285", "file_name"),
    "absolute file_name": (_instances(lambda d: _img(285, d).update(file_name="/etc/passwd")),
                           "image id=285", "file_name"),
    "image size differs": (_resize_image_file, "image id=632", "width"),
    "empty dataset": (_instances(lambda d: d.update(images=[], annotations=[])), "<top level>", "images"),
    "empty caption": (_empty_caption, "caption id=7001", "caption"),
    "empty answer": (_empty_answer, "question id=92", "answer"),
    "caption of missing image": (None, "", ""),  # filled below
}


def _caption_to_missing_image(data, paths):
    captions = json.loads(Path(paths["captions_json"]).read_text())
    captions["annotations"][0]["image_id"] = 5
    Path(paths["captions_json"]).write_text(json.dumps(captions))


BAD_INPUTS["caption of missing image"] = (_caption_to_missing_image, "caption id=7000", "image_id")


def break_fixture(root: Path, name: str) -> dict:
    """Write a fresh fixture under ``root`` and apply the named bad input; returns ingest kwargs."""
    paths = write_coco_fixture(root)
    mutate = BAD_INPUTS[name][0]
    data = json.loads(Path(paths["instances_json"]).read_text())
    mutate(data, paths)
    if mutate.__name__ == "mutate":  # mutations of the instances dict are written back
        Path(paths["instances_json"]).write_text(json.dumps(data))
    return paths


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_input_is_refused_naming_file_record_and_field(tmp_path, name):
    paths = break_fixture(tmp_path, name)
    _, record, field = BAD_INPUTS[name]
    with pytest.raises(InvalidDatasetError) as caught:
        ingest(**paths, split="val")
    err = caught.value
    message = str(err)
    assert record in message and f"field '{field}'" in message, message
    assert str(tmp_path) in err.file  # names the file it read


def test_every_problem_is_reported_not_just_the_first(tmp_path):
    paths = write_coco_fixture(tmp_path)
    data = json.loads(Path(paths["instances_json"]).read_text())
    _ann(1002, data)["area"] = 0
    _ann(4001, data)["image_id"] = 999
    Path(paths["instances_json"]).write_text(json.dumps(data))
    with pytest.raises(InvalidDatasetError) as caught:
        ingest(**paths, split="val")
    records = {p["record"] for p in caught.value.problems}
    assert {"annotation id=1002", "annotation id=4001"} <= records
    report = report_markdown(caught.value.report)
    assert "FAILED" in report and "annotation id=4001" in report


def test_grayscale_rgba_and_16_bit_images_are_converted_to_rgb(fixture_dir, ingested):
    from sgt_pipeline.rendering import render_target

    coco = to_coco(ingested.tables)
    for image_id in IMAGE_IDS:
        record = coco.imgs[image_id]
        with Image.open(record["path"]) as source:
            mode, raw = source.mode, np.asarray(source)
        rgb = render_target("reconstruction", coco, image_id)
        assert rgb.shape == (H, W, 3) and rgb.dtype == np.uint8, mode
        if mode == "L":
            np.testing.assert_array_equal(rgb, np.repeat(raw[..., None], 3, axis=2))
        elif mode == "RGBA":
            np.testing.assert_array_equal(rgb, raw[..., :3])
        elif mode == "I;16":  # 0..65535 scaled to 0..255 (the fixture wrote v * 257)
            np.testing.assert_array_equal(rgb[..., 0], (raw // 257).astype(np.uint8))


def test_render_target_reads_a_plain_pycocotools_coco_with_images_dir(fixture_dir, ingested):
    from sgt_pipeline.rendering import render_target

    paths = fixture_dir[1]
    plain = COCO(paths["instances_json"])  # no "path" fields: straight from the JSON
    for kind in ("reconstruction", "instance", "semantic"):
        expected = render_target(kind, to_coco(ingested.tables), 285)
        got = render_target(kind, plain, 285, images_dir=paths["images_dir"])
        if kind != "semantic":  # the ingested categories carry panoptic colours, the plain JSON none
            np.testing.assert_array_equal(got, expected)
        assert got.shape == (H, W, 3)
