"""Atomic file writes: a reader never sees a half-written output.

Under torchrun every rank runs the same pipeline; only rank 0 publishes files (``is_writer``), so the
ranks never race on an output. The other ranks still execute the writing code, into a scratch place.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


def is_writer() -> bool:
    """True unless this process is a non-zero rank of a torchrun job."""
    return os.environ.get("RANK", "0") == "0"


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it into place.

    The rename is atomic on POSIX file systems; on failure the temporary file is removed and ``path``
    keeps its previous content (or stays absent).
    """
    if not is_writer():
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """Yield a temporary directory to fill; on success it replaces ``path`` as a whole.

    The old directory is moved aside before the new one is renamed in, so ``path`` always holds one
    complete version (it is absent only between the two renames); on failure the old one stays.
    """
    if not is_writer():
        with tempfile.TemporaryDirectory() as scratch:
            yield Path(scratch)
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    building = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir()
    try:
        yield building
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    old = path.with_name(f".{path.name}.old-{os.getpid()}")
    if path.exists():
        os.replace(path, old)
    os.replace(building, path)
    shutil.rmtree(old, ignore_errors=True)
