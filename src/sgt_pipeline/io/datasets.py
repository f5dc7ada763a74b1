"""Kedro datasets for local files, written atomically (write to a temporary file, then rename).

kedro-datasets writes straight to the target path, so a crash mid-save leaves a truncated file that the
next stage (or DVC) would take for real output. These small datasets keep the catalog in charge of I/O
and make every save all-or-nothing. Local paths only: DVC versions ``data/``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from kedro.io import AbstractDataset
from PIL import Image

from sgt_pipeline.io.atomic import atomic_write


class _LocalFileDataset(AbstractDataset):
    def __init__(
        self,
        filepath: str,
        load_args: dict[str, Any] | None = None,
        save_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ):
        self._filepath = Path(filepath)
        self._load_args = load_args or {}
        self._save_args = save_args or {}
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "type": type(self).__name__}

    def _exists(self) -> bool:
        return self._filepath.exists()


class ParquetTableDataset(_LocalFileDataset):
    """A pandas DataFrame as one Parquet file."""

    def load(self) -> pd.DataFrame:
        return pd.read_parquet(self._filepath, **self._load_args)

    def save(self, data: pd.DataFrame) -> None:
        atomic_write(self._filepath, lambda tmp: data.to_parquet(tmp, index=False, **self._save_args))


class CSVTableDataset(_LocalFileDataset):
    """A pandas DataFrame as CSV: for tables a person opens (indexes, summaries)."""

    def load(self) -> pd.DataFrame:
        return pd.read_csv(self._filepath, **self._load_args)

    def save(self, data: pd.DataFrame) -> None:
        atomic_write(self._filepath, lambda tmp: data.to_csv(tmp, index=False, **self._save_args))


class JSONDataset(_LocalFileDataset):
    """Any JSON-serialisable value, pretty-printed with sorted keys (diff-friendly for DVC metrics)."""

    def load(self) -> Any:
        return json.loads(self._filepath.read_text(encoding="utf-8"))

    def save(self, data: Any) -> None:
        text = json.dumps(data, indent=2, sort_keys=True, **self._save_args) + "\n"
        atomic_write(self._filepath, lambda tmp: tmp.write_text(text, encoding="utf-8"))


class YAMLDataset(_LocalFileDataset):
    """A mapping as YAML, in insertion order (parameter files a person reads and Kedro loads)."""

    def load(self) -> Any:
        return yaml.safe_load(self._filepath.read_text(encoding="utf-8"))

    def save(self, data: Any) -> None:
        header = self._save_args.get("header", "")
        text = header + yaml.safe_dump(data, sort_keys=False)
        atomic_write(self._filepath, lambda tmp: tmp.write_text(text, encoding="utf-8"))


class TextDataset(_LocalFileDataset):
    """A text file (Markdown reports)."""

    def load(self) -> str:
        return self._filepath.read_text(encoding="utf-8")

    def save(self, data: str) -> None:
        atomic_write(self._filepath, lambda tmp: tmp.write_text(data, encoding="utf-8"))


class PNGImageDataset(_LocalFileDataset):
    """An (H, W, 3) or (H, W) uint8 array as PNG; loads back as a numpy array."""

    def load(self) -> np.ndarray:
        with Image.open(self._filepath) as img:
            return np.asarray(img)

    def save(self, data: np.ndarray | Image.Image) -> None:
        image = data if isinstance(data, Image.Image) else Image.fromarray(np.asarray(data))
        atomic_write(self._filepath, lambda tmp: image.save(tmp, format="PNG", **self._save_args))
