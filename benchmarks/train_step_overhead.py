"""Trainer step time against a bare forward/backward/optimizer-step loop, same model, batch and precision.

Model: a ~5 M-parameter pre-norm transformer LM (4 layers x 256, vocab 4096, 64 tokens x batch 8). Both sides
use fused AdamW, gradient clipping at 1.0 and the same autocast. The bare loop is plain torch
(``use_deterministic_algorithms`` off); the Trainer runs as configured (deterministic on CPU, metrics
read back every 10 steps, progress bar, checkpoint only at the end).

Timing, interleaved step by step so that load from other processes on the machine hits both sides alike:
the Trainer's ``batches`` callback runs one bare step (on its own copy of the model) and timestamps around it.
The Trainer's step time is the gap between the end of one callback and the start of the next, so everything
of its loop counts (optimizer, metrics, bar, log); setup and the final checkpoint write do not. Medians (and
fastest steps) of both sides are compared. Goal (DESIGN §6): ratio <= 1.10. Under load from other jobs the
ratio wanders by a few percent either way; the fixed per-step cost, measured the same way on a model too
small to matter, is the steadier figure.

    python benchmarks/train_step_overhead.py [--steps 40] [--precision auto|bf16|fp32] [--threads N]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import nn

from sgt_pipeline.training import Trainer, TrainerConfig, resolve_precision, seed_everything

VOCAB, DIM, LAYERS, SEQ, BATCH = 4096, 256, 4, 64, 8
WARMUP_STEPS = 5


class TinyGPT(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, DIM)
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(DIM, 4, 4 * DIM, dropout=0.1, batch_first=True, norm_first=True)
            for _ in range(LAYERS))
        self.norm = nn.LayerNorm(DIM)
        self.head = nn.Linear(DIM, VOCAB, bias=False)
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(SEQ - 1), persistent=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens)
        for block in self.blocks:
            x = block(x, src_mask=self.mask, is_causal=True)
        return self.head(self.norm(x))


class Bigram(nn.Module):
    """A model so small that a step is almost all loop overhead: measures the Trainer's fixed cost per step."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, 8)
        self.head = nn.Linear(8, VOCAB)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(tokens))


def lm_loss(model, batch):
    tokens = batch["tokens"]
    logits = model(tokens[:, :-1])
    return F.cross_entropy(logits.reshape(-1, VOCAB).float(), tokens[:, 1:].reshape(-1)), {}


def bare_step_fn(model: nn.Module, precision: str):
    """One plain step: forward, backward, clip, fused AdamW, zero_grad — nothing else."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.0, fused=True)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else nullcontext()
    model.train()

    def step(batch: dict) -> None:
        deterministic = torch.are_deterministic_algorithms_enabled()
        torch.use_deterministic_algorithms(False)  # plain torch; the Trainer's own setting is part of its cost
        with autocast:
            loss, _ = lm_loss(model, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0, foreach=True)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        torch.use_deterministic_algorithms(deterministic, warn_only=True)
    return step


def interleaved(reference: nn.Module, batch: dict, steps: int, precision: str) -> tuple[list, list]:
    """Per-step seconds of (bare loop, Trainer), one bare step run between every two Trainer steps."""
    bare_step = bare_step_fn(copy.deepcopy(reference), precision)
    bare, trainer = [], []
    resumed_at: list[float] = []

    def batches(step, micro, rank, world_size):
        arrived = time.perf_counter()
        if resumed_at:
            trainer.append(arrived - resumed_at[-1])  # the Trainer's whole previous step
        bare_step(batch)
        bare.append(time.perf_counter() - arrived)
        resumed_at.append(time.perf_counter())
        return batch

    with tempfile.TemporaryDirectory() as out_dir:
        # steps + 1: the last batch request closes the timing of the last step; the extra step and the
        # final checkpoint fall outside the measurement.
        config = TrainerConfig(max_steps=steps + 1, lr=1e-4, grad_clip=1.0, precision=precision,
                               checkpoint_every=10**9, log_every=10, out_dir=out_dir)
        Trainer(copy.deepcopy(reference), lm_loss, batches, config).fit()
    return bare[WARMUP_STEPS:steps], trainer[WARMUP_STEPS:]


def matmul_rate(dtype: torch.dtype, n: int = 2048, repeats: int = 5) -> float:
    """Large-matmul FLOP/s in this run, the ceiling the step's FLOP/s is stated against."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best = min(_time(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best


def _time(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"])
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice); 1 is "
                        "steadier when other jobs share the cores")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    precision = resolve_precision(args.precision, torch.device("cpu"))

    seed_everything(0)
    reference = TinyGPT()
    parameters = sum(p.numel() for p in reference.parameters())
    batch = {"tokens": torch.randint(0, VOCAB, (BATCH, SEQ), generator=torch.Generator().manual_seed(0))}
    bare, trainer = interleaved(reference, batch, WARMUP_STEPS + args.steps, precision)
    bare_step, trainer_step = statistics.median(bare), statistics.median(trainer)
    flops_per_step = 6 * parameters * BATCH * (SEQ - 1)  # forward + backward, attention scores not counted
    peak = matmul_rate(torch.bfloat16 if precision == "bf16" else torch.float32)
    print(f"model: {parameters / 1e6:.2f} M parameters, batch {BATCH} x {SEQ - 1} tokens, {precision}, "
          f"{torch.get_num_threads()} threads; {args.steps} timed steps each, interleaved")
    for name, seconds in (("bare loop", bare_step), ("Trainer", trainer_step)):
        print(f"  {name:9s}: {seconds * 1e3:7.1f} ms/step (median)  {BATCH / seconds:7.1f} samples/s  "
              f"{flops_per_step / seconds / 1e9:6.1f} GFLOP/s = {flops_per_step / seconds / peak:.0%} of "
              f"the large-matmul rate ({peak / 1e9:.0f} GFLOP/s)")
    tiny_bare, tiny_trainer = interleaved(Bigram(), {"tokens": batch["tokens"][:2, :5]}, 200, precision)
    fixed_cost = statistics.median(tiny_trainer) - statistics.median(tiny_bare)
    print(f"  fixed Trainer cost per step (a {sum(p.numel() for p in Bigram().parameters()) / 1e3:.0f} k-parameter "
          f"model): {fixed_cost * 1e6:.0f} µs = {fixed_cost / bare_step:.2%} of the model's bare step")
    fastest = min(trainer) / min(bare)  # load from other processes only adds time; minima are least affected
    print(f"ratio Trainer / bare loop: {trainer_step / bare_step:.3f} (medians), {fastest:.3f} (fastest steps); "
          "goal <= 1.10")


if __name__ == "__main__":
    main()
