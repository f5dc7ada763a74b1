"""File-level plumbing: atomic writes, PNG/JSON encoding, the dataset layout and the final directory swap."""

from __future__ import annotations

import io
import json
import os
import shutil

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


def write_atomic(path: str, data: bytes) -> None:
    """Write to a temporary name in the same directory, then rename: readers never see a partial file."""
    temporary = f"{path}.tmp-{os.getpid()}"
    with open(temporary, "wb") as handle:
        handle.write(data)
    os.replace(temporary, path)


def png_bytes(array: np.ndarray) -> bytes:
    """(H, W, 3) uint8 -> RGB PNG; (H, W) uint16 -> 16-bit grayscale PNG (Pillow mode "I;16")."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def json_bytes(document) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


def jsonl_bytes(records: list[dict]) -> bytes:
    return b"".join(json_bytes(record) + b"\n" for record in records)


def swap_into_place(built: str, root: str) -> None:
    """Replace root by the freshly built directory, then delete the old tree.

    POSIX cannot atomically exchange two non-empty directories, so root is briefly absent between the
    two renames; no reader ever sees a mix of old and new files.
    """
    os.makedirs(os.path.dirname(os.path.abspath(root)), exist_ok=True)
    previous = f"{root.rstrip(os.sep)}.old-{os.getpid()}"
    if os.path.exists(root):
        os.replace(root, previous)
    os.replace(built, root)
    shutil.rmtree(previous, ignore_errors=True)
