"""Sampling one scene (background + objects with depth) and compositing it back to front."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .background import sample_background
from .config import WorldConfig
from .shapes import outline_offsets, place_polygon, rasterise_polygon

DEPTH_RANGE = (0.05, 0.95)  # object depths, as a fraction of the farthest depth (the background's)
MIN_DEPTH_GAP = 0.04  # distinct depths, so "in front of" is always well-defined
MAX_PLACEMENT_ATTEMPTS = 200  # redraws of an object's geometry before giving the object up
DEPTH_MAX = 65535  # 16-bit depth value of the background (the farthest)


@dataclass
class SceneObject:
    category: str
    color: str
    polygon: list[float]  # flat COCO polygon [x1, y1, ...] of the full outline
    depth: float  # in DEPTH_RANGE; smaller = nearer
    full_mask: np.ndarray  # (H, W) bool, the whole outline as pycocotools rasterises it
    visible_mask: np.ndarray = field(default=None)  # (H, W) bool, full_mask minus nearer objects
    centroid: tuple[float, float] = field(default=None)  # (x, y) of the visible pixels, set when final

    @property
    def depth_value(self) -> int:
        """The object's value in the 16-bit depth map."""
        return int(round(self.depth * DEPTH_MAX))

    @property
    def occluded(self) -> bool:
        return bool((self.full_mask & ~self.visible_mask).any())


def visible_centroid(mask: np.ndarray) -> tuple[float, float]:
    """(x, y) centre of a mask's pixels, in pixel-centre coordinates (pixel i spans [i, i+1))."""
    ys, xs = np.nonzero(mask)
    return float(xs.mean() + 0.5), float(ys.mean() + 0.5)


@dataclass
class Scene:
    background: str  # background kind, e.g. "striped"
    image: np.ndarray  # (H, W, 3) uint8
    depth_map: np.ndarray  # (H, W) uint16; DEPTH_MAX = background
    objects: list[SceneObject]  # in sampling order (not depth order, so list order leaks nothing)
    dropped_objects: int = 0  # objects that found no placement with enough of them visible


def _visible_masks(objects: list[SceneObject]) -> list[np.ndarray]:
    covered = np.zeros_like(objects[0].full_mask)
    visible: list[np.ndarray] = [None] * len(objects)  # type: ignore[list-item]
    for index in sorted(range(len(objects)), key=lambda i: objects[i].depth):  # near to far
        visible[index] = objects[index].full_mask & ~covered
        covered |= objects[index].full_mask
    return visible


def _all_visible_enough(objects: list[SceneObject], visible: list[np.ndarray], config: WorldConfig) -> bool:
    for obj, mask in zip(objects, visible):
        area = int(mask.sum())
        if area < config.min_visible_area or area < config.min_visible_fraction * obj.full_mask.sum():
            return False
    return True


def _place_object(
    category: str, color: str, placed: list[SceneObject], config: WorldConfig, rng: np.random.Generator
) -> SceneObject | None:
    """Redraw size, position, rotation and depth until every object (old and new) stays visible enough."""
    size = config.image_size
    for _ in range(MAX_PLACEMENT_ATTEMPTS):
        radius = rng.uniform(config.min_radius, config.max_radius) * size
        offsets = outline_offsets(category, radius, angle=rng.uniform(0, 2 * np.pi))
        polygon = place_polygon(offsets, size, rng)
        depth = float(rng.uniform(*DEPTH_RANGE))
        if any(abs(depth - other.depth) < MIN_DEPTH_GAP for other in placed):
            continue
        candidate = SceneObject(category, color, polygon, depth, rasterise_polygon(polygon, size))
        objects = placed + [candidate]
        visible = _visible_masks(objects)
        if _all_visible_enough(objects, visible, config):
            for obj, mask in zip(objects, visible):
                obj.visible_mask = mask
            return candidate
    return None


def sample_scene(config: WorldConfig, rng: np.random.Generator) -> Scene:
    """Draw a background and 1..N objects, then composite them back to front."""
    background, image = sample_background(config.image_size, rng)
    n_objects = int(rng.integers(config.min_objects, config.max_objects + 1))
    # Category and colour are drawn independently; colours are distinct within an image.
    categories = [config.categories[i] for i in rng.integers(len(config.categories), size=n_objects)]
    color_names = list(config.colors)
    colors = [color_names[i] for i in rng.permutation(len(color_names))[:n_objects]]

    objects: list[SceneObject] = []
    for category, color in zip(categories, colors):
        placed = _place_object(category, color, objects, config, rng)
        if placed is not None:
            objects.append(placed)

    image = image.copy()
    depth_map = np.full(image.shape[:2], DEPTH_MAX, dtype=np.uint16)
    for obj in sorted(objects, key=lambda o: -o.depth):  # far to near: nearer objects paint over
        obj.centroid = visible_centroid(obj.visible_mask)
        image[obj.full_mask] = config.colors[obj.color]
        depth_map[obj.full_mask] = obj.depth_value
    return Scene(background, image, depth_map, objects, dropped_objects=n_objects - len(objects))
