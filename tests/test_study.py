"""The proxy-hierarchy study: confidence intervals and verdicts follow the numbers; the pipeline trains and
evaluates every (arm, seed), resumes without retraining, and reports; the quick preset end to end (slow)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import run_kedro
from PIL import Image
from test_pipelines import TINY_TRAINING, TINY_WORLD, _cli_env

from sgt_pipeline.study import (
    StudyConfig,
    claims_table,
    study_markdown,
    study_metrics,
    summary_table,
)
from sgt_pipeline.study.stats import HOLDS, INCONCLUSIVE, REVERSED, mean_ci, verdict

ARMS = [{"name": "sft_only", "proxy_kind": "none"}, {"name": "reconstruction", "proxy_kind": "reconstruction"},
        {"name": "instance", "proxy_kind": "instance"}]


def test_mean_ci_is_the_student_t_interval():
    mean, low, high = mean_ci([1.0, 2.0, 3.0])
    # sd 1, n 3: half-width t(0.975, 2) / sqrt(3) = 4.3027 / 1.7321
    assert mean == 2.0 and high - mean == pytest.approx(4.302653 / np.sqrt(3), rel=1e-5) and low == 2 * mean - high
    assert np.isnan(mean_ci([1.0])[1]) and mean_ci([np.nan, 1.0, 3.0])[0] == 2.0


def test_verdicts():
    assert verdict([0.1, 0.12, 0.11], *mean_ci([0.1, 0.12, 0.11])[1:]) == HOLDS
    assert verdict([-0.1, -0.12, -0.11], *mean_ci([-0.1, -0.12, -0.11])[1:]) == REVERSED
    assert verdict([0.2, -0.1, 0.05], *mean_ci([0.2, -0.1, 0.05])[1:]) == INCONCLUSIVE
    assert verdict([0.0, 0.0, 0.0], 0.0, 0.0) == INCONCLUSIVE  # the metric never moves
    assert verdict([0.3], np.nan, np.nan) == INCONCLUSIVE  # one seed: no interval


def _results(effects: dict[str, dict[str, list[float]]]) -> pd.DataFrame:
    rows = []
    for arm, metrics in effects.items():
        for metric, values in metrics.items():
            rows += [{"arm": arm, "proxy_kind": arm, "seed": s, "metric": metric, "value": v} for s, v in enumerate(values)]
    return pd.DataFrame(rows)


def test_claims_follow_the_paired_numbers():
    config = StudyConfig.model_validate({"arms": ARMS})
    seeds_base = [0.50, 0.60, 0.55]
    results = _results({
        "sft_only": {"und/vision_centric": seeds_base, "probe/acc_mean": [0.6, 0.6, 0.6],
                     "attention/image_share_mean": [0.5, 0.7, 0.6], "gen/layout": [0.0, 0.0, 0.0]},
        # +0.05 in every seed, although the seeds spread far more than that: pairing detects it.
        "instance": {"und/vision_centric": [v + 0.05 for v in seeds_base], "probe/acc_mean": [0.55, 0.54, 0.56],
                     "attention/image_share_mean": [0.6, 0.5, 0.7], "gen/layout": [0.0, 0.0, 0.0]},
        "reconstruction": {"und/vision_centric": [v + 0.05 for v in seeds_base]},
    })
    claims = claims_table(results, config).set_index(["claim", "versus"])
    assert claims.loc[("Segmentation beats SFT-only on vision-centric understanding", "sft_only"), "verdict"] == HOLDS
    assert claims.loc[("Segmentation beats reconstruction", "reconstruction"), "verdict"] == INCONCLUSIVE  # equal
    assert claims.loc[("Separability rises", "sft_only"), "verdict"] == REVERSED
    assert claims.loc[("Attention to the image rises", "sft_only"), "verdict"] == INCONCLUSIVE
    assert claims.loc[("Layout fidelity of generation rises", "sft_only"), "verdict"] == INCONCLUSIVE  # all zero
    summary = summary_table(results, config)
    row = summary[(summary["arm"] == "instance") & (summary["metric"] == "und/vision_centric")].iloc[0]
    assert row["diff_mean"] == pytest.approx(0.05) and row["diff_ci_high"] - row["diff_ci_low"] < 1e-9
    # An unpaired comparison of the means would not separate them: the arms' own intervals overlap.
    assert row["ci_low"] < summary[(summary["arm"] == "sft_only") & (summary["metric"] == "und/vision_centric")]["ci_high"].iloc[0]
    metrics = study_metrics(summary)
    assert metrics["instance/und/vision_centric/diff"] == pytest.approx(0.05)
    report = study_markdown(results, summary, claims_table(results, config), config)
    assert "**holds**" in report and "**does not hold at this scale**" in report and "| instance |" in report


STUDY_TINY = {"study": {"arms": ARMS, "seeds": [0, 1], "steps": 2, "questions_per_type": 3,
                        "generation_prompts": 3,
                        "evaluation": {"proxy_images": 2, "geneval_per_task": 1, "analysis_images": 3,
                                       "grid_images": 2}}}


def test_study_pipeline_trains_evaluates_resumes_and_reports(kedro_project):
    params = {**TINY_WORLD, **TINY_TRAINING, **STUDY_TINY}
    run_kedro(kedro_project, "study", params)
    data = kedro_project / "data"
    results = pd.read_parquet(data / "07_model_output/study_results.parquet")
    assert set(zip(results["arm"], results["seed"])) == {(a, s) for a in ("sft_only", "reconstruction", "instance")
                                                         for s in (0, 1)}
    steps = results[results["metric"] == "train/steps"]["value"]
    assert (steps == 2).all()
    assert np.isnan(results[(results["arm"] == "sft_only") & (results["metric"] == "proxy/quality")]["value"]).all()
    assert results[(results["arm"] == "instance") & (results["metric"] == "proxy/quality")]["value"].notna().all()
    claims = pd.read_csv(data / "08_reporting/study_claims.csv")
    assert set(claims["verdict"]) <= {HOLDS, REVERSED, INCONCLUSIVE} and len(claims) == 5
    metrics = json.loads((data / "08_reporting/study_metrics.json").read_text())
    assert "instance/und/vision_centric/diff" in metrics
    assert "## The paper's claims" in (data / "08_reporting/study_report.md").read_text()
    with Image.open(data / "08_reporting/study.png") as plot:
        assert plot.size[0] > 800
    assert not (data / "06_models/study_runs").exists() or not any((data / "06_models/study_runs").iterdir())

    # Run again: every (arm, seed) is reused from its stored result, nothing is retrained.
    stored = sorted((data / "07_model_output/study").glob("*.json"))
    stamps = [p.stat().st_mtime_ns for p in stored]
    started = time.perf_counter()
    run_kedro(kedro_project, "study", params)
    assert [p.stat().st_mtime_ns for p in stored] == stamps and len(stored) == 6
    pd.testing.assert_frame_equal(pd.read_parquet(data / "07_model_output/study_results.parquet"), results)
    assert time.perf_counter() - started < 120


@pytest.mark.slow
def test_quick_preset_end_to_end(kedro_project):
    """`kedro run --pipeline study --env study_quick`, as typed: the whole chain on the quick preset."""
    assert (kedro_project / "conf/study_quick/parameters_study.yml").is_file()
    started = time.perf_counter()
    done = subprocess.run([str(Path(sys.executable).with_name("kedro")), "run", "--pipeline", "study", "--env",
                           "study_quick"], cwd=kedro_project, env=_cli_env(), capture_output=True, text=True,
                          timeout=1800)
    wall = time.perf_counter() - started
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    data = kedro_project / "data"
    results = pd.read_parquet(data / "07_model_output/study_results.parquet")
    assert results["arm"].nunique() == 6 and results["seed"].nunique() == 3
    report = (data / "08_reporting/study_report.md").read_text()
    assert report.count("| instance vs ") >= 3
    print(f"quick study preset: {wall / 60:.1f} min")

