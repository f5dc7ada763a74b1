"""Shape outlines as polygons, and their rasterisation by pycocotools itself.

Every object is a polygon (a circle is a 32-gon), rasterised with the same pycocotools calls that
``COCO.annToMask`` uses, so an annotation decodes to exactly the pixels that were painted.
"""

from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils

CIRCLE_VERTICES = 32
STAR_INNER_RATIO = 0.45  # inner / outer radius of the five-pointed star
DIAMOND_WIDTH_RATIO = 0.6  # half-width / half-height; < 1 so a diamond never looks like a turned square
CROSS_ARM_RATIO = 0.35  # half the arm width / circumradius
POLYGON_DECIMALS = 2  # coordinates are rounded *before* rasterising, so the JSON holds what was drawn


def _regular(n_vertices: int, phase: float = 0.0) -> np.ndarray:
    angles = phase + 2 * np.pi * np.arange(n_vertices) / n_vertices
    return np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _star() -> np.ndarray:
    radii = np.where(np.arange(10) % 2 == 0, 1.0, STAR_INNER_RATIO)
    return _regular(10, phase=-np.pi / 2) * radii[:, None]


def _diamond() -> np.ndarray:
    return np.array([[0.0, -1.0], [DIAMOND_WIDTH_RATIO, 0.0], [0.0, 1.0], [-DIAMOND_WIDTH_RATIO, 0.0]])


def _cross() -> np.ndarray:
    # A plus sign whose arm tips touch the unit circle.
    a = CROSS_ARM_RATIO
    b = float(np.sqrt(1.0 - a * a))
    quarter = [[a, -b], [a, -a], [b, -a]]
    points = []
    for turn in range(4):  # rotate the quarter outline by 90 degrees four times
        c, s = np.cos(turn * np.pi / 2), np.sin(turn * np.pi / 2)
        points += [[c * x - s * y, s * x + c * y] for x, y in quarter]
    return np.array(points)


# Unit outlines (circumradius 1, centred at the origin), vertices in a consistent winding order.
_UNIT_OUTLINES: dict[str, np.ndarray] = {
    "circle": _regular(CIRCLE_VERTICES),
    "square": _regular(4, phase=np.pi / 4),
    "triangle": _regular(3, phase=-np.pi / 2),
    "star": _star(),
    "diamond": _diamond(),
    "hexagon": _regular(6),
    "cross": _cross(),
}


def outline_offsets(category: str, radius: float, angle: float) -> np.ndarray:
    """Vertices (n, 2) of a category's outline, scaled and rotated, relative to its centre."""
    c, s = np.cos(angle), np.sin(angle)
    rotation = np.array([[c, -s], [s, c]])
    return (_UNIT_OUTLINES[category] @ rotation.T) * radius


def place_polygon(offsets: np.ndarray, image_size: int, rng: np.random.Generator) -> list[float]:
    """Pick a centre that keeps every vertex inside the image; return the flat COCO polygon [x1, y1, ...]."""
    margin = 0.5
    low = margin - offsets.min(axis=0)
    high = image_size - margin - offsets.max(axis=0)
    centre = rng.uniform(low, np.maximum(low, high))
    polygon = np.round(offsets + centre, POLYGON_DECIMALS)
    return [float(v) for v in polygon.reshape(-1)]


def rasterise_polygon(polygon: list[float], image_size: int) -> np.ndarray:
    """Boolean mask of a flat polygon, exactly as ``COCO.annToMask`` would decode it."""
    rle = mask_utils.merge(mask_utils.frPyObjects([polygon], image_size, image_size))
    return mask_utils.decode(rle).astype(bool)
