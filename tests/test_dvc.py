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
        p["pretrain"]["encoder"].update(steps=2, batch_size=4)
        p["pretrain"]["base"]["global_batch"] = 4
        p["pretrain"]["base"]["trainer"]["max_steps"] = 2

    def train(p):
        p["train"]["run"]["global_batch"] = 4
        p["train"]["run"]["trainer"]["max_steps"] = 2

    def study(p):
        p["study"].update(arms=[{"name": "sft_only", "proxy_kind": "none"},
                                {"name": "instance", "proxy_kind": "instance"}], seeds=[0, 1], steps=2,
                          questions_per_type=3, generation_prompts=3,
                          evaluation={"proxy_images": 2, "geneval_per_task": 1, "analysis_images": 3})

    _edit_params(root / "conf/base/parameters_pretrain.yml", pretrain)
    _edit_params(root / "conf/base/parameters_train.yml", train)
    _edit_params(root / "conf/base/parameters_study.yml", study)


def test_dvc_repro_runs_the_dag_then_only_what_changed(clone):
    out = _run(["dvc", "repro"], clone)
    for stage in ("world", "ingestion", "rendering", "pretrain", "train", "evaluation", "study"):
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


def _commit(root: Path, message: str) -> None:
    for args in (["git", "add", "-A"], ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message]):
        subprocess.run(args, cwd=root, check=True)


def _tracked_files(root: Path) -> dict[str, bytes]:
    """Every file of every DVC-tracked output (dvc.lock outs), path -> bytes."""
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    paths = [out["path"] for stage in lock["stages"].values() for out in stage.get("outs", [])]
    files = {}
    for path in paths:
        target = root / path
        for file in ([target] if target.is_file() else sorted(p for p in target.rglob("*") if p.is_file())):
            files[str(file.relative_to(root))] = file.read_bytes()
    return files


def test_remote_push_pull_experiments_metrics_and_plots(clone, tmp_path):
    _run(["dvc", "repro"], clone)
    _run(["dvc", "remote", "add", "-d", "storage", str(tmp_path / "remote")], clone)
    _commit(clone, "repro + remote")

    # A fresh clone restores data and checkpoints byte-identical from the remote.
    _run(["dvc", "push"], clone)
    fresh = tmp_path / "fresh"
    subprocess.run(["git", "clone", "-q", str(clone), str(fresh)], check=True)
    assert not (fresh / "data/06_models/base/model.safetensors").exists()
    _run(["dvc", "pull"], fresh)
    original, pulled = _tracked_files(clone), _tracked_files(fresh)
    assert "data/06_models/base/model.safetensors" in original and "data/06_models/sgt/model.safetensors" in original
    assert pulled.keys() == original.keys() and all(pulled[k] == original[k] for k in original)
    assert "up to date" in _run(["dvc", "status"], fresh)

    # An experiment on the proxy-loss weight re-runs only training and evaluation.
    out = _run(["dvc", "exp", "run", "-S", "conf/base/parameters_train.yml:train.run.loss_weights.proxy=2.5"], clone)
    assert "Running stage 'train'" in out and "Running stage 'evaluation'" in out
    assert "Running stage 'study'" in out  # the study post-trains with parameters_train.yml too
    assert all(f"Running stage '{s}'" not in out for s in ("world", "ingestion", "rendering", "pretrain"))
    shown = _run(["dvc", "exp", "show", "--csv"], clone)
    assert "train.run.loss_weights.proxy" in shown and "2.5" in shown
    diff = _run(["dvc", "metrics", "diff", "--all"], clone)
    assert "eval_metrics.json" in diff and "und/overall" in diff and "train_metrics.json" in diff
    assert "study_metrics.json" in diff and "instance/und/vision_centric/diff" in diff
    assert "loss_weights.proxy" in _run(["dvc", "params", "diff"], clone)
    _run(["dvc", "plots", "show", "-o", str(tmp_path / "plots")], clone)
    page = (tmp_path / "plots/index.html").read_text()
    assert "eval_probe.csv" in page and "eval_attention.csv" in page
