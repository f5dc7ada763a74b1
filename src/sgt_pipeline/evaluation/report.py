"""What a person reads after a run: per-layer plots (PNG) and a Markdown report of one evaluation."""

from __future__ import annotations

import io

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")  # files only; never a display
import matplotlib.pyplot as plt
import numpy as np
from PIL import Image
from scipy.stats import binomtest

from sgt_pipeline.evaluation.evaluate import Evaluation


def figure_to_array(figure) -> np.ndarray:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    plt.close(figure)
    buffer.seek(0)
    return np.asarray(Image.open(buffer).convert("RGB"))


def layer_plot(evaluation: Evaluation) -> np.ndarray:
    """Probe accuracy (vs the majority baseline) and attention to the image, per language-model layer."""
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    probe = evaluation.probe
    left.plot(probe["layer"], probe["probe_acc"], marker="o", label="probe accuracy (held out)")
    left.plot(probe["layer"], probe["majority_acc"], ls="--", color="grey", label="majority baseline")
    left.set(xlabel="layer (0 = input embeddings)", ylabel="accuracy", title="Category presence from image tokens")
    left.legend(loc="lower right", fontsize=8)
    attention = evaluation.attention
    if len(attention):
        right.plot(attention["layer"], attention["question_image_share"], marker="o", label="question → image")
        right.plot(attention["layer"], attention["last_image_share"], marker="s", label="answer position → image")
        right.set(ylim=(0, 1))
        twin = right.twinx()
        twin.plot(attention["layer"], attention["question_object_ratio"], color="C3", ls=":", marker="^",
                  label="object / background ratio")
        twin.axhline(1.0, color="C3", lw=0.5)
        twin.set_ylabel("object concentration (1 = uniform)")
        right.legend(loc="upper left", fontsize=8)
        twin.legend(loc="upper right", fontsize=8)
    right.set(xlabel="layer", ylabel="share of attention", title="Where the question looks")
    for axis in (left, right):
        axis.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    return figure_to_array(figure)


def grid_image(evaluation: Evaluation, scale: int = 3) -> np.ndarray | None:
    """The sample grid, enlarged (nearest neighbour) so 64-pixel images are visible."""
    if evaluation.grid is None:
        return None
    grid = Image.fromarray(evaluation.grid)
    return np.asarray(grid.resize((grid.width * scale, grid.height * scale), Image.NEAREST))


def _table(rows: list[tuple[str, ...]], header: tuple[str, ...] = ("metric", "value")) -> str:
    return "\n".join([f"| {' | '.join(header)} |", "|---" * len(header) + "|",
                      *(f"| `{key}` | {' | '.join(values)} |" for key, *values in rows)])


def _with_interval(m: dict, question_type: str) -> str:
    """Accuracy with its Wilson 95% interval over the ``und/<type>_n`` questions."""
    key, n = f"und/{question_type}_acc", m.get(f"und/{question_type}_n")
    if key not in m:
        return "n/a"
    if not n:
        return f"{m[key]:.3f}"
    interval = binomtest(round(m[key] * n), int(n)).proportion_ci(method="wilson")
    return f"{m[key]:.3f} [{interval.low:.3f}, {interval.high:.3f}]"


def markdown_report(evaluation: Evaluation, model_path: str, proxy_kind: str) -> str:
    m = evaluation.metrics
    fmt = lambda key: f"{m[key]:.3f}" if key in m else "n/a"
    types = sorted({k.split("/")[1].rsplit("_acc", 1)[0] for k in m if k.startswith("und/") and k.endswith("_acc")
                    and "pope_" not in k} | ({"pope"} if "und/pope_acc" in m else set()))
    und_rows = [(f"und/{t}_acc", _with_interval(m, t), fmt(f"und/{t}_majority"),
                 f"{fmt(f'und/{t}_nll')} / {fmt(f'und/{t}_nll_shuffled')}") for t in types]
    und_header = ("metric", "accuracy [95% CI]", "majority", "answer loss: true / shuffled image (nats)")
    pope = [(f"und/pope_{s}_f1", f"{fmt(f'und/pope_{s}_f1')} (yes-ratio {fmt(f'und/pope_{s}_yes_ratio')})",
             fmt(f"und/pope_{s}_auroc")) for s in ("random", "popular", "adversarial")]
    pope_header = ("metric", "F1", "AUROC of the yes - no margin")
    gen = [(k, fmt(k)) for k in sorted(m) if k.startswith("gen/")]
    proxy = [(k, fmt(k), fmt(k.replace("proxy/", "proxy_teacher_forced/", 1)),
              fmt(k.replace("proxy/", "proxy_ceiling/", 1))) for k in sorted(m) if k.startswith("proxy/")]
    proxy_header = ("metric", "generated", "teacher-forced (true tokens before each)",
                    "VQ round trip of the true target (ceiling)")
    best = evaluation.probe.loc[evaluation.probe["probe_acc"].idxmax()]
    lines = [
        "# Evaluation report", "",
        (f"Model: `{model_path}` · proxy task: `{proxy_kind}`. Answers are chosen by option scoring (the option "
        "with the highest log-likelihood), so chance is the majority answer shown beside each accuracy."), "",
        "## Understanding", "", _table(und_rows, und_header), "", _table(pope, pope_header), "",
        (f"Mean accuracy over the types: {fmt('und/overall')}. A loss no lower with the true image than with "
         "another image of the split means the answers come from the question alone; a POPE AUROC of 0.5 and "
         f"a margin spread across object words near 0 (here {fmt('und/pope_margin_spread')}) mean the model "
         "does not read the object word either."), "",
        "## Generation (GenEval-style)", "", _table(gen) if gen else "Not run (no shapes world, no detector_path).",
        "", "## Proxy quality", "", _table(proxy, proxy_header) if proxy else "No proxy task.", "",
        "## Analyses", "",
        (f"Linear probe on image-token features: best layer {int(best['layer'])} at accuracy "
        f"{best['probe_acc']:.3f} (majority {best['majority_acc']:.3f}), Fisher ratio {best['fisher_ratio']:.3f}. "
        f"Mean share of question-token attention on the image: {fmt('attention/image_share_mean')}."), "",
        "![per-layer analyses](eval_layers.png)", "",
        "## Samples", "", "Rows: input image · rendered target · generated target · text-to-image from its caption.",
        "", "![samples](eval_samples.png)", "",
    ]
    return "\n".join(lines)
