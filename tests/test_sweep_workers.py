"""Two `kedro run --pipeline sweep` workers on one SQLite study; one is SIGKILLed mid-trial. Its trial is
failed through the heartbeat and retried by the other worker, the study completes, and the best parameters
feed `kedro run --pipeline train --env sweep_best`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml

from conftest import run_kedro
from test_pipelines import TINY_TRAINING, TINY_WORLD, _cli_env

pytestmark = pytest.mark.slow

N_TRIALS = 5
SWEEP = {"n_trials": N_TRIALS, "trial": {"steps": 6, "report_every": 2, "questions_per_type": 4,
                                          "generation_prompts": 4},
         "storage": {"url": "sqlite:///data/07_model_output/sweep/optuna.db", "url_env": None,
                     "heartbeat_interval": 1, "grace_period": 3}}


def _flat(prefix: str, value) -> list[str]:
    if isinstance(value, dict):
        return [item for k, v in value.items() for item in _flat(f"{prefix}.{k}", v)]
    return [f"{prefix}={value}"]


def _worker(project: Path, number: int) -> subprocess.Popen:
    params = ",".join(_flat("sweep", SWEEP) + ["train.run.global_batch=4"])
    log = open(project / f"worker{number}.log", "w")  # noqa: SIM115  (closed with the process)
    return subprocess.Popen([str(Path(sys.executable).with_name("kedro")), "run", "--pipeline", "sweep",
                             "--params", params], cwd=project, stdout=log, stderr=subprocess.STDOUT,
                            env={**_cli_env(), "SGT_SWEEP_WORKER": str(number)})


def test_two_workers_one_killed_the_study_completes_and_feeds_the_sgt_run(kedro_project):
    run_kedro(kedro_project, ["world", "ingestion", "rendering", "pretrain"], {**TINY_WORLD, **TINY_TRAINING})
    storage = f"sqlite:///{kedro_project}/data/07_model_output/sweep/optuna.db"
    victim, survivor = _worker(kedro_project, 0), _worker(kedro_project, 1)
    try:
        # Kill worker 0 in the middle of one of its trials (each trial records its worker's pid).
        deadline, killed_trial = time.monotonic() + 300, None
        while killed_trial is None and time.monotonic() < deadline and victim.poll() is None:
            time.sleep(0.2)
            try:
                trials = optuna.load_study(study_name="sgt-proxy-weights", storage=storage).trials
            except Exception:  # the study or its tables do not exist yet  # noqa: BLE001
                continue
            running = [t for t in trials if t.state == optuna.trial.TrialState.RUNNING
                       and t.user_attrs.get("worker", "").endswith(f":{victim.pid}")]
            if running:
                victim.send_signal(signal.SIGKILL)
                killed_trial = running[0].number
        assert killed_trial is not None, (kedro_project / "worker0.log").read_text()[-3000:]
        assert survivor.wait(timeout=600) == 0, (kedro_project / "worker1.log").read_text()[-3000:]
    finally:
        for process in (victim, survivor):
            if process.poll() is None:
                process.kill()
                process.wait()

    table = pd.read_csv(kedro_project / "data/08_reporting/sweep_trials.csv")
    killed = table[table["number"] == killed_trial].iloc[0]
    assert killed["state"] == "FAIL"  # failed by the survivor through the stopped heartbeat
    retry = table[table["retry_of"] == killed_trial]
    assert len(retry) == 1 and retry.iloc[0]["state"] in ("COMPLETE", "PRUNED")
    params = [c for c in table if c.startswith("param/")]
    assert retry.iloc[0][params].tolist() == killed[params].tolist()  # the same parameters, run again
    assert table["state"].isin(["COMPLETE", "PRUNED"]).sum() == N_TRIALS
    summary = json.loads((kedro_project / "data/07_model_output/sweep/summary.json").read_text())
    assert summary["best"]
    for plot in ("sweep_history.png", "sweep_pareto.png", "sweep_importance.png"):
        assert (kedro_project / "data/08_reporting" / plot).stat().st_size > 10_000

    # The best parameters are a Kedro environment the sgt pipeline runs with.
    best = yaml.safe_load((kedro_project / "conf/sweep_best/parameters_train.yml").read_text())
    chosen = table.loc[table["number"] == summary["best"][0]].iloc[0]
    assert best["train"]["run"]["loss_weights"]["proxy"] == pytest.approx(chosen["param/loss_weights.proxy"])
    run_kedro(kedro_project, "train", {"train": {"run": {"trainer": {"max_steps": 2}}}}, env="sweep_best")
    assert json.loads((kedro_project / "data/08_reporting/train_metrics.json").read_text())["train/steps"] == 2
    assert os.path.isdir(kedro_project / "data/06_models/sgt")
