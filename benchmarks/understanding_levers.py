"""Which levers make the tiny Janus answer from the image: packing, the encoder stage, grounding.

Trains the default-width tiny model on the world's understanding data alone (no generation) from the
data the main job wrote (`kedro run --pipelines world,ingestion,rendering` first), optionally after the
encoder and grounding stages of `training.encoder` / `training.grounding`, and prints held-out accuracy
per question type with its majority baseline and the POPE AUROC of the yes - no margin every
`--eval-every` steps. The count questions include one absent category per image, so that their majority
answer is near 0.5. Results and their reading: docs/embedded_default.md.

    python benchmarks/understanding_levers.py --name B --stem 32,64,128 --turns 8 --steps 600 --eval-every 200
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: no spinning OpenMP threads

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from pycocotools.coco import COCO

from sgt_pipeline.evaluation.questions import QuestionConfig, build_questions
from sgt_pipeline.evaluation.understanding import evaluate_understanding
from sgt_pipeline.models.adapter import JanusAdapter
from sgt_pipeline.models.config import TinyJanusConfig, build_tiny_janus
from sgt_pipeline.models.tokenizer import build_processor, build_word_tokenizer
from sgt_pipeline.rendering import Palette
from sgt_pipeline.training.base_model import text_vocabulary
from sgt_pipeline.training.config import TrainerConfig
from sgt_pipeline.training.encoder import EncoderTrainingConfig, patch_labels, train_vision_encoder
from sgt_pipeline.training.examples import load_split_examples
from sgt_pipeline.training.grounding import GroundingConfig, grid_word_ids, ground_language_model
from sgt_pipeline.training.umm import MixtureTrainingConfig, train_umm

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ["images", "qa", "captions", "proxy_targets_index", "proxy_targets", "raw_dataset", "palettes",
            "categories"]


@torch.no_grad()
def grid_pope_accuracy(adapter, pope, images, rows, grid_ids, batch_size: int = 64) -> float:
    """Accuracy of yes/no answers with each image's placeholders holding its grid words (a text question)."""
    correct = []
    placeholder = adapter.model.config.image_token_id
    for start in range(0, len(pope), batch_size):
        part = pope.iloc[start:start + batch_size]
        picked = [rows[int(i)] for i in part["image_id"]]
        scores = []
        for answer in ("yes", "no"):
            batch = adapter.conversation_batch(images[picked], [[(q, answer)] for q in part["question"]])
            del batch["pixel_values"]
            input_ids = batch["input_ids"].clone()
            input_ids[input_ids == placeholder] = torch.from_numpy(grid_ids[picked]).flatten()
            logits, targets, row = adapter.supervised_logits({**batch, "input_ids": input_ids})
            token_scores = torch.log_softmax(logits, -1).gather(1, targets[:, None])[:, 0]
            scores.append(torch.zeros(len(part)).index_add_(0, row, token_scores))
        correct += ((scores[0] > scores[1]).numpy() == (part["answer"] == "yes").to_numpy()).tolist()
    return float(sum(correct) / len(correct))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True)
    parser.add_argument("--stem", default="", help="conv stem channels, e.g. 32,64,128 (default: linear patchify)")
    parser.add_argument("--turns", type=int, default=1, help="questions per conversation")
    parser.add_argument("--steps", type=int, default=600, help="understanding steps (0: stop after the stages)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--encoder-steps", type=int, default=0)
    parser.add_argument("--ground", type=int, default=0, help="grounding steps")
    parser.add_argument("--ground-turns", type=int, default=12)
    parser.add_argument("--types", default="", help="train only on these world question types, e.g. exists,count")
    parser.add_argument("--eval-every", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    bootstrap_project(ROOT)
    with KedroSession.create(project_path=ROOT) as session:
        catalog = session.load_context().catalog
        data = {name: catalog.load(name) for name in DATASETS}
    split = {s: load_split_examples(s, data["images"], data["qa"], data["captions"], data["proxy_targets_index"],
                                    data["proxy_targets"], ["instance", "semantic"]) for s in ("train", "val")}
    train, val = split["train"], split["val"]
    if args.types:
        kept = train.understanding["type"].isin(args.types.split(","))
        train.understanding = train.understanding[kept].reset_index(drop=True)
    tokenizer = build_word_tokenizer(sorted(set(text_vocabulary(train)) | set(text_vocabulary(val))))
    tiny = TinyJanusConfig(image_size=64, patch_size=8, hidden_size=128, num_layers=4, num_heads=4,
                           intermediate_size=256, vision_hidden_size=128, vision_layers=2, vq_codebook_size=512,
                           initializer_range=0.04,
                           vision_stem_channels=[int(c) for c in args.stem.split(",")] if args.stem else None)
    adapter = JanusAdapter(build_tiny_janus(tiny, tokenizer), build_processor(tokenizer, 64, 64))
    coco = COCO(data["raw_dataset"]["splits"]["val"]["instances_json"])
    questions = build_questions(coco, QuestionConfig(count_absent_per_image=1))
    rows = {int(image_id): k for k, image_id in enumerate(val.image_ids)}

    def evaluate(tag: str) -> None:
        adapter.model.eval()
        _, metrics = evaluate_understanding(adapter, questions, val.images, rows, shuffled_images=True)
        pope = {"und/pope_acc", "und/pope_auroc", "und/pope_majority", "und/pope_nll", "und/pope_nll_shuffled"}
        shown = {k.removeprefix("und/"): round(v, 3) for k, v in metrics.items()
                 if k in pope or (k.endswith(("_acc", "_majority", "_nll", "_nll_shuffled"))
                                  and not k.startswith("und/pope_"))}
        print(f"[{args.name} {tag}] {json.dumps(shown)}", flush=True)

    palette = Palette.from_dict(data["palettes"]["semantic"])
    patches, categories = patch_labels(train.targets["semantic"], palette, 8)
    work = Path(tempfile.mkdtemp(prefix=f"levers_{args.name}_"))
    started = time.perf_counter()
    if args.encoder_steps:
        _, quality = train_vision_encoder(adapter, train.images, patches, len(categories) + 1,
                                          EncoderTrainingConfig(steps=args.encoder_steps), work / "encoder")
        print(f"[{args.name} encoder {time.perf_counter() - started:.0f}s] {json.dumps(quality)}", flush=True)
    if args.ground:
        names = dict(zip(data["categories"]["category_id"].astype(int), data["categories"]["name"]))
        category_names = [names[c] for c in categories]
        grid = grid_word_ids(patches, category_names, tokenizer)
        ground_language_model(adapter, train, grid, category_names,
                              GroundingConfig(steps=args.ground, turns=args.ground_turns), work / "grounding")
        evaluate(f"grounded {time.perf_counter() - started:.0f}s")
        val_patches, _ = patch_labels(val.targets["semantic"], palette, 8)
        val_grid = grid_word_ids(val_patches, category_names, tokenizer)
        pope = questions[(questions["type"] == "pope") & (questions["sampling"] == "random")]
        print(f"[{args.name} grounded] POPE random asked with the grid words in place of the image: "
              f"{grid_pope_accuracy(adapter, pope, val.images, rows, val_grid):.3f}", flush=True)
    if not args.steps:
        return
    every = args.eval_every or args.steps
    run = MixtureTrainingConfig(
        proxy_kind="none", mixture={"understanding": 1.0}, global_batch=args.batch, understanding_turns=args.turns,
        trainer=TrainerConfig(max_steps=args.steps, lr=args.lr, warmup_steps=50, schedule="cosine", precision="fp32",
                              checkpoint_every=args.steps, log_every=50, resume="never", out_dir=str(work / "umm")))

    def after_step(step: int) -> None:
        if step % every == 0:
            evaluate(f"step {step} {time.perf_counter() - started:.0f}s")

    train_umm(adapter, train, run, after_step=after_step)


if __name__ == "__main__":
    main()
