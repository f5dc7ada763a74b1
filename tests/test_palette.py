"""Palette: the project colour sequence, label <-> colour round trips, noisy decoding, persistence."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from sgt_pipeline.rendering import Palette
from sgt_pipeline.rendering.palette import project_colors

COCO_THING_IDS = [i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)]


def test_project_sequence_is_fixed_distinct_and_starts_black():
    colors = project_colors()
    assert colors.shape[0] >= 256 and colors.dtype == np.uint8
    assert colors[0].tolist() == [0, 0, 0] and colors[1].tolist() == [255, 255, 255]
    assert len(np.unique(colors, axis=0)) == len(colors)
    assert np.array_equal(Palette.default(40).colors, colors[:41])
    assert Palette.default(40).labels.tolist() == list(range(41))


@pytest.mark.parametrize(("n", "expected"), [(8, 180.7), (16, 120.2), (32, 91.5), (80, 61.3), (133, 48.1)])
def test_min_distance_of_default_sizes(n, expected):
    # Figures stated in the palette module's docstring.
    assert Palette.default(n).min_distance == pytest.approx(expected, abs=0.05)


def test_prefixes_are_well_spread():
    distances = [Palette.default(n).min_distance for n in range(1, 200)]
    assert all(a >= b for a, b in zip(distances, distances[1:]))  # greedy: never increases
    assert Palette.default(255).min_distance > 35


@pytest.mark.parametrize(
    "palette",
    [Palette.default(50), Palette.for_categories([{"id": i} for i in COCO_THING_IDS])],
    ids=["default-50", "coco-80-categories"],
)
def test_encode_decode_round_trip_is_exact(palette):
    rng = np.random.default_rng(1)
    labels = rng.choice(palette.labels, size=(48, 64))
    rgb = palette.encode(labels)
    assert rgb.shape == (48, 64, 3) and rgb.dtype == np.uint8
    assert np.array_equal(palette.decode(rgb), labels)
    assert np.array_equal(palette.colors_for(labels), rgb)


def test_for_categories_uses_color_field_only_when_all_have_one():
    with_colors = [{"id": 3, "color": [1, 2, 3]}, {"id": 1, "color": [9, 9, 9]}]
    palette = Palette.for_categories(with_colors)
    assert palette.labels.tolist() == [0, 1, 3]
    assert palette.colors.tolist() == [[0, 0, 0], [9, 9, 9], [1, 2, 3]]
    partial = Palette.for_categories([{"id": 3, "color": [1, 2, 3]}, {"id": 1}])
    assert np.array_equal(partial.colors, project_colors()[:3])
    with pytest.raises(ValueError, match="reserved"):
        Palette.for_categories([{"id": 0}])


def test_decode_under_gaussian_noise_recovers_labels():
    rng = np.random.default_rng(2)
    palette = Palette.for_instances(12)
    labels = np.repeat(np.repeat(rng.integers(0, 13, (16, 16)), 16, 0), 16, 1)  # 256 x 256 blobs
    noisy = palette.encode(labels) + rng.normal(0, 20, (256, 256, 3))
    for generated in (noisy, np.clip(np.rint(noisy), 0, 255).astype(np.uint8)):
        assert (palette.decode(generated) == labels).mean() >= 0.99


def test_decode_is_fast_on_a_noisy_256_image_with_many_colours():
    rng = np.random.default_rng(3)
    palette = Palette.default(133)
    noisy = np.clip(palette.encode(rng.integers(0, 134, (256, 256))) + rng.normal(0, 20, (256, 256, 3)), 0, 255)
    image = noisy.astype(np.uint8)
    start = time.perf_counter()
    palette.decode(image)
    assert time.perf_counter() - start < 1.0


def test_decode_is_nearest_with_ties_to_the_lower_label():
    palette = Palette([0, 4, 7, 9], [[0, 0, 0], [100, 0, 0], [100, 0, 0], [200, 0, 0]])  # 4 and 7 collide
    image = np.array([[[100, 0, 0], [150, 0, 0], [49, 0, 0], [51, 5, 5], [255, 255, 255]]], dtype=np.uint8)
    # (150,0,0) is equidistant from labels 4/7 and 9 -> 4; 49 -> black; 51 -> label 4; white -> 9
    assert palette.decode(image).tolist() == [[4, 4, 0, 4, 9]]


def test_encode_rejects_labels_outside_the_palette():
    palette = Palette.for_categories([{"id": 2}, {"id": 5}])
    with pytest.raises(ValueError, match=r"\[3\]"):
        palette.encode(np.array([[0, 2, 3]]))
    with pytest.raises(ValueError):
        palette.encode(np.array([[6]]))


def test_to_dict_from_dict_round_trip_through_json():
    palette = Palette.for_categories([{"id": i, "color": [i, 2 * i, 3 * i]} for i in (1, 5, 80)])
    restored = Palette.from_dict(json.loads(json.dumps(palette.to_dict())))
    assert restored == palette
    assert np.array_equal(restored.colors, palette.colors) and np.array_equal(restored.labels, palette.labels)
    assert Palette.from_dict(Palette.default(20).to_dict()) == Palette.default(20)
