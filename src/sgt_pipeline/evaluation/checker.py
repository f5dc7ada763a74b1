"""An independent, classical GenEval checker for shapes-world images: no learned parts at all.

Detection in three steps, each relying only on facts the world guarantees (config.py, background.py):
  1. colour: a pixel belongs to an object if some channel is bright (backgrounds stay <= 160 in every
     channel, object colours have a channel >= 200) and it is near a palette colour; it takes the nearest;
  2. objects: connected components of each colour (8-connected, holes filled, tiny specks dropped);
  3. shape: each component is compared with every category's unit outline, centred on the component's
     centroid, scaled to its area and swept over rotations; the best intersection-over-union wins. A
     component that fits no outline well, or that a plain ellipse fits clearly better (a blurry blob
     resembles a diamond), is not an object.
``score`` then applies GenEval's rules to the detections of one image; ``geneval_scores`` aggregates.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
from scipy import ndimage

from sgt_pipeline.world.config import WorldConfig
from sgt_pipeline.world.shapes import outline_offsets

from .geneval import TASKS, PromptSpec, relation_holds

MIN_OBJECT_CHANNEL = 180  # between the background's ceiling (160) and the palette's floor (200)
MAX_COLOR_DISTANCE = 100.0  # RGB distance to the nearest palette colour; farther pixels are no colour of ours
MIN_FIT = 0.75  # IoU below which a blob is no shape (clean renders fit >= 0.89, blurred ones >= 0.81)
# Components smaller than this share of the smallest possible object are specks, not objects.
MIN_AREA_FRACTION = 0.5
ANGLE_STEP = np.deg2rad(3.0)  # rotation sweep; at radius 16 px a 1.5 degree error moves a tip by < 0.5 px
SCALES = (0.92, 1.0, 1.08)  # around the area-derived radius: absorbs rasterisation and blur
# Outlines no category has: a smooth elongated blob (what a blurry generator often paints) fits a
# diamond or a square fairly well, but an ellipse better; such a blob is then no object at all.
DISTRACTOR_ASPECTS = (0.4, 0.55, 0.7, 0.85)
DISTRACTOR_MARGIN = 0.02  # IoU an ellipse must win by (occluded diamonds and squares lose by less)
# Rotational symmetry of each outline (radians); the sweep only needs one period.
_SYMMETRY = {"circle": 2 * np.pi, "square": np.pi / 2, "triangle": 2 * np.pi / 3, "star": 2 * np.pi / 5,
             "diamond": np.pi, "hexagon": np.pi / 3, "cross": np.pi / 2,
             **{f"ellipse_{aspect}": np.pi for aspect in DISTRACTOR_ASPECTS}}
# Raster of each unit outline over [-_LOOKUP_EXTENT, _LOOKUP_EXTENT]^2: cells of 0.2 px at radius 16 px.
_LOOKUP_SIZE = 481
_LOOKUP_EXTENT = 3.0
_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


@dataclass(frozen=True)
class Detection:
    category: str
    color: str
    centroid: tuple[float, float]  # (x, y), pixel-centre coordinates as in the world's annotations
    area: int  # pixels
    fit: float  # IoU with the best-fitting outline


def _inside_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Even-odd rule: which of ``points`` (n, 2) lie inside ``polygon`` (v, 2)."""
    inside = np.zeros(len(points), dtype=bool)
    x, y = points[:, 0], points[:, 1]
    for (x1, y1), (x2, y2) in zip(polygon, np.roll(polygon, -1, axis=0)):
        crosses = (y1 > y) != (y2 > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_cross = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
        inside ^= crosses & (x < x_cross)
    return inside


def _outline(name: str) -> np.ndarray:
    if name.startswith("ellipse_"):
        angles = 2 * np.pi * np.arange(32) / 32
        return np.stack([float(name.removeprefix("ellipse_")) * np.cos(angles), np.sin(angles)], axis=1)
    return outline_offsets(name, 1.0, 0.0)


@cache
def _unit_template(name: str) -> tuple[np.ndarray, float]:
    """(boolean raster of the unit outline, its area); circumradius 1, centred, unrotated."""
    outline = _outline(name)
    axis = np.linspace(-_LOOKUP_EXTENT, _LOOKUP_EXTENT, _LOOKUP_SIZE)
    grid = np.stack(np.meshgrid(axis, axis), axis=-1).reshape(-1, 2)
    raster = _inside_polygon(grid, outline).reshape(_LOOKUP_SIZE, _LOOKUP_SIZE)  # [row = y, col = x]
    x, y = outline[:, 0], outline[:, 1]
    area = 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))  # shoelace
    return raster, area


def _best_fit(offsets: np.ndarray, category: str) -> float:
    """Best IoU of ``category``'s outline (over rotations and SCALES) with a component.

    ``offsets`` (n, 2) are the component's pixel centres relative to its centroid. Only those pixels are
    looked up; the outline's own pixel count is taken as its polygon area (rasterisation keeps it).
    """
    raster, unit_area = _unit_template(category)
    area = len(offsets)
    radius = np.sqrt(area / unit_area)
    step = 2 * ANGLE_STEP if category.startswith("ellipse_") else ANGLE_STEP  # smooth: a coarser sweep will do
    angles = np.arange(0.0, _SYMMETRY.get(category, 2 * np.pi), step)
    cos, sin = np.cos(angles)[:, None], np.sin(angles)[:, None]
    # Rotate the pixels by -angle instead of the outline by +angle, then look them up in the unit raster.
    u = cos * offsets[:, 0] + sin * offsets[:, 1]
    v = -sin * offsets[:, 0] + cos * offsets[:, 1]
    best = 0.0
    last = _LOOKUP_SIZE - 1
    for scale in SCALES:
        to_cells = last / (2 * _LOOKUP_EXTENT * radius * scale)
        # The raster's border is outside every outline, so clipping far pixels onto it reads "outside".
        cols = np.clip(np.rint(u * to_cells + last / 2).astype(np.intp), 0, last)
        rows = np.clip(np.rint(v * to_cells + last / 2).astype(np.intp), 0, last)
        intersection = raster[rows, cols].sum(axis=1)
        template_area = unit_area * (radius * scale) ** 2
        best = max(best, float((intersection / (template_area + area - intersection)).max()))
    return best


