"""Optuna sweeps: the search space maps onto the training configuration, a study runs real (tiny) trials,
persists in its storage and continues when run again, prunes, reports a Pareto front, and writes the best
parameters as ``train`` parameters."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState
from pydantic import ValidationError
from test_training import _examples, adapter  # noqa: F401  (the tiny Janus fixture)

from sgt_pipeline.evaluation.held_out import HeldOut, score
from sgt_pipeline.sweep import SweepConfig, TrialRunner, open_study, run_worker
from sgt_pipeline.sweep.results import (
    best_train_parameters,
    history_plot,
    importance_plot,
    pareto_plot,
    summary_markdown,
    trials_table,
)
from sgt_pipeline.sweep.study import make_pruner
from sgt_pipeline.sweep.trial import apply_params
from sgt_pipeline.training.post_train import PostTrainConfig
from sgt_pipeline.training.umm import MixtureTrainingConfig

RUN = MixtureTrainingConfig.model_validate({
    "proxy_kind": "instance", "mixture": {"proxy": 2.0, "understanding": 0.5, "generation": 0.5},
    "global_batch": 4, "trainer": {"max_steps": 100, "lr": 3e-3, "warmup_steps": 10, "precision": "fp32",
                                   "out_dir": "unused"}})
SPACE = {"loss_weights.proxy": {"low": 0.25, "high": 4.0, "log": True},
         "proxy_sft_ratio": {"low": 0.5, "high": 4.0, "log": True}}


def _config(tmp_path, **overrides) -> SweepConfig:
    base = {"space": SPACE, "trial": {"steps": 4, "report_every": 2, "questions_per_type": 4,
                                      "generation_prompts": 4},
            "storage": {"url": f"sqlite:///{tmp_path}/optuna.db", "url_env": None}, "n_trials": 3,
            "runs_dir": str(tmp_path / "runs")}
    return SweepConfig.model_validate({**base, **overrides})


def test_search_space_maps_onto_the_training_configuration():
    run = apply_params(RUN, {"loss_weights.proxy": 3.0, "loss_weights.understanding": 0.5,
                             "proxy_sft_ratio": 4.0, "proxy_kind": "semantic"})
    assert run.loss_weights.proxy == 3.0 and run.loss_weights.understanding == 0.5
    assert run.loss_weights.generation == RUN.loss_weights.generation
    # proxy:SFT = 4 keeps the SFT split (und 0.5, gen 0.5) and gives the proxy 4x their sum.
    assert run.mixture == {"proxy": 4.0, "understanding": 0.5, "generation": 0.5}
    assert run.proxy_kind == "semantic" and RUN.proxy_kind == "instance"


@pytest.mark.parametrize(("space", "message"), [
    ({"lr": {"low": 1e-4, "high": 1e-3}}, "unknown parameter"),
    ({"loss_weights.proxy": {"low": 0.0, "high": 1.0, "log": True}}, "low > 0"),
    ({"loss_weights.proxy": {"low": 1.0}}, "either a range"),
    ({"proxy_kind": {"low": 0.1, "high": 1.0}}, "needs choices"),
])
def test_bad_search_spaces_are_refused_before_any_work(space, message):
    with pytest.raises(ValidationError, match=message):
        SweepConfig.model_validate({"space": space})


def _held_out(model, examples) -> HeldOut:
    ids = [int(i) for i in examples.image_ids[:4]]
    questions = pd.DataFrame({
        "question_id": range(4), "image_id": ids, "type": ["count"] * 4, "sampling": np.nan,
        "question": ["how many circles are there?"] * 4, "options": [["one", "two"]] * 4,
        "answer": ["two", "one", "two", "one"], "category_ids": [[1]] * 4, "ann_ids": [[1]] * 4})
    prompts = list(examples.generation["prompt"][:4])
    return HeldOut(questions, examples.images, {i: k for k, i in enumerate(examples.image_ids)}, prompts,
                   model.image_tokens(examples.images[:4]), model.model.config.vq_config.num_embeddings)


@pytest.fixture
def runner_parts(adapter, tmp_path):  # noqa: F811
    base = tmp_path / "base"
    adapter.save_pretrained(base)
    examples = _examples()
    return str(base), examples, _held_out(adapter, examples)


def test_score_is_accuracy_and_normalised_generation_likelihood(adapter, runner_parts):  # noqa: F811
    _, _, held_out = runner_parts
    scores = score(adapter, held_out)
    assert 0 <= scores["understanding"] <= 1
    # An untrained model guesses codes about uniformly: NLL near ln(K), generation score near 0.
    assert scores["generation_nll"] == pytest.approx(math.log(held_out.codebook_size), rel=0.1)
    assert scores["generation"] == pytest.approx(1 - scores["generation_nll"] / math.log(held_out.codebook_size))


def test_a_study_runs_persists_and_continues(runner_parts, tmp_path):
    base, examples, held_out = runner_parts
    config = _config(tmp_path)
    study = open_study(config)
    assert run_worker(study, TrialRunner(config, base, RUN, examples, held_out), config) == 3
    table = trials_table(study)
    assert list(table["state"]) == ["COMPLETE"] * 3
    assert table["value"].notna().all() and (table["steps"] == 4).all()
    assert len({(a, b) for a, b in zip(table["param/loss_weights.proxy"], table["param/proxy_sft_ratio"])}) == 3
    assert not any((tmp_path / "runs").rglob("*.safetensors"))  # finished trials' checkpoints are removed

    # Run again with a larger budget: the stored study continues, nothing is redone.
    more = _config(tmp_path, n_trials=4)
    again = open_study(more)
    assert len(again.trials) == 3
    assert run_worker(again, TrialRunner(more, base, RUN, examples, held_out), more) == 1
    assert run_worker(again, TrialRunner(more, base, RUN, examples, held_out), more) == 0  # budget spent

    # The best trial's parameters as `train` parameters the sgt pipeline validates.
    best = best_train_parameters(again, PostTrainConfig(run=RUN))
    parsed = PostTrainConfig.model_validate(best["train"])
    chosen = again.best_trial.params
    assert parsed.run.loss_weights.proxy == pytest.approx(chosen["loss_weights.proxy"])
    assert parsed.run.mixture["proxy"] == pytest.approx(chosen["proxy_sft_ratio"] * 1.0)
    for image in (history_plot(again), pareto_plot(again), importance_plot(again)):
        assert image.ndim == 3 and image.shape[0] > 200 and image.std() > 0
    assert f"| {again.best_trial.number} |" in summary_markdown(again, trials_table(again), "sqlite:///x")


def test_intermediate_reports_let_the_pruner_stop_weak_trials(runner_parts, tmp_path):
    base, examples, held_out = runner_parts
    config = _config(tmp_path, n_trials=4, pruner={"kind": "median", "startup_trials": 1})
    assert isinstance(make_pruner(config), optuna.pruners.MedianPruner)
    assert isinstance(make_pruner(_config(tmp_path, pruner={"kind": "hyperband"})), optuna.pruners.HyperbandPruner)
    study = open_study(config)
    # Two trials with the same parameters: the second reports exactly the first's values, which a median
    # pruner lets through; then one whose intermediate score is worse must stop early.
    for params in ({"loss_weights.proxy": 1.0, "proxy_sft_ratio": 1.0},) * 2:
        study.enqueue_trial(params)
    run_worker(study, TrialRunner(config, base, RUN, examples, held_out), _config(tmp_path, n_trials=2))
    intermediate = study.trials[0].intermediate_values
    assert sorted(intermediate) == [2]  # reported at step 2 (the final step 4 is the trial's value)
    assert study.trials[1].intermediate_values == intermediate
    # The next trial trains identically but is scored on a harsher scale (generation normalised by ln 2
    # instead of ln K): its intermediate value falls below the median, and it stops at step 2.
    runner = TrialRunner(config, base, RUN, examples, dataclasses.replace(held_out, codebook_size=2))
    study.enqueue_trial({"loss_weights.proxy": 1.0, "proxy_sft_ratio": 1.0})
    run_worker(study, runner, _config(tmp_path, n_trials=3))
    last = study.trials[-1]
    assert last.state == TrialState.PRUNED and last.user_attrs["steps"] == 2


def test_multi_objective_study_reports_a_pareto_front(runner_parts, tmp_path):
    base, examples, held_out = runner_parts
    config = _config(tmp_path, objective={"mode": "multi"}, n_trials=2)
    study = open_study(config)
    run_worker(study, TrialRunner(config, base, RUN, examples, held_out), config)
    assert len(study.directions) == 2
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert all(t.values == [t.user_attrs["understanding"], t.user_attrs["generation"]] for t in complete)
    assert study.best_trials and pareto_plot(study).std() > 0
    # The same study name cannot silently switch objective.
    with pytest.raises(ValueError, match="objective"):
        open_study(_config(tmp_path, n_trials=2))
