"""Configuration of the shapes world: one pydantic model, mirrored by a parameters YAML block."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, model_validator

# Object colours: saturated, far apart, each with one channel >= 200. Backgrounds stay below 160 in
# every channel (see background.py), so an object colour can never occur in the background.
DEFAULT_COLORS: dict[str, tuple[int, int, int]] = {
    "red": (230, 25, 25),
    "green": (40, 200, 60),
    "blue": (40, 70, 235),
    "yellow": (245, 225, 30),
    "purple": (150, 50, 210),
    "orange": (255, 140, 0),
    "cyan": (0, 215, 225),
    "white": (250, 250, 250),
}

# Outlines shapes.py knows how to draw; a config picks (and orders) a subset of them.
KNOWN_CATEGORIES = ("circle", "square", "triangle", "star", "diamond", "hexagon", "cross")
DEFAULT_CATEGORIES = ["circle", "square", "triangle", "star", "diamond", "cross"]

# Answers and captions spell counts as words; this bounds max_objects.
MAX_SPELLED_COUNT = 10


class WorldConfig(BaseModel):
    """Everything that determines the generated dataset; same config -> byte-identical files."""

    model_config = ConfigDict(extra="forbid")

    # Directory the dataset is written to (replaced as a whole on regeneration).
    root: str = "data/01_raw/shapes"
    # Master seed; every image draws from its own stream keyed by (seed, split, index).
    seed: int = 0
    # Images are square, image_size x image_size pixels.
    image_size: int = Field(64, ge=16)
    # Images per split, in generation order (ids of later splits continue after earlier ones).
    splits: dict[str, int] = {"train": 2000, "val": 256}
    # Number of objects per image, drawn uniformly from [min_objects, max_objects].
    min_objects: int = Field(1, ge=1)
    max_objects: int = Field(4, ge=1, le=MAX_SPELLED_COUNT)
    # Captions written per image (distinct phrasings).
    captions_per_image: int = Field(2, ge=1)
    # Up to this many VQA items of each question type per image (fewer where ill-defined).
    questions_per_type: int = Field(1, ge=0)
    # Also ask "is there a <category>?" for every category, side by side (type "presence"): existence
    # asked across all categories of one scene is what teaches the tiny model to read the object word.
    ask_every_category: bool = False
    # Category names, ids 1..K in this order; each must be one of KNOWN_CATEGORIES.
    categories: list[str] = Field(default_factory=lambda: list(DEFAULT_CATEGORIES))
    # Object colour names -> RGB; colours are drawn independently of the category.
    colors: dict[str, tuple[int, int, int]] = Field(default_factory=lambda: dict(DEFAULT_COLORS))
    # Circumradius range of an object, as a fraction of image_size.
    min_radius: float = Field(0.12, gt=0, le=0.5)
    max_radius: float = Field(0.25, gt=0, le=0.5)
    # Objects whose visible area is smaller (pixels) are re-drawn, so every annotation is seen.
    min_visible_area: int = Field(20, ge=1)
    # ... and likewise if less than this fraction of the object stays visible (keeps shapes recognisable).
    min_visible_fraction: float = Field(0.35, ge=0, le=1)
    # Share of occluded objects stored as uncompressed RLE (the rest as compressed RLE).
    uncompressed_rle_fraction: float = Field(0.25, ge=0, le=1)
    # Two centroids must differ by this fraction of image_size before left/right or above/below is asked.
    min_relation_offset: float = Field(0.1, ge=0, le=1)

    @model_validator(mode="after")
    def _check_consistency(self) -> WorldConfig:
        if self.min_objects > self.max_objects:
            raise ValueError(f"min_objects ({self.min_objects}) > max_objects ({self.max_objects})")
        if self.min_radius > self.max_radius:
            raise ValueError(f"min_radius ({self.min_radius}) > max_radius ({self.max_radius})")
        unknown = [name for name in self.categories if name not in KNOWN_CATEGORIES]
        if unknown or len(set(self.categories)) != len(self.categories) or len(self.categories) < 2:
            raise ValueError(
                f"categories must be >= 2 distinct names from {KNOWN_CATEGORIES}; got {self.categories}"
            )
        # Objects in one image get distinct colours, so "the red circle" always names one object.
        if len(self.colors) < self.max_objects:
            raise ValueError(f"need at least max_objects ({self.max_objects}) colours, got {len(self.colors)}")
        for name, rgb in self.colors.items():
            if name != name.lower() or " " in name or max(rgb) < 200 or not all(0 <= c <= 255 for c in rgb):
                raise ValueError(
                    f"colour {name!r}={rgb}: names must be single lowercase words and RGB values 0..255 "
                    "with one channel >= 200 (backgrounds use darker, muted colours)"
                )
        if not self.splits or any(
            count < 0 or not re.fullmatch(r"[A-Za-z0-9_-]+", name) for name, count in self.splits.items()
        ):
            raise ValueError(f"splits must map file-name-safe names to image counts >= 0; got {self.splits}")
        return self

    def category_ids(self) -> dict[str, int]:
        """COCO category ids, 1..K in config order."""
        return {name: index + 1 for index, name in enumerate(self.categories)}
