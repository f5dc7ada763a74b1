"""Atomic local I/O: the helper and the Kedro datasets built on it."""

from sgt_pipeline.io.atomic import atomic_directory, atomic_write
from sgt_pipeline.io.datasets import (
    CSVTableDataset,
    JSONDataset,
    ParquetTableDataset,
    PNGImageDataset,
    TextDataset,
    YAMLDataset,
)

__all__ = [
    "CSVTableDataset",
    "JSONDataset",
    "PNGImageDataset",
    "ParquetTableDataset",
    "TextDataset",
    "YAMLDataset",
    "atomic_directory",
    "atomic_write",
]
