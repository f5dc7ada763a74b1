"""The embedded "shapes" world: a deterministic, COCO-format synthetic dataset (DESIGN.md §4).

    from sgt_pipeline.world import WorldConfig, generate_world
    manifest = generate_world(WorldConfig(root="data/01_raw/shapes"))
"""

from .config import WorldConfig
from .generate import generate_world
from .language import vocabulary
from .questions import QUESTION_TYPES

__all__ = ["QUESTION_TYPES", "WorldConfig", "generate_world", "vocabulary"]
