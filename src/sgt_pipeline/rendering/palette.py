"""Label <-> colour mapping for rendered targets, and decoding of (generated) colour images.

The project palette
-------------------
One fixed, ordered sequence of 4096 RGB colours, built once (lazily, ~0.1 s) by greedy farthest-point
sampling over the 16x16x16 grid of channel values {0, 17, ..., 255}: start from black (reserved for
background, label 0), then repeatedly take the grid colour whose Euclidean RGB distance to the nearest
colour already taken is largest (ties: first in r-major grid order). Greedy sampling makes every prefix
well spread, so ``Palette.default(n)`` (labels 0..n, i.e. n + 1 colours with black) is good for every n.
Minimum pairwise distances of ``Palette.default(n)`` (black included):

    n                 8      16     32     80     133    255
    min_distance    180.7  120.2   91.5   61.3   48.1   38.0

(Greedy farthest-point selection is within a factor 2 of the best achievable minimum distance.)

Decoding
--------
``Palette.decode`` maps every pixel to the label of the nearest palette colour (squared Euclidean RGB
distance; ties, including colliding category colours, go to the lower label). Distances are computed in
float32 as |c|^2 - 2 x.c, which is exact for 8-bit inputs (all terms are integers below 2^24), so ties
are true ties. Work is chunked to bound memory (about 16 MB of distances at a time); a uint8 image is
decoded one distinct colour at a time (256x256, 134 colours: ~2 ms clean, ~80 ms with noise).
Robustness is geometry: under Gaussian noise of sigma = 20 per channel, measured pixel accuracy was
99.99% with ``default(12)``, 84% with ``default(80)`` and 69% with ``default(133)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

import numpy as np

GRID_LEVELS = 16  # channel values 0, 17, ..., 255
_DISTANCE_BUDGET = 1 << 22  # float32 distance entries per decode chunk (16 MB)


@lru_cache(maxsize=1)
def project_colors() -> np.ndarray:
    """The project's colour sequence, (4096, 3) uint8; row 0 is black."""
    levels = np.arange(GRID_LEVELS, dtype=np.int32) * (255 // (GRID_LEVELS - 1))
    r, g, b = (channel.ravel() for channel in np.meshgrid(levels, levels, levels, indexing="ij"))
    # Squared distance of every candidate to its nearest chosen colour; black (index 0) is chosen first.
    nearest = r * r + g * g + b * b
    order = np.zeros(r.size, dtype=np.int64)
    for position in range(1, r.size):
        chosen = int(np.argmax(nearest))
        order[position] = chosen
        np.minimum(nearest, (r - r[chosen]) ** 2 + (g - g[chosen]) ** 2 + (b - b[chosen]) ** 2, out=nearest)
    colors = np.stack([r, g, b], axis=1)[order].astype(np.uint8)
    colors.flags.writeable = False
    return colors


class Palette:
    """An ordered set of (label, colour) pairs; labels are non-negative ints, 0 is background."""

    def __init__(self, labels: Iterable[int], colors: Any):
        labels = np.asarray(list(labels), dtype=np.int64)
        colors = np.asarray(colors)
        if colors.ndim != 2 or colors.shape[1] != 3 or len(colors) != len(labels):
            raise ValueError(f"colors must be ({len(labels)}, 3); got shape {colors.shape}")
        if len(labels) and labels.min() < 0:
            raise ValueError("labels must be non-negative")
        if len(np.unique(labels)) != len(labels):
            raise ValueError("labels must be distinct")
        if colors.size and (colors.min() < 0 or colors.max() > 255):
            raise ValueError("colour channels must lie in 0..255")
        order = np.argsort(labels, kind="stable")  # sorted labels make nearest-colour ties go low
        self.labels = labels[order]
        self.colors = colors[order].astype(np.uint8)
        self.labels.flags.writeable = self.colors.flags.writeable = False
        self._lookup: tuple[np.ndarray, np.ndarray | None] | None = None

    # ----------------------------------------------------------------------------- constructors
    @classmethod
    def default(cls, n: int) -> Palette:
        """Labels 0..n with the first n + 1 project colours (0 = black)."""
        return _project_prefix(int(n))

    @classmethod
    def for_instances(cls, n: int) -> Palette:
        """Palette for an instance (or panoptic) map with labels 1..n; same as ``default(n)``."""
        return _project_prefix(int(n))

    @classmethod
    def for_categories(cls, categories: Iterable[Mapping[str, Any]]) -> Palette:
        """Labels = category ids (gaps allowed) plus 0 = black.

        Colours come from the categories' ``color`` field when every category has one (COCO panoptic);
        otherwise the project sequence is dealt out in ascending category-id order (label 0 keeps black).
        """
        categories = sorted(categories, key=lambda category: int(category["id"]))
        ids = [int(category["id"]) for category in categories]
        if 0 in ids:
            raise ValueError("category id 0 is reserved for the background")
        if categories and all(category.get("color") is not None for category in categories):
            colors = [[0, 0, 0]] + [list(category["color"]) for category in categories]
        else:
            colors = _project_colors_at_least(len(ids) + 1)[: len(ids) + 1]
        return cls([0, *ids], colors)

    # ----------------------------------------------------------------------------- properties
    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        return f"Palette({len(self)} labels, min_distance={self.min_distance:.1f})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Palette)
            and np.array_equal(self.labels, other.labels)
            and np.array_equal(self.colors, other.colors)
        )

    @property
    def min_distance(self) -> float:
        """Smallest Euclidean RGB distance between two of the palette's colours (inf if < 2 colours)."""
        if len(self) < 2:
            return float("inf")
        colors = self.colors.astype(np.float64)
        squared = ((colors[:, None, :] - colors[None, :, :]) ** 2).sum(axis=-1)
        np.fill_diagonal(squared, np.inf)
        return float(np.sqrt(squared.min()))

    # ----------------------------------------------------------------------------- label -> colour
    def encode(self, label_map: np.ndarray) -> np.ndarray:
        """(H, W) integer labels -> (H, W, 3) uint8 colours. Unknown labels raise ValueError."""
        label_map = np.asarray(label_map)
        if label_map.size == 0:
            return np.zeros((*label_map.shape, 3), dtype=np.uint8)
        table, known = self._tables()
        lowest, highest = int(label_map.min()), int(label_map.max())
        if lowest < 0 or highest >= len(table) or (
            known is not None and not np.take(known, label_map).all()
        ):
            present = np.unique(label_map)
            missing = sorted(set(present.tolist()) - set(self.labels.tolist()))
            raise ValueError(
                f"labels {missing[:10]} are not in the palette (labels {self.labels.min()}"
                f"..{self.labels.max()}, {len(self)} in all)"
            )
        return np.take(table, label_map, axis=0)

    colors_for = encode

    def _tables(self) -> tuple[np.ndarray, np.ndarray | None]:
        """Colour lookup table indexed by label, and a 'known label' mask when labels have gaps."""
        if self._lookup is None:
            size = int(self.labels.max()) + 1 if len(self) else 0
            table = np.zeros((size, 3), dtype=np.uint8)
            table[self.labels] = self.colors
            gaps = size != len(self)
            known = np.zeros(size, dtype=bool) if gaps else None
            if known is not None:
                known[self.labels] = True
            self._lookup = (table, known)
        return self._lookup

    # ----------------------------------------------------------------------------- colour -> label
    def decode(self, image: np.ndarray) -> np.ndarray:
        """(H, W, 3) image (uint8 or float in 0..255, e.g. a noisy generation) -> (H, W) int64 labels."""
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[-1] < 3:
            raise ValueError(f"expected an (H, W, 3) image; got shape {image.shape}")
        if len(self) == 0:
            raise ValueError("cannot decode with an empty palette")
        pixels = image[..., :3].reshape(-1, 3)
        if pixels.dtype == np.uint8:
            # Generated images repeat colours a lot; decode each distinct colour once.
            packed = (pixels[:, 0].astype(np.uint32) << 16) | (pixels[:, 1].astype(np.uint32) << 8) | pixels[:, 2]
            distinct, inverse = np.unique(packed, return_inverse=True)
            colors = np.stack([distinct >> 16, (distinct >> 8) & 255, distinct & 255], axis=1)
            nearest = self._nearest_indices(colors.astype(np.float32))[inverse.ravel()]
        else:
            nearest = self._nearest_indices(pixels.astype(np.float32))
        return self.labels[nearest].reshape(image.shape[:2])

    def _nearest_indices(self, pixels: np.ndarray) -> np.ndarray:
        palette = self.colors.astype(np.float32)
        palette_norms = (palette**2).sum(axis=1)
        chunk = max(1, _DISTANCE_BUDGET // len(palette))
        result = np.empty(len(pixels), dtype=np.int64)
        for start in range(0, len(pixels), chunk):
            block = pixels[start : start + chunk]
            # |x - c|^2 minus the per-pixel constant |x|^2; argmin takes the first (lowest-label) tie.
            distances = palette_norms[None, :] - 2.0 * (block @ palette.T)
            result[start : start + chunk] = np.argmin(distances, axis=1)
        return result

    # ----------------------------------------------------------------------------- persistence
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: {"labels": [...], "colors": [[r, g, b], ...]}."""
        return {"labels": self.labels.tolist(), "colors": self.colors.tolist()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Palette:
        return cls(data["labels"], data["colors"])


def _project_colors_at_least(count: int) -> np.ndarray:
    colors = project_colors()
    if count > len(colors):
        raise ValueError(f"the project palette has {len(colors)} colours; {count} were requested")
    return colors


@lru_cache(maxsize=512)
def _project_prefix(n: int) -> Palette:
    if n < 0:
        raise ValueError(f"n must be >= 0; got {n}")
    return Palette(range(n + 1), _project_colors_at_least(n + 1)[: n + 1])
