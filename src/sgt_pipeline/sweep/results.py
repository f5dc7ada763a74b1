"""What a study leaves for people and for the next run: a trials table, PNG plots, the best parameters as the
``train`` parameters the ``sgt`` pipeline consumes, and a short Markdown summary."""

from __future__ import annotations

import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import optuna
import pandas as pd
from optuna.trial import TrialState
from optuna.visualization import matplotlib as optuna_plots

from sgt_pipeline.evaluation.report import figure_to_array
from sgt_pipeline.sweep.trial import OBJECTIVES, apply_params
from sgt_pipeline.training.post_train import PostTrainConfig


def trials_table(study: optuna.Study) -> pd.DataFrame:
    """One row per trial: number, state, objective value(s), parameters, scores and bookkeeping."""
    rows = []
    for trial in study.get_trials(deepcopy=False):
        row = {"number": trial.number, "state": trial.state.name,
               "duration_s": trial.duration.total_seconds() if trial.duration else np.nan}
        names = ["value"] if len(study.directions) == 1 else [f"value_{k}" for k in OBJECTIVES]
        row.update(dict(zip(names, trial.values or [np.nan] * len(names))))
        row.update({f"param/{k}": v for k, v in trial.params.items()})
        row.update(trial.user_attrs)
        row["retry_of"] = trial.system_attrs.get("failed_trial", np.nan)
        rows.append(row)
    return pd.DataFrame(rows)


def best_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The best trial (single objective) or the Pareto front (multi), best understanding first."""
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return []
    return sorted(study.best_trials, key=lambda t: -t.values[0])


def best_train_parameters(study: optuna.Study, train: PostTrainConfig) -> dict:
    """``{"train": ...}``: the ``train`` parameters with the chosen trial's values substituted.

    Multi-objective studies choose, on the Pareto front, the trial with the highest mean of the two scores."""
    front = best_trials(study)
    if not front:
        raise ValueError(f"study {study.study_name!r} has no complete trial yet")
    chosen = max(front, key=lambda t: float(np.mean(t.values)))
    run = apply_params(train.run, chosen.params)
    return {"train": train.model_copy(update={"run": run}).model_dump(mode="json")}


def _figure(plot) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        axes = plot()
    axes = np.atleast_1d(axes)
    figure = axes.flat[0].figure
    figure.set_size_inches(max(figure.get_size_inches()[0], 7), max(figure.get_size_inches()[1], 4.5))
    return figure_to_array(figure)


def history_plot(study: optuna.Study) -> np.ndarray:
    """Objective value per trial and the best so far (single); each score per trial (multi)."""
    if len(study.directions) == 1:
        return _figure(lambda: optuna_plots.plot_optimization_history(study, target_name="scalarised score"))
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for k, name in enumerate(OBJECTIVES):
        axis.plot([t.number for t in trials], [t.values[k] for t in trials], marker="o", label=name)
    axis.set_xlabel("trial")
    axis.set_ylabel("score (higher is better)")
    axis.set_title("Scores per trial")
    axis.legend()
    return figure_to_array(figure)


def pareto_plot(study: optuna.Study) -> np.ndarray:
    """Understanding against generation for every complete trial, the Pareto front highlighted. For a
    single-objective study the same axes show the trade-off its scalarisation chose along."""
    if len(study.directions) == 2:
        return _figure(lambda: optuna_plots.plot_pareto_front(study, target_names=list(OBJECTIVES)))
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    figure, axis = plt.subplots(figsize=(7, 4.5))
    points = np.array([[t.user_attrs.get(k, np.nan) for k in OBJECTIVES] for t in trials]).reshape(-1, 2)
    axis.scatter(points[:, 0], points[:, 1], c=[t.number for t in trials], cmap="viridis")
    if len(trials):
        best = study.best_trial
        axis.scatter([best.user_attrs["understanding"]], [best.user_attrs["generation"]], s=160,
                     facecolors="none", edgecolors="red", label=f"best (trial {best.number})")
        axis.legend()
    axis.set_xlabel("understanding (held-out accuracy)")
    axis.set_ylabel("generation (1 - NLL / ln K)")
    axis.set_title("Trials: understanding vs generation (colour = trial number)")
    return figure_to_array(figure)


def importance_plot(study: optuna.Study) -> np.ndarray:
    """Parameter importances (PED-ANOVA: no scikit-learn needed) per objective."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    names = ["scalarised score"] if len(study.directions) == 1 else list(OBJECTIVES)
    figure, axes = plt.subplots(1, len(names), figsize=(6 * len(names), 4), squeeze=False)
    for k, (axis, name) in enumerate(zip(axes[0], names)):
        axis.set_title(f"Importance for {name}")
        if len(complete) < 4 or len({tuple(sorted(t.params.items())) for t in complete}) < 2:
            axis.text(0.5, 0.5, f"needs >= 4 complete trials\n({len(complete)} so far)", ha="center",
                      va="center", transform=axis.transAxes)
            axis.set_axis_off()
            continue
        target = None if len(names) == 1 else (lambda t, k=k: t.values[k])
        importances = optuna.importance.get_param_importances(
            study, target=target, evaluator=optuna.importance.PedAnovaImportanceEvaluator())
        axis.barh(list(importances)[::-1], list(importances.values())[::-1], color="tab:blue")
        axis.set_xlabel("importance (PED-ANOVA, normalised)")
    figure.tight_layout()
    return figure_to_array(figure)


def summary_markdown(study: optuna.Study, table: pd.DataFrame, storage_url: str) -> str:
    counts = table["state"].value_counts().to_dict() if len(table) else {}
    lines = [f"# Sweep `{study.study_name}`", "",
             f"Storage: `{storage_url}`; objective: {'single (scalarised)' if len(study.directions) == 1 else 'multi (understanding, generation)'}.",
             "Trials: " + ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items())) + ".", ""]
    front = best_trials(study)
    if front:
        lines += ["| trial | understanding | generation | parameters |", "|---|---|---|---|"]
        for t in front:
            params = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in t.params.items())
            lines.append(f"| {t.number} | {t.user_attrs.get('understanding', np.nan):.3f} | "
                         f"{t.user_attrs.get('generation', np.nan):.3f} | {params} |")
        lines += ["", ("Best parameters: `conf/sweep_best/parameters_train.yml`; use them with "
                      "`kedro run --pipeline sgt --env sweep_best`.")]
    return "\n".join(lines) + "\n"