def classify_shape(mask: np.ndarray, categories: list[str]) -> tuple[str | None, float]:
    """(best category, its IoU) for one object mask (H, W) bool; category None for a blob that a plain
    ellipse (DISTRACTOR_ASPECTS) fits clearly better than the best angular category."""
    ys, xs = np.nonzero(mask)
    offsets = np.stack([xs - xs.mean(), ys - ys.mean()], axis=1)
    fits = {category: _best_fit(offsets, category) for category in categories}
    best = max(fits, key=fits.get)
    # A circle is not tested against ellipses: one with a bite taken out by occlusion is ellipse-like.
    if best != "circle":
        blob = max(_best_fit(offsets, f"ellipse_{aspect}") for aspect in DISTRACTOR_ASPECTS)
        if blob > fits[best] + DISTRACTOR_MARGIN:
            return None, fits[best]
    return best, fits[best]


def min_object_area(config: WorldConfig) -> float:
    """Pixels of the smallest component taken for an object: MIN_AREA_FRACTION of the smallest outline."""
    smallest_unit = min(_unit_template(category)[1] for category in config.categories)
    return MIN_AREA_FRACTION * smallest_unit * (config.min_radius * config.image_size) ** 2


def color_labels(image: np.ndarray, palette: dict[str, tuple[int, int, int]]) -> np.ndarray:
    """(H, W) index into ``list(palette)`` of each pixel's object colour, -1 for background."""
    pixels = image[..., :3].astype(np.float64)
    colors = np.array(list(palette.values()), dtype=np.float64)
    distance = np.linalg.norm(pixels[:, :, None, :] - colors[None, None], axis=-1)
    nearest = distance.argmin(axis=-1)
    is_object = (pixels.max(axis=-1) >= MIN_OBJECT_CHANNEL) & (distance.min(axis=-1) <= MAX_COLOR_DISTANCE)
    return np.where(is_object, nearest, -1)


def detect_objects(image: np.ndarray, config: WorldConfig | None = None) -> list[Detection]:
    """Every object the checker sees in an RGB image (H, W, 3), largest first."""
    config = config or WorldConfig()
    labels = color_labels(np.asarray(image), config.colors)
    min_area = min_object_area(config)
    detections = []
    for color_index, color in enumerate(config.colors):
        components, _ = ndimage.label(labels == color_index, structure=_EIGHT_CONNECTED)
        for index, box in enumerate(ndimage.find_objects(components), start=1):
            # Work on the component alone, filled: stray off-colour pixels inside must not break its shape.
            mask = np.zeros(components.shape, dtype=bool)
            mask[box] = ndimage.binary_fill_holes(components[box] == index)
            area = int(mask.sum())
            if area < min_area:
                continue
            category, fit = classify_shape(mask, config.categories)
            if category is None or fit < MIN_FIT:
                continue
            ys, xs = np.nonzero(mask)
            detections.append(Detection(category, color, (float(xs.mean() + 0.5), float(ys.mean() + 0.5)), area, fit))
    return sorted(detections, key=lambda d: -d.area)


def score(spec: PromptSpec, detections: list[Detection]) -> bool:
    """GenEval's rule for one image: every required object present (exactly, for counting), colours
    right where the task checks them, and the relation true between the largest matching objects."""
    matched: list[list[Detection]] = []
    for obj in spec.objects:
        candidates = [d for d in detections if d.category == obj.category]
        if spec.checks_colors and obj.color is not None:
            candidates = [d for d in candidates if d.color == obj.color]
        if len(candidates) < obj.count or (spec.exact_count and len(candidates) != obj.count):
            return False
        matched.append(candidates[: obj.count])  # detections come largest first: area stands in for confidence
    relation = spec.relation
    if relation is None:
        return True
    return all(
        relation_holds(relation.relation, a.centroid, b.centroid, spec.relation_gap)
        for a in matched[relation.subject]
        for b in matched[relation.reference]
    )


def check_images(specs: list[PromptSpec], images: list[np.ndarray], config: WorldConfig | None = None,
                 detector=None) -> list[bool]:
    """Per-image verdicts, in order; ``detector`` (``detection.Detector``) replaces the classical one."""
    if len(specs) != len(images):
        raise ValueError(f"{len(specs)} prompts but {len(images)} images")
    detect = detector.detect if detector is not None else (lambda image: detect_objects(image, config))
    return [score(spec, detect(image)) for spec, image in zip(specs, images, strict=True)]


def geneval_scores(specs: list[PromptSpec], images: list[np.ndarray], config: WorldConfig | None = None) -> dict[str, float]:
    """Accuracy per task present, and ``overall``: the unweighted mean over tasks (as GenEval reports)."""
    verdicts = check_images(specs, images, config)
    scores = {}
    for task in TASKS:
        task_verdicts = [ok for spec, ok in zip(specs, verdicts) if spec.task == task]
        if task_verdicts:
            scores[task] = float(np.mean(task_verdicts))
    scores["overall"] = float(np.mean(list(scores.values()))) if scores else 0.0
    return scores
