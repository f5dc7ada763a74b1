"""Shared fixtures: a throw-away copy of the Kedro project, and running pipelines in it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# OMP_WAIT_POLICY=PASSIVE: OpenMP threads that spin while another process (a torchrun peer, a
# subprocess under test) holds the other core make 2-thread torch up to ~30x slower. Set before torch loads.
for name, value in {"KEDRO_DISABLE_TELEMETRY": "1", "DO_NOT_TRACK": "1", "DVC_NO_ANALYTICS": "1",
                    "GX_ANALYTICS_ENABLED": "false", "OMP_WAIT_POLICY": "PASSIVE",
                    "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}.items():
    os.environ.setdefault(name, value)


@pytest.fixture
def kedro_project(tmp_path: Path) -> Path:
    """The project's conf/ and pyproject.toml in a temporary directory, with fresh data/ layers."""
    project = tmp_path / "project"
    project.mkdir()
    shutil.copytree(REPO / "conf", project / "conf", ignore=shutil.ignore_patterns("local"))
    (project / "conf" / "local").mkdir()
    shutil.copy(REPO / "pyproject.toml", project / "pyproject.toml")
    (project / "src").mkdir()  # Kedro wants a source dir; the package itself is installed
    for layer in ("01_raw", "02_intermediate", "05_model_input", "08_reporting"):
        (project / "data" / layer).mkdir(parents=True)
    return project


def run_kedro(project: Path, pipeline: str | list[str], params: dict | None = None, env: str | None = None) -> dict:
    """Run pipelines in-process, the way `kedro run --pipelines NAME[,...] --params ... --env ENV` would."""
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    bootstrap_project(project)
    cwd = os.getcwd()
    os.chdir(project)  # catalog paths are relative to the project
    try:
        with KedroSession.create(project_path=project, runtime_params=params or {}, env=env) as session:
            return session.run(pipeline_names=[pipeline] if isinstance(pipeline, str) else pipeline)
    finally:
        os.chdir(cwd)
