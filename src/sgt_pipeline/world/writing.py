"""File-level plumbing: PNG/JSON encoding, the dataset layout, writing files."""

from __future__ import annotations

import io
import json
import os

import numpy as np
from PIL import Image

PNG_COMPRESS_LEVEL = 1  # ~25% faster than the default 6 at 64x64, files ~10% larger


def split_paths(root: str, split: str) -> dict:
    """Where a split's files live (the manifest's per-split entry), joined from root as given."""
    return {
        "instances_json": os.path.join(root, "annotations", f"instances_{split}.json"),
        "images_dir": os.path.join(root, "images", split),
        "captions_json": os.path.join(root, "annotations", f"captions_{split}.json"),
        "vqa_jsonl": os.path.join(root, "annotations", f"vqa_{split}.jsonl"),
        "depth_dir": os.path.join(root, "depth", split),
        "panoptic_json": None,
    }


def write_file(path: str, data: bytes) -> None:
    """Plain write: files go into a directory that is published whole once complete."""
    with open(path, "wb") as handle:
        handle.write(data)


def png_bytes(array: np.ndarray) -> bytes:
    """(H, W, 3) uint8 -> RGB PNG; (H, W) uint16 -> 16-bit grayscale PNG (Pillow mode "I;16")."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def json_bytes(document) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


def jsonl_bytes(records: list[dict]) -> bytes:
    return b"".join(json_bytes(record) + b"\n" for record in records)
