"""Pluggable GenEval detectors: the classical shapes-world checker, or a segmentation model for real data.

A detector turns one generated image into ``checker.Detection``s (category, colour, centroid, area, score);
``checker.score`` then applies GenEval's rules, whichever detector produced them. For real data (COCO
categories), ``SegmentationDetector`` loads any transformers universal-segmentation checkpoint from a local
directory (e.g. ``facebook/mask2former-swin-small-coco-instance`` downloaded once), keeps instances above a
score threshold, and names each instance's colour by the nearest of GenEval's colour words to the median
RGB of its mask (GenEval itself asks CLIP; a nearest-colour rule needs no second model).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from sgt_pipeline.evaluation.checker import Detection, detect_objects
from sgt_pipeline.world.config import WorldConfig

# GenEval's colour words, with representative sRGB values.
GENEVAL_COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30), "orange": (245, 140, 20), "yellow": (240, 220, 40), "green": (50, 170, 60),
    "blue": (40, 80, 220), "purple": (140, 60, 190), "pink": (240, 140, 180), "brown": (130, 80, 40),
    "black": (20, 20, 20), "white": (240, 240, 240),
}


class Detector(Protocol):
    def detect(self, image: np.ndarray) -> list[Detection]:
        ...


@dataclass
class ShapesDetector:
    """The classical checker of the shapes world (nothing learned)."""

    world: WorldConfig

    def detect(self, image: np.ndarray) -> list[Detection]:
        return detect_objects(image, self.world)


@dataclass
class PromptVocabulary:
    """What a GenEval-style suite for real data may name (``geneval.prompt_suite`` reads these fields)."""

    categories: list[str]
    colors: dict[str, tuple[int, int, int]] = field(default_factory=lambda: dict(GENEVAL_COLORS))
    image_size: int = 384
    max_objects: int = 4
    min_relation_offset: float = 0.1


def nearest_color(pixels: np.ndarray, colors: dict[str, tuple[int, int, int]]) -> str:
    """The colour word closest (RGB distance) to the median of ``pixels`` (n, 3)."""
    median = np.median(pixels.reshape(-1, 3).astype(float), axis=0)
    names = list(colors)
    table = np.array([colors[n] for n in names], dtype=float)
    return names[int(np.argmin(((table - median) ** 2).sum(axis=1)))]


class SegmentationDetector:
    """Instances found by a local transformers universal-segmentation model (Mask2Former, OneFormer, ...)."""

    def __init__(self, model, processor, threshold: float = 0.5,
                 colors: dict[str, tuple[int, int, int]] | None = None):
        self.model, self.processor, self.threshold = model.eval(), processor, threshold
        self.colors = colors or dict(GENEVAL_COLORS)
        self.labels = {int(k): v for k, v in model.config.id2label.items()}

    @classmethod
    def from_pretrained(cls, path: str | Path, threshold: float = 0.5) -> SegmentationDetector:
        from transformers import AutoImageProcessor, AutoModelForUniversalSegmentation

        if not Path(path).is_dir():
            raise FileNotFoundError(f"detector checkpoint {path}: not a local directory (no downloads at run time)")
        return cls(AutoModelForUniversalSegmentation.from_pretrained(path), AutoImageProcessor.from_pretrained(path),
                   threshold)

    @torch.no_grad()
    def detect(self, image: np.ndarray) -> list[Detection]:
        image = np.asarray(image)
        inputs = self.processor(images=[image], return_tensors="pt")
        outputs = self.model(**inputs)
        result = self.processor.post_process_instance_segmentation(
            outputs, threshold=self.threshold, target_sizes=[image.shape[:2]])[0]
        segmentation = result["segmentation"].cpu().numpy()
        detections = []
        for segment in result["segments_info"]:
            mask = segmentation == segment["id"]
            if not mask.any():
                continue
            ys, xs = np.nonzero(mask)
            detections.append(Detection(self.labels[int(segment["label_id"])], nearest_color(image[mask], self.colors),
                                        (float(xs.mean() + 0.5), float(ys.mean() + 0.5)), int(mask.sum()),
                                        float(segment["score"])))
        return sorted(detections, key=lambda d: -d.area)
