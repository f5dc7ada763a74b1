"""Rendering of proxy targets from tiny synthetic COCO datasets (built and written under tmp_path)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from sgt_pipeline.ingestion.errors import InvalidDatasetError
from sgt_pipeline.rendering import LABEL_KINDS, TARGET_KINDS, Palette, label_map, render_target, resize_target
from sgt_pipeline.rendering.targets import EDGE_THRESHOLD

HEIGHT, WIDTH = 32, 40

# pycocotools 2.0.11's decode trips a numpy 2 deprecation about __array__(copy=...); not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def _coco(dataset: dict) -> COCO:
    coco = COCO()
    coco.dataset = copy.deepcopy(dataset)
    coco.createIndex()
    return coco


def _rle(mask: np.ndarray, compressed: bool) -> dict:
    """COCO RLE of a boolean mask; uncompressed = list counts (how COCO stores crowd regions)."""
    if compressed:
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}
    flat = mask.astype(np.uint8).ravel(order="F")
    changes = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate([[0], changes, [flat.size]])).tolist()
    return {"size": [HEIGHT, WIDTH], "counts": ([0] if flat[0] else []) + runs}


def _box(top: int, left: int, bottom: int, right: int) -> np.ndarray:
    mask = np.zeros((HEIGHT, WIDTH), dtype=bool)
    mask[top:bottom, left:right] = True
    return mask


@pytest.fixture
def dataset(tmp_path) -> dict:
    rng = np.random.default_rng(0)
    image_path = tmp_path / "image.png"
    Image.fromarray(rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)).save(image_path)
    annotations = [
        # multi-part polygon (two rectangles), the largest: painted first
        {"id": 1, "category_id": 1, "iscrowd": 0, "area": 600.0,
         "segmentation": [[2, 2, 30, 2, 30, 20, 2, 20], [32, 22, 38, 22, 38, 30, 32, 30]]},
        # compressed RLE overlapping the polygon: smaller, so on top
        {"id": 2, "category_id": 2, "iscrowd": 0, "area": 120.0,
         "segmentation": _rle(_box(8, 10, 20, 20), compressed=True)},
        # uncompressed RLE crowd region
        {"id": 3, "category_id": 5, "iscrowd": 1, "area": 200.0,
         "segmentation": _rle(_box(18, 0, 28, 20), compressed=False)},
        # uncompressed RLE, non-crowd, equal area with id 5: ties painted by ascending id
        {"id": 4, "category_id": 2, "iscrowd": 0, "area": 16.0,
         "segmentation": _rle(_box(12, 12, 16, 16), compressed=False)},
        {"id": 5, "category_id": 1, "iscrowd": 0, "area": 16.0,
         "segmentation": [[13, 13, 19, 13, 19, 17, 13, 17]]},
    ]
    return {
        "images": [{"id": 7, "file_name": "image.png", "width": WIDTH, "height": HEIGHT,
                    "path": str(image_path)}],
        "annotations": [{**a, "image_id": 7, "bbox": [0, 0, 1, 1]} for a in annotations],
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}, {"id": 5, "name": "c"}],
    }


def _reference_labels(coco: COCO, image_id: int, include_crowd: bool, value) -> np.ndarray:
    """Independent composition: annToMask per annotation, painted in a loop by descending area."""
    annotations = [a for a in coco.imgToAnns[image_id] if include_crowd or not a["iscrowd"]]
    annotations.sort(key=lambda a: (-a["area"], a["id"]))
    labels = np.zeros((HEIGHT, WIDTH), dtype=np.int64)
    for k, annotation in enumerate(annotations, start=1):
        labels[coco.annToMask(annotation) > 0] = value(k, annotation)
    return labels


def _paint(labels: np.ndarray, colors: dict) -> np.ndarray:
    rgb = np.zeros((*labels.shape, 3), dtype=np.uint8)
    for label, color in colors.items():
        rgb[labels == label] = color
    return rgb


@pytest.mark.parametrize("include_crowd", [False, True])
def test_instance_matches_independent_composition(dataset, include_crowd):
    coco = _coco(dataset)
    expected = _reference_labels(coco, 7, include_crowd, lambda k, a: k)
    rendered = render_target("instance", coco, 7, include_crowd=include_crowd)
    colors = Palette.default(int(expected.max())).colors
    assert rendered.shape == (HEIGHT, WIDTH, 3) and rendered.dtype == np.uint8
    assert np.array_equal(rendered, _paint(expected, dict(enumerate(colors))))
    assert np.array_equal(label_map("instance", coco, 7, include_crowd=include_crowd), expected)


def test_instance_order_crowd_and_overlap(dataset):
    coco = _coco(dataset)
    labels = label_map("instance", coco, 7)
    assert labels[10, 15] == 2  # RLE (2nd painted) covers the polygon (1st)
    assert labels[12, 12] == 3 and labels[14, 14] == 4  # equal areas: id 4, then id 5 on top
    assert labels[25, 35] == 1  # second polygon part shares the instance label
    assert labels[25, 5] == 0  # crowd not painted by default
    assert set(np.unique(labels)) == {0, 1, 2, 3, 4}
    assert label_map("instance", coco, 7, include_crowd=True)[25, 5] > 0


def test_semantic_uses_category_color_field_and_includes_crowd(dataset):
    colors = {1: [200, 10, 10], 2: [10, 200, 10], 5: [10, 10, 200]}
    for category in dataset["categories"]:
        category["color"] = colors[category["id"]]
    coco = _coco(dataset)
    expected = _reference_labels(coco, 7, True, lambda k, a: a["category_id"])
    rendered = render_target("semantic", coco, 7)
    assert np.array_equal(rendered, _paint(expected, {0: [0, 0, 0], **colors}))
    assert tuple(rendered[25, 5]) == (10, 10, 200)  # crowd region keeps its category


def test_semantic_without_color_uses_project_palette_by_category_id(dataset):
    coco = _coco(dataset)
    expected = _reference_labels(coco, 7, True, lambda k, a: a["category_id"])
    sequence = Palette.default(3).colors  # categories 1, 2, 5 -> project colours 1, 2, 3
    rendered = render_target("semantic", coco, 7)
    assert np.array_equal(rendered, _paint(expected, {0: sequence[0], 1: sequence[1], 2: sequence[2], 5: sequence[3]}))
    assert np.array_equal(label_map("semantic", coco, 7), expected)


def test_semantic_target_is_not_the_input_image(dataset):
    coco = _coco(dataset)
    for kind in ("semantic", "instance", "panoptic"):
        assert not np.array_equal(render_target(kind, coco, 7), render_target("reconstruction", coco, 7))
    assert np.array_equal(render_target("reconstruction", coco, 7), np.asarray(Image.open(dataset["images"][0]["path"])))


def test_panoptic_without_panoptic_data_is_every_instance_including_crowd(dataset):
    coco = _coco(dataset)
    expected = _reference_labels(coco, 7, True, lambda k, a: k)
    assert np.array_equal(label_map("panoptic", coco, 7), expected)
    assert np.array_equal(render_target("panoptic", coco, 7), render_target("instance", coco, 7, include_crowd=True))


def test_panoptic_from_png_and_segments_info(dataset, tmp_path):
    ids = np.zeros((HEIGHT, WIDTH), dtype=np.int64)  # 0 = void
    ids[:, :20] = 70000  # stuff, largest
    ids[5:15, 22:30] = 1000  # thing
    ids[20:24, 22:26] = 5  # small thing
    ids[28:, 30:] = 99  # not listed in segments_info -> background
    png = np.stack([ids % 256, ids // 256 % 256, ids // 65536], axis=-1).astype(np.uint8)
    Image.fromarray(png).save(tmp_path / "pan.png")
    image = dataset["images"][0]
    image["panoptic_path"] = str(tmp_path / "pan.png")
    image["segments_info"] = [
        {"id": 5, "category_id": 1, "iscrowd": 0, "area": 16, "bbox": [22, 20, 4, 4]},
        {"id": 70000, "category_id": 2, "iscrowd": 0, "area": 640, "bbox": [0, 0, 20, 32]},
        {"id": 1000, "category_id": 1, "iscrowd": 1, "area": 80, "bbox": [22, 5, 8, 10]},
    ]
    coco = _coco(dataset)
    expected = np.select([ids == 70000, ids == 1000, ids == 5], [1, 2, 3], 0)
    assert np.array_equal(label_map("panoptic", coco, 7), expected)
    assert np.array_equal(render_target("panoptic", coco, 7), _paint(expected, dict(enumerate(Palette.default(3).colors))))


def test_depth_is_normalised_near_bright(dataset, tmp_path):
    depth = np.tile(np.linspace(1000, 5000, WIDTH).astype(np.uint16), (HEIGHT, 1))
    Image.fromarray(depth).save(tmp_path / "depth.png")
    dataset["images"][0]["depth_path"] = str(tmp_path / "depth.png")
    rendered = render_target("depth", _coco(dataset), 7)
    d = depth.astype(np.float64)
    expected = np.rint(255 * (d.max() - d) / (d.max() - d.min())).astype(np.uint8)
    assert rendered.dtype == np.uint8 and rendered.shape == (HEIGHT, WIDTH, 3)
    assert np.array_equal(rendered, np.repeat(expected[..., None], 3, axis=2))
    assert rendered[0, 0, 0] == 255 and rendered[0, -1, 0] == 0
    Image.fromarray(np.full((HEIGHT, WIDTH), 777, np.uint16)).save(tmp_path / "depth.png")
    assert not render_target("depth", _coco(dataset), 7).any()  # constant depth -> zeros


def test_edge_is_thresholded_sobel_of_the_image(dataset, tmp_path):
    grey = np.full((HEIGHT, WIDTH), 50, dtype=np.uint8)
    grey[:, 20:] = 150  # strong vertical step: edge on both sides of it
    grey[16:, :10] = 60  # a 10-level step: below the threshold
    Image.fromarray(grey).save(tmp_path / "image.png")  # mode L
    rendered = render_target("edge", _coco(dataset), 7)
    assert set(np.unique(rendered)) == {0, 255}
    edge_columns = np.flatnonzero(rendered[..., 0].any(axis=0))
    assert edge_columns.tolist() == [19, 20]
    assert rendered[:, 19].all()  # the frame is no edge, the step is edge over its full length
    assert EDGE_THRESHOLD == pytest.approx(102.0)


def test_reconstruction_converts_modes(dataset, tmp_path):
    path = tmp_path / "image.png"
    wide = np.tile(np.linspace(0, 65535, WIDTH).astype(np.uint16), (HEIGHT, 1))
    Image.fromarray(wide).save(path)  # 16-bit greyscale
    rendered = render_target("reconstruction", _coco(dataset), 7)
    assert rendered.dtype == np.uint8 and rendered.shape == (HEIGHT, WIDTH, 3)
    assert rendered[0, 0].tolist() == [0, 0, 0] and rendered[0, -1].tolist() == [255, 255, 255]
    rgba = np.zeros((HEIGHT, WIDTH, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 90, 10
    Image.fromarray(rgba).save(path)
    assert render_target("reconstruction", _coco(dataset), 7)[0, 0].tolist() == [90, 0, 0]


@pytest.mark.parametrize(
    ("kind", "mutate", "field"),
    [
        ("depth", lambda d, p: None, "depth_path"),
        ("bogus", lambda d, p: None, "kind"),
        ("reconstruction", lambda d, p: d["images"][0].update(path=str(p / "missing.png")), "path"),
        ("reconstruction", lambda d, p: d["images"][0].update(width=WIDTH + 1), "path"),
        ("instance", lambda d, p: d["annotations"][1]["segmentation"].update(size=[5, 5]), "segmentation"),
    ],
)
def test_bad_input_raises_invalid_dataset_error(dataset, tmp_path, kind, mutate, field):
    mutate(dataset, tmp_path)
    with pytest.raises(InvalidDatasetError) as raised:
        render_target(kind, _coco(dataset), 7)
    assert raised.value.record == "image id=7" and raised.value.field == field


def test_unknown_image_and_too_small_palette(dataset):
    coco = _coco(dataset)
    with pytest.raises(InvalidDatasetError, match="image id=8"):
        render_target("instance", coco, 8)
    with pytest.raises(InvalidDatasetError, match="not in the palette"):
        render_target("instance", coco, 7, Palette.default(2))


@pytest.mark.parametrize("kind", ["semantic", "instance", "panoptic"])
def test_resize_keeps_labels_exact(dataset, kind):
    coco = _coco(dataset)
    target = render_target(kind, coco, 7)
    colours = {tuple(c) for c in target.reshape(-1, 3)}
    for size in (16, (HEIGHT // 2, WIDTH // 2), 64, (17, 23)):
        resized = resize_target(target, size, kind)
        shape = (size, size) if isinstance(size, int) else size
        assert resized.shape == (*shape, 3) and resized.dtype == np.uint8
        assert {tuple(c) for c in resized.reshape(-1, 3)} <= colours
    assert np.array_equal(resize_target(target, (HEIGHT // 2, WIDTH // 2), kind), target[1::2, 1::2])
    labels = label_map(kind, coco, 7)
    assert np.array_equal(resize_target(labels, (HEIGHT * 2, WIDTH * 2), kind), labels.repeat(2, 0).repeat(2, 1))


def test_resize_edge_keeps_thin_edges_and_images_keep_dtype(dataset):
    edges = np.zeros((64, 64, 3), dtype=np.uint8)
    edges[:, 37] = 255  # a 1-pixel line
    small = resize_target(edges, 16, "edge")
    assert small.shape == (16, 16, 3) and set(np.unique(small)) == {0, 255}
    assert small[:, 9].all() and small.any(axis=(0, 2)).sum() == 1
    assert resize_target(edges[..., 0], 15, "edge")[:, 8].all()
    big = resize_target(edges, 128, "edge")
    assert big[:, 74:76].all() and big.any(axis=(0, 2)).sum() == 2
    coco = _coco(dataset)
    for kind in ("reconstruction", "edge"):
        out = resize_target(render_target(kind, coco, 7), (20, 25), kind)
        assert out.shape == (20, 25, 3) and out.dtype == np.uint8
    assert set(LABEL_KINDS) < set(TARGET_KINDS)
    with pytest.raises(ValueError):
        resize_target(edges, 16, "bogus")


def test_many_annotations_and_chunked_decoding_match_reference(dataset, monkeypatch):
    """300 instances (labels beyond uint8) decoded 7 masks at a time still compose exactly."""
    rng = np.random.default_rng(4)
    extra = []
    for index in range(300):
        top, left = rng.integers(0, HEIGHT - 3), rng.integers(0, WIDTH - 3)
        height, width = rng.integers(1, 4, 2)
        extra.append({"id": 100 + index, "image_id": 7, "category_id": 1, "iscrowd": 0, "bbox": [0, 0, 1, 1],
                      "area": float(height * width + rng.random()),
                      "segmentation": _rle(_box(top, left, top + height, left + width), compressed=index % 2 == 0)})
    dataset["annotations"] += extra
    coco = _coco(dataset)
    monkeypatch.setattr("sgt_pipeline.rendering.masks._DECODE_BUDGET_BYTES", 7 * HEIGHT * WIDTH)
    labels = label_map("instance", coco, 7)
    assert labels.dtype == np.int32 and labels.flags.c_contiguous
    expected = _reference_labels(coco, 7, False, lambda k, a: k)
    assert expected.max() > 255 and np.array_equal(labels, expected)
    rendered = render_target("instance", coco, 7)
    assert np.array_equal(Palette.default(int(expected.max())).decode(rendered), expected)


def test_annotation_without_area_is_named(dataset):
    del dataset["annotations"][1]["area"]
    with pytest.raises(InvalidDatasetError) as raised:
        render_target("instance", _coco(dataset), 7)
    assert raised.value.record == "annotation id=2" and raised.value.field == "area"
