"""Checkpoints on disk: pickle-free, written atomically, pruned, found again on resume.

Layout of ``out_dir/checkpoints/``::

    step_000120/  model.safetensors  optimizer.safetensors  optimizer_state.json  trainer_state.json
    step_000160/  ...
    latest        "step_000160" — pointer to the newest complete checkpoint

A checkpoint is built in ``.tmp-step_000160-<pid>/``, every file fsynced, then renamed into place (rename is
atomic), and only then is ``latest`` replaced (also by rename). A process killed mid-write therefore leaves
only a ``.tmp-*`` directory, which resume ignores and removes; ``step_*`` directories are always complete.
"""

from __future__ import annotations

import base64
import json
import os
import random
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

LATEST = "latest"
_STEP_DIR = re.compile(r"^step_(\d+)$")
_REQUIRED_FILES = ("model.safetensors", "optimizer.safetensors", "optimizer_state.json", "trainer_state.json")
# Test hook: "<step>:<seconds>" sleeps inside the write of that step's checkpoint, after the weights are on
# disk but before the rename, so a test can SIGKILL the process mid-write.
PAUSE_ENV = "SGT_TEST_CHECKPOINT_PAUSE"


def step_dir_name(step: int) -> str:
    return f"step_{step:06d}"


# ---- tensors and JSON, durably -------------------------------------------------------------------------

def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_json(path: Path, data) -> None:
    path.write_text(json.dumps(data, indent=1))
    _fsync_path(path)


def save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """safetensors refuses tensors that share memory (tied weights): store each storage once, aliases by name."""
    kept: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple, str] = {}  # (storage pointer, offset, shape, stride, dtype) -> kept name
    shared_storages: set[int] = set()
    for name, tensor in tensors.items():
        tensor = tensor.detach()
        storage = tensor.untyped_storage().data_ptr()
        key = (storage, tensor.storage_offset(), tuple(tensor.shape), tensor.stride(), tensor.dtype)
        if key in seen:
            aliases[name] = seen[key]
            continue
        # A different view of an already-kept storage must become its own copy.
        kept[name] = (tensor.clone(memory_format=torch.contiguous_format) if storage in shared_storages
                      else tensor.contiguous())
        seen[key] = name
        shared_storages.add(storage)
    save_file(kept, str(path), metadata={"format": "pt", "aliases": json.dumps(aliases)})
    _fsync_path(path)


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    with safe_open(str(path), framework="pt") as handle:
        aliases = json.loads((handle.metadata() or {}).get("aliases", "{}"))
    tensors = load_file(str(path))
    for alias, original in aliases.items():
        tensors[alias] = tensors[original]
    return tensors


