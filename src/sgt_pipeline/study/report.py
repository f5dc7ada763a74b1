"""The study's tables, verdicts, plot and Markdown report, all computed from the long results table."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from sgt_pipeline.evaluation.report import figure_to_array
from sgt_pipeline.study.arms import PROXY_QUALITY
from sgt_pipeline.study.config import StudyConfig
from sgt_pipeline.study.stats import mean_ci, verdict

# Columns of the paper-shaped table: (metric, label).
COLUMNS = [("und/count_acc", "count"), ("und/relation_2d_acc", "2D relation"), ("und/depth_order_acc", "depth order"),
           ("und/color_acc", "colour"), ("und/vision_centric", "vision-centric"), ("und/pope_f1", "POPE F1"),
           ("gen/geneval_overall", "GenEval"), ("gen/likelihood_score", "gen. likelihood"),
           ("proxy/quality", "proxy quality"), ("probe/acc_mean", "probe acc."),
           ("attention/image_share_mean", "attention to image")]

# The paper's claims: (claim, metric, arm, versus). Arms absent from a study are skipped.
CLAIMS = [
    ("Segmentation beats SFT-only on vision-centric understanding", "und/vision_centric", "instance", "sft_only"),
    ("Segmentation beats SFT-only on vision-centric understanding", "und/vision_centric", "semantic", "sft_only"),
    ("Segmentation beats reconstruction", "und/vision_centric", "instance", "reconstruction"),
    ("Segmentation beats reconstruction", "und/vision_centric", "semantic", "reconstruction"),
    ("Layout fidelity of generation rises", "gen/layout", "instance", "sft_only"),
    ("Separability rises", "probe/acc_mean", "instance", "sft_only"),
    ("Attention to the image rises", "attention/image_share_mean", "instance", "sft_only"),
]


def _values(results: pd.DataFrame, arm: str, metric: str) -> pd.Series:
    part = results[(results["arm"] == arm) & (results["metric"] == metric)]
    return part.set_index("seed")["value"].sort_index()


def summary_table(results: pd.DataFrame, config: StudyConfig) -> pd.DataFrame:
    """One row per (arm, metric): mean, CI bounds, seeds; and the paired difference against the baseline."""
    rows = []
    for arm in [a.name for a in config.arms]:
        for metric in sorted(results.loc[results["arm"] == arm, "metric"].unique()):
            values = _values(results, arm, metric)
            mean, low, high = mean_ci(values, config.confidence)
            row = {"arm": arm, "metric": metric, "mean": mean, "ci_low": low, "ci_high": high, "n": len(values)}
            if arm != config.baseline:
                diff = paired_difference(results, arm, config.baseline, metric, config.confidence)
                row.update({"diff_mean": diff[0], "diff_ci_low": diff[1], "diff_ci_high": diff[2]})
            rows.append(row)
    return pd.DataFrame(rows)


def paired_difference(results: pd.DataFrame, arm: str, versus: str, metric: str,
                      confidence: float = 0.95) -> tuple[float, float, float, np.ndarray]:
    """(mean, low, high, per-seed differences) of ``arm - versus`` over the seeds both have."""
    a, b = _values(results, arm, metric), _values(results, versus, metric)
    seeds = a.index.intersection(b.index)
    differences = (a[seeds] - b[seeds]).to_numpy()
    mean, low, high = mean_ci(differences, confidence)
    return mean, low, high, differences


def claims_table(results: pd.DataFrame, config: StudyConfig) -> pd.DataFrame:
    arms = {a.name for a in config.arms}
    rows = []
    for claim, metric, arm, versus in CLAIMS:
        if arm not in arms or versus not in arms:
            continue
        mean, low, high, differences = paired_difference(results, arm, versus, metric, config.confidence)
        rows.append({"claim": claim, "arm": arm, "versus": versus, "metric": metric, "diff_mean": mean,
                     "diff_ci_low": low, "diff_ci_high": high, "seeds": len(differences),
                     "verdict": verdict(differences, low, high)})
    return pd.DataFrame(rows)


def study_metrics(summary: pd.DataFrame) -> dict[str, float]:
    """Flat ``<arm>/<metric>`` means and ``<arm>/<metric>/diff`` paired differences (DVC metrics)."""
    shown = {m for m, _ in COLUMNS}
    metrics = {}
    for row in summary[summary["metric"].isin(shown)].itertuples():
        metrics[f"{row.arm}/{row.metric}"] = row.mean
        if "diff_mean" in summary and np.isfinite(getattr(row, "diff_mean", np.nan)):
            metrics[f"{row.arm}/{row.metric}/diff"] = row.diff_mean
    return {k: (float(v) if np.isfinite(v) else None) for k, v in metrics.items()}


def _cell(summary: pd.DataFrame, arm: str, metric: str) -> str:
    row = summary[(summary["arm"] == arm) & (summary["metric"] == metric)]
    if not len(row) or not np.isfinite(row["mean"].iloc[0]):
        return "—"
    r = row.iloc[0]
    half = (r["ci_high"] - r["ci_low"]) / 2 if np.isfinite(r["ci_low"]) else float("nan")
    return f"{r['mean']:.3f} ± {half:.3f}" if np.isfinite(half) else f"{r['mean']:.3f}"


def study_plot(results: pd.DataFrame, summary: pd.DataFrame, config: StudyConfig) -> np.ndarray:
    """Per measure: each arm's mean with its CI, and every seed's value as a dot."""
    metrics = [(m, label) for m, label in COLUMNS if m in set(summary["metric"])]
    arms = [a.name for a in config.arms]
    columns = 4
    rows = int(np.ceil(len(metrics) / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.2 * rows), squeeze=False)
    colours = plt.get_cmap("tab10")(np.arange(len(arms)))
    for axis, (metric, label) in zip(axes.flat, metrics):
        part = summary[summary["metric"] == metric].set_index("arm").reindex(arms)
        means = part["mean"].to_numpy(dtype=float)
        errors = np.vstack([means - part["ci_low"].to_numpy(dtype=float), part["ci_high"].to_numpy(dtype=float) - means])
        axis.bar(range(len(arms)), np.nan_to_num(means), yerr=np.nan_to_num(errors), color=colours, alpha=0.75,
                 capsize=3)
        for k, arm in enumerate(arms):
            seeds = _values(results, arm, metric)
            axis.scatter(np.full(len(seeds), k), seeds, s=10, color="black", zorder=3)
        axis.set_title(label)
        axis.set_xticks(range(len(arms)), arms, rotation=35, ha="right", fontsize=8)
    for axis in list(axes.flat)[len(metrics):]:
        axis.set_axis_off()
    figure.suptitle(f"Proxy-hierarchy study: mean ± {config.confidence:.0%} CI over seeds {config.seeds} (dots: seeds)")
    figure.tight_layout()
    return figure_to_array(figure)


def study_markdown(results: pd.DataFrame, summary: pd.DataFrame, claims: pd.DataFrame, config: StudyConfig,
                   wall_time_s: float | None = None) -> str:
    arms = [a.name for a in config.arms]
    metrics = [(m, label) for m, label in COLUMNS if m in set(summary["metric"])]
    steps = results.loc[results["metric"] == "train/steps", "value"]
    lines = ["# Proxy-hierarchy study", "",
             f"Arms {', '.join(arms)}; seeds {config.seeds}; {int(steps.max()) if len(steps) else '?'} optimizer "
             "steps and the same examples per step for every arm, from one base model (SFT-only spends the "
             "proxy's share of each batch on understanding and text-to-image). Cells: mean ± half-width of the "
             f"{config.confidence:.0%} t interval over seeds."
             + (f" Wall time {wall_time_s / 60:.1f} min." if wall_time_s else ""), "",
             "| arm | " + " | ".join(label for _, label in metrics) + " |",
             "|---" * (len(metrics) + 1) + "|"]
    for arm in arms:
        lines.append(f"| {arm} | " + " | ".join(_cell(summary, arm, m) for m, _ in metrics) + " |")
    proxy_notes = ", ".join(f"{a.name}: `{PROXY_QUALITY[a.proxy_kind]}`" for a in config.arms
                            if a.proxy_kind in PROXY_QUALITY)
    lines += ["", f"Proxy quality is each arm's own measure ({proxy_notes}).", "",
              f"## Paired differences against `{config.baseline}`", "",
              "| arm | " + " | ".join(label for _, label in metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
    for arm in arms:
        if arm == config.baseline:
            continue
        cells = []
        for metric, _ in metrics:
            mean, low, high, _ = paired_difference(results, arm, config.baseline, metric, config.confidence)
            cells.append("—" if not np.isfinite(mean) else f"{mean:+.3f} [{low:+.3f}, {high:+.3f}]"
                         if np.isfinite(low) else f"{mean:+.3f}")
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    lines += ["", "## The paper's claims", "",
              ("A claim holds when the whole confidence interval of its paired difference (same seed) is above "
              "zero, does not hold at this scale when it is below zero, and is inconclusive otherwise."), "",
              "| claim | arm vs | measure | difference [CI] | verdict |", "|---|---|---|---|---|"]
    for row in claims.itertuples():
        ci = (f"{row.diff_mean:+.3f} [{row.diff_ci_low:+.3f}, {row.diff_ci_high:+.3f}]"
              if np.isfinite(row.diff_ci_low) else f"{row.diff_mean:+.3f}")
        lines.append(f"| {row.claim} | {row.arm} vs {row.versus} | `{row.metric}` | {ci} | **{row.verdict}** |")
    lines += ["", "![study](study.png)", ""]
    return "\n".join(lines)

