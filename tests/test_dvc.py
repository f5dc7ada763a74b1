"""`dvc repro` in a temporary clone of the project: runs the DAG, then only what changed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO

pytestmark = pytest.mark.slow


def _run(args: list[str], cwd: Path) -> str:
    env = dict(os.environ, KEDRO_DISABLE_TELEMETRY="1", DO_NOT_TRACK="1", DVC_NO_ANALYTICS="1",
               GX_ANALYTICS_ENABLED="false", COLUMNS="300")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"  # this venv's kedro, dvc
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout + done.stderr


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    """The working tree as git sees it (tracked + new, not ignored), committed in a fresh repository."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.split("\0")
    root = tmp_path / "clone"
    for name in filter(None, files):
        if (REPO / name).is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, root / name)
    # Tiny world: the DAG, not the data size, is under test.
    params_file = root / "conf/base/parameters_world.yml"
    params = yaml.safe_load(params_file.read_text())
    params["world"]["splits"] = {"train": 6, "val": 3}
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    _shrink_training(root)
    for args in (["git", "init", "-q"], ["git", "add", "-A"],
                 ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "clone"]):
        subprocess.run(args, cwd=root, check=True)
    return root


def _edit_params(path: Path, edit) -> None:
    params = yaml.safe_load(path.read_text())
    edit(params)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def _shrink_training(root: Path) -> None:
    """Two steps per training phase: DVC's DAG is under test, not learning."""
    def pretrain(p):
        p["pretrain"]["vq"].update(steps=2, batch_size=4)
        p["pretrain"]["base"]["global_batch"] = 4
        p["pretrain"]["base"]["trainer"]["max_steps"] = 2

    def train(p):
        p["train"]["run"]["global_batch"] = 4
        p["train"]["run"]["trainer"]["max_steps"] = 2

    _edit_params(root / "conf/base/parameters_pretrain.yml", pretrain)
    _edit_params(root / "conf/base/parameters_train.yml", train)


def test_dvc_repro_runs_the_dag_then_only_what_changed(clone):
    out = _run(["dvc", "repro"], clone)
    for stage in ("world", "ingestion", "rendering", "pretrain", "train"):
        assert f"Running stage '{stage}'" in out
    assert (clone / "dvc.lock").is_file()
    assert len(list((clone / "data/05_model_input/targets").rglob("*.png"))) == 9 * 6
    assert "PASSED" in (clone / "data/08_reporting/ingestion_report.md").read_text()

    assert "Data and pipelines are up to date" in _run(["dvc", "repro"], clone)
    assert "up to date" in _run(["dvc", "status"], clone)
    metrics = _run(["dvc", "metrics", "show"], clone)
    assert "ingestion_summary.json" in metrics and "tables.images" in metrics and "9" in metrics

    # A training parameter changes: only the train stage runs again.
    _edit_params(clone / "conf/base/parameters_train.yml",
                 lambda p: p["train"]["run"]["loss_weights"].update(proxy=2.0))
    out = _run(["dvc", "repro"], clone)
    assert "Running stage 'train'" in out
    assert all(f"Running stage '{s}'" not in out for s in ("world", "ingestion", "rendering", "pretrain"))
    assert "loss_weights.proxy" in _run(["dvc", "params", "diff"], clone)