def split_optimizer_state(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """torch optimizer state dict → (tensors for safetensors, everything else as JSON-able data)."""
    tensors, scalars = {}, {}
    for param_name, entries in state["state"].items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{param_name}/{key}"] = value
            else:
                scalars.setdefault(str(param_name), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def join_optimizer_state(tensors: dict[str, torch.Tensor], rest: dict) -> dict:
    state: dict = {}
    for flat_name, value in tensors.items():
        param_name, key = flat_name.rsplit("/", 1)
        state.setdefault(param_name, {})[key] = value
    for param_name, entries in rest["scalars"].items():
        state.setdefault(param_name, {}).update(entries)
    # JSON turned tuples (AdamW's betas) into lists; the optimizer expects them back.
    groups = [{k: (tuple(v) if isinstance(v, list) and k != "params" else v) for k, v in group.items()}
              for group in rest["param_groups"]]
    return {"state": state, "param_groups": groups}


# ---- random number generators ----------------------------------------------------------------------------

def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices). Call it before building the model for reproducible init."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _b64(tensor: torch.Tensor) -> str:
    return base64.b64encode(tensor.numpy().tobytes()).decode("ascii")


def _unb64(text: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8)


def capture_rng_state() -> dict:
    """Every generator dropout, sampling or augmentation might draw from, as JSON-able data."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": [version, list(internal), gauss],
             "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
             "torch": _b64(torch.get_rng_state())}
    if torch.cuda.is_available():
        state["cuda"] = [_b64(s) for s in torch.cuda.get_rng_state_all()]
    return state


def restore_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(_unb64(state["torch"]))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([_unb64(s) for s in state["cuda"]])


# ---- the checkpoint directory ----------------------------------------------------------------------------

@dataclass
class Checkpoint:
    path: Path
    model: dict[str, torch.Tensor]
    optimizer: dict
    trainer_state: dict


def is_complete(path: Path) -> bool:
    return path.is_dir() and _STEP_DIR.match(path.name) is not None and all(
        (path / name).is_file() for name in _REQUIRED_FILES)


class CheckpointStore:
    """Writes (rank 0 only), finds, reads and prunes the checkpoints of one run directory."""

    def __init__(self, out_dir: str | Path, keep: int):
        self.root = Path(out_dir) / "checkpoints"
        self.keep = keep

    def complete_checkpoints(self) -> list[Path]:
        """Complete checkpoint directories, oldest first."""
        if not self.root.is_dir():
            return []
        found = [p for p in self.root.iterdir() if is_complete(p)]
        return sorted(found, key=lambda p: int(_STEP_DIR.match(p.name).group(1)))

    def latest(self) -> Path | None:
        """What `latest` names; if it is missing or dangling (killed between rename and pointer update, or a
        pruning in progress), the newest complete directory."""
        pointer = self.root / LATEST
        if pointer.is_file():
            candidate = self.root / pointer.read_text().strip()
            if is_complete(candidate):
                return candidate
        complete = self.complete_checkpoints()
        return complete[-1] if complete else None

    def remove_partial(self) -> None:
        """Delete what killed writers or prunings left behind (only names starting with a dot)."""
        if self.root.is_dir():
            for leftover in self.root.glob(".tmp-*"):
                shutil.rmtree(leftover, ignore_errors=True) if leftover.is_dir() else leftover.unlink()
            for leftover in self.root.glob(".deleting-*"):
                shutil.rmtree(leftover, ignore_errors=True)

    def write(self, step: int, model_state: dict, optimizer_state: dict, trainer_state: dict) -> Path:
        final = self.root / step_dir_name(step)
        tmp = self.root / f".tmp-{final.name}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            save_tensors(model_state, tmp / "model.safetensors")
            optimizer_tensors, optimizer_rest = split_optimizer_state(optimizer_state)
            save_tensors(optimizer_tensors, tmp / "optimizer.safetensors")
            _write_json(tmp / "optimizer_state.json", optimizer_rest)
            _pause_for_tests(step)
            _write_json(tmp / "trainer_state.json", trainer_state)
            _fsync_path(tmp)
            if final.exists():  # written by an earlier, killed attempt at this same step; replace it
                self._discard(final)
            os.rename(tmp, final)
            _fsync_path(self.root)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        pointer_tmp = self.root / f".tmp-{LATEST}-{os.getpid()}"
        pointer_tmp.write_text(final.name + "\n")
        _fsync_path(pointer_tmp)
        os.replace(pointer_tmp, self.root / LATEST)
        _fsync_path(self.root)
        self.prune()
        return final

    def prune(self) -> None:
        """Keep the newest `keep` checkpoints, and always the one `latest` names."""
        current = self.latest()
        for old in self.complete_checkpoints()[:-self.keep]:
            if old != current:
                self._discard(old)

    def _discard(self, path: Path) -> None:
        # Rename first: a half-deleted directory must never look like a complete checkpoint.
        doomed = self.root / f".deleting-{path.name}-{os.getpid()}"
        os.rename(path, doomed)
        shutil.rmtree(doomed, ignore_errors=True)

    @staticmethod
    def read(path: str | Path) -> Checkpoint:
        path = Path(path)
        if not is_complete(path):
            raise FileNotFoundError(f"{path} is not a complete checkpoint directory (needs {_REQUIRED_FILES})")
        optimizer = join_optimizer_state(load_tensors(path / "optimizer.safetensors"),
                                         json.loads((path / "optimizer_state.json").read_text()))
        return Checkpoint(path, load_tensors(path / "model.safetensors"), optimizer,
                          json.loads((path / "trainer_state.json").read_text()))


def _pause_for_tests(step: int) -> None:
    spec = os.environ.get(PAUSE_ENV)
    if spec:
        pause_step, seconds = spec.split(":")
        if int(pause_step) == step:
            time.sleep(float(seconds))
