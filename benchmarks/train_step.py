"""The pipeline's SGT training step against a bare forward/backward/optimizer loop, in one run.

Same tiny Janus (the embedded default's architecture), same batches, same precision: the Trainer runs
`SGTLoss` over `SGTBatches` (every micro-batch mixes proxy:SFT = 2:1, built on the fly, as in the pipeline); the
bare loop runs the same module over the same batches, built beforehand, with a plain AdamW step. Prints

- step ratio Trainer / bare loop (goal <= 1.10), checkpoint writing excluded (reported apart);
- the share of the Trainer's wall time spent building batches (goal <= 5%);
- FLOP/s of the step (torch's FLOP counter on one step of each task) against the same run's
  large-matmul rate in the same dtype (goal >= 50%).

    python benchmarks/train_step.py [--steps 40] [--batch 32] [--precision fp32|bf16] [--threads 2]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: no spinning OpenMP threads

import argparse
import copy
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml
from torch.utils.flop_counter import FlopCounterMode

from sgt_pipeline.models import (
    JanusAdapter,
    TinyJanusConfig,
    build_processor,
    build_tiny_janus,
)
from sgt_pipeline.models.tokenizer import build_word_tokenizer
from sgt_pipeline.training.batches import SGTBatches
from sgt_pipeline.training.config import TrainerConfig
from sgt_pipeline.training.examples import SplitExamples
from sgt_pipeline.training.instructions import instruction_words
from sgt_pipeline.training.objective import LossWeights, SGTLoss, sgt_objective
from sgt_pipeline.training.trainer import Trainer
from sgt_pipeline.world import WorldConfig, vocabulary

MIXTURE = {"proxy": 2.0, "understanding": 0.5, "generation": 0.5}


def synthetic_examples(n: int, size: int) -> SplitExamples:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    targets = np.zeros_like(images)
    targets[:, size // 4: 3 * size // 4, size // 4: 3 * size // 4] = rng.integers(
        0, 256, (n, 1, 1, 3), dtype=np.uint8)
    questions = ["how many circles are there?", "is there a red square?", "what color is the star?"]
    answers = ["two", "yes", "red"]
    understanding = pd.DataFrame({"row": np.repeat(np.arange(n), 3), "question": questions * n,
                                  "answer": answers * n, "type": ["q"] * (3 * n)})
    generation = pd.DataFrame({"row": np.arange(n),
                               "prompt": ["a red circle and a blue square on a striped background"] * n})
    return SplitExamples(np.arange(n), images, {"instance": targets}, understanding, generation)


def matmul_rate(dtype: torch.dtype, n: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - started)
    return 2 * n**3 / best


def step_flops(module: SGTLoss, batches: SGTBatches, autocast) -> float:
    """FLOPs of forward + backward of one (mixed) micro-batch."""
    counter = FlopCounterMode(display=False)
    with counter, autocast():
        loss, _ = module(batches(0, 0))
    with counter:
        loss.backward()
    module.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--precision", choices=["bf16", "fp32"], default="fp32")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    total = args.warmup + args.steps

    # The embedded default's architecture, as the pipeline configures it.
    parameters = yaml.safe_load((Path(__file__).parents[1] / "conf/base/parameters_pretrain.yml").read_text())
    config = TinyJanusConfig(**parameters["model"]["tiny"])
    tokenizer = build_word_tokenizer(sorted(set(vocabulary(WorldConfig())) | set(instruction_words())))
    adapter = JanusAdapter(build_tiny_janus(config, tokenizer),
                           build_processor(tokenizer, config.image_size, config.num_image_tokens))
    examples = synthetic_examples(256, config.image_size)
    run = yaml.safe_load((Path(__file__).parents[1] / "conf/base/parameters_train.yml").read_text())["train"]["run"]
    batches = SGTBatches(adapter, examples, weights=MIXTURE, proxy_kind="instance",
                         global_batch=args.batch, grad_accum_steps=1,
                         image_token_noise=run.get("image_token_noise", 0.0))
    initial = copy.deepcopy(adapter.model.state_dict())
    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32

    def autocast():
        return torch.autocast("cpu", dtype=torch.bfloat16) if args.precision == "bf16" else nullcontext()

    # Bare loop: the same module, the same batches (built beforehand), AdamW, nothing else.
    module = SGTLoss(adapter, LossWeights())
    parameters = adapter.trainable_parameters()
    for p in adapter.model.model.vqmodel.parameters():
        p.requires_grad_(False)
    optimizer = torch.optim.AdamW(parameters, lr=1e-4, foreach=True)
    prepared = [batches(step, 0) for step in range(total)]
    module.train()
    for step, batch in enumerate(prepared):
        if step == args.warmup:
            bare_started = time.perf_counter()
        with autocast():
            loss, _ = module(batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    bare = (time.perf_counter() - bare_started) / args.steps
    flops = step_flops(module, batches, autocast)

    # The pipeline's Trainer on the same start weights and batches.
    adapter.model.load_state_dict(initial)
    with tempfile.TemporaryDirectory() as out:
        def run(steps: int, resume: str):
            trainer = Trainer(SGTLoss(adapter, LossWeights()), sgt_objective, batches, TrainerConfig(
                max_steps=steps, lr=1e-4, precision=args.precision, checkpoint_every=10**6,
                log_every=10, resume=resume, out_dir=out, grad_clip=None),
                trainable_parameters=adapter.trainable_parameters())
            return trainer.fit()
        run(args.warmup, "never")
        summary = run(total, "auto")  # continues after the warm-up steps
    trainer_step = (summary.wall_time_s - summary.checkpoint_time_s) / summary.steps_this_run

    rate = matmul_rate(dtype)
    print(f"SGT step, tiny Janus ({sum(p.numel() for p in parameters) / 1e6:.2f} M trainable), "
          f"batch {args.batch}, {args.precision}, {args.threads} threads, {args.steps} steps")
    print(f"  bare loop        {bare * 1e3:8.1f} ms/step  {args.batch / bare:6.1f} samples/s")
    print(f"  pipeline trainer {trainer_step * 1e3:8.1f} ms/step  {args.batch / trainer_step:6.1f} samples/s"
          f"   ratio {trainer_step / bare:.3f}  (goal <= 1.10)")
    print(f"  data loading     {summary.data_time_share * 100:8.1f} % of the trainer's time  (goal <= 5%)")
    print(f"  checkpoint write {summary.checkpoint_time_s:8.2f} s (final checkpoint, excluded above)")
    counts = ", ".join(f"{t} {n}" for t, n in batches.mixture.counts().items())
    print(f"  FLOPs per step   {flops / 1e9:8.2f} GFLOP (micro-batch: {counts} examples)")
    print(f"  step rate        {flops / bare / 1e9:8.1f} GFLOP/s vs large {args.precision} matmul "
          f"{rate / 1e9:.1f} GFLOP/s: {flops / bare / rate * 100:.1f}%  (goal >= 50%)")


if __name__ == "__main__":
    main()
