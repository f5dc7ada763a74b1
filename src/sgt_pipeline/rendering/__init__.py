"""Proxy-target rendering: COCO annotations and image files -> (H, W, 3) uint8 targets.

Importable without Kedro (e.g. from a notebook)::

    from sgt_pipeline.rendering import render_target, resize_target, Palette
    target = render_target("instance", coco, image_id)          # native size
    target = resize_target(target, 64, "instance")              # nearest neighbour for label kinds
    labels = Palette.for_instances(int(...)).decode(generated)  # colour image -> label map

Modules: ``palette`` (label <-> colour), ``masks`` (label maps from annotations), ``targets``
(``render_target`` per kind), ``resize`` (kind-aware resizing), ``images`` (reading image files).
"""

from sgt_pipeline.rendering.masks import label_map
from sgt_pipeline.rendering.palette import Palette
from sgt_pipeline.rendering.resize import resize_target
from sgt_pipeline.rendering.targets import LABEL_KINDS, TARGET_KINDS, render_target

__all__ = ["LABEL_KINDS", "TARGET_KINDS", "Palette", "label_map", "render_target", "resize_target"]
