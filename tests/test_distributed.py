"""The trainer under torchrun: 2 CPU processes (gloo) against 1 process on the same global batch.

This file doubles as the training script (``torchrun ... test_distributed.py --out DIR``). The model has two
task heads and each micro-step trains one task, like SGT's mixture, so DDP must cope with parameters that
get no gradient in the final (synchronising) micro-step of a gradient accumulation.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from sgt_pipeline.training import Trainer, TrainerConfig, seed_everything
from sgt_pipeline.training import checkpoint as checkpoint_module
from sgt_pipeline.training.distributed import DistributedContext, gradient_sync, init_distributed, wrap_model

SCRIPT = Path(__file__).resolve()
GLOBAL_BATCH = 8


class TwoHeads(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList([nn.Sequential(nn.Linear(16, 32), nn.GELU()),
                                     nn.Sequential(nn.Linear(32, 32), nn.GELU())])
        self.regress = nn.Linear(32, 1)   # task "a"
        self.classify = nn.Linear(32, 3)  # task "b"

    def forward(self, x: torch.Tensor, task: str) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.regress(x) if task == "a" else self.classify(x)


KILL_AT_STEP = None  # set by the script's --kill-at-step


def batches(step: int, micro: int, rank: int, world_size: int) -> dict:
    """Global micro-batch of GLOBAL_BATCH samples; each rank takes its own slice."""
    if step == KILL_AT_STEP:
        os.kill(os.getpid(), signal.SIGKILL)
    g = torch.Generator().manual_seed(step * 10 + micro)
    x = torch.randn(GLOBAL_BATCH, 16, generator=g)
    task = "a" if micro == 0 else "b"
    target = x[:, :1].sin() if task == "a" else (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    return {"x": x[rank::world_size], "target": target[rank::world_size], "task": task}


def objective(model, batch):
    out = model(batch["x"], batch["task"])
    loss = F.mse_loss(out, batch["target"]) if batch["task"] == "a" else F.cross_entropy(out, batch["target"])
    return loss, {}


def config(out_dir, **overrides) -> TrainerConfig:
    values = dict(max_steps=8, lr=1e-2, warmup_steps=2, schedule="cosine", grad_accum_steps=2, checkpoint_every=4,
                  log_every=2, precision="fp32", find_unused_parameters=True, out_dir=str(out_dir))
    return TrainerConfig(**(values | overrides))


def final_weights(out_dir, step: int = 8) -> dict[str, torch.Tensor]:
    return load_file(Path(out_dir) / "checkpoints" / f"step_{step:06d}" / "model.safetensors")


def torchrun(out_dir, *args, timeout=180, expect_success=True) -> Path:
    """Run this file on 2 CPU processes; returns torchrun's per-rank log directory."""
    logs = Path(out_dir) / f"torchrun-logs-{len(list(Path(out_dir).glob('torchrun-logs-*')))}"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
               "--log-dir", str(logs), "--redirects", "3", str(SCRIPT), "--out", str(out_dir), *map(str, args)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    rank_logs = "\n".join(f"--- {p}\n{p.read_text()[-2000:]}" for p in sorted(logs.rglob("*.log")))
    assert (result.returncode == 0) == expect_success, result.stderr[-2000:] + rank_logs
    return logs


def rank_output(logs: Path, rank: int) -> str:
    return "".join(p.read_text() for p in sorted(logs.rglob(f"*/{rank}/std*.log")))


@pytest.fixture(scope="module")
def single_process(tmp_path_factory) -> dict[str, torch.Tensor]:
    """The same global batches trained in one process (this one, one thread)."""
    out = tmp_path_factory.mktemp("single")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    seed_everything(0)
    Trainer(TwoHeads(), objective, batches, config(out)).fit()
    torch.set_num_threads(threads)
    return final_weights(out)


def assert_close(actual: dict, expected: dict) -> None:
    assert actual.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], atol=1e-5, rtol=0, msg=name)


@pytest.mark.slow
def test_ddp_two_ranks_match_one_process_across_a_resume(tmp_path, single_process):
    # Both ranks SIGKILL themselves at step 6 (last checkpoint: 4); a new torchrun resumes from 4 to 8.
    first = torchrun(tmp_path, "--kill-at-step", 6, expect_success=False)
    assert (tmp_path / "checkpoints" / "latest").read_text().strip() == "step_000004"
    second = torchrun(tmp_path)
    assert_close(final_weights(tmp_path), single_process)
    # Only rank 0 writes checkpoints and logs, draws the bar and prints the summary.
    writers = sorted(p.name for p in tmp_path.glob("checkpoint-writer-rank*"))
    assert writers == ["checkpoint-writer-rank0"]
    assert (tmp_path / "checkpoint-writer-rank0").read_text().split() == ["4", "8"]
    assert "train:" in rank_output(first, 0) and "train:" not in rank_output(first, 1)
    assert "trained to step 8 (4 this run" in rank_output(second, 0) and "train:" in rank_output(second, 0)
    assert "trained to step" not in rank_output(second, 1) and "train:" not in rank_output(second, 1)
    state = json.loads((tmp_path / "checkpoints" / "step_000008" / "trainer_state.json").read_text())
    assert state["data_position"]["world_size"] == 2 and len(state["rng_per_rank"]) == 2
    assert [json.loads(line)["step"] for line in (tmp_path / "train_log.jsonl").read_text().splitlines()] == [
        2, 4, 6, 8]


@pytest.mark.slow
def test_fsdp_two_ranks_checkpoint_full_weights_and_resume(tmp_path, single_process):
    torchrun(tmp_path, "--strategy", "fsdp", "--kill-at-step", 6, expect_success=False)
    step_4 = tmp_path / "checkpoints" / "step_000004" / "model.safetensors"
    assert load_file(step_4).keys() == single_process.keys()  # gathered to full tensors, the user's names
    torchrun(tmp_path, "--strategy", "fsdp")  # loads the full state back into shards
    assert_close(final_weights(tmp_path), single_process)


def test_single_process_needs_no_process_group(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    context = init_distributed()
    assert (context.rank, context.world_size, context.is_main, context.is_distributed) == (0, 1, True, False)
    model = TwoHeads()
    assert wrap_model(model, context, "ddp") is model and wrap_model(model, context, "fsdp") is model
    with gradient_sync(model, enabled=False):  # a no-op without a wrapper
        pass
    context.barrier()
    assert context.all_gather_object({"x": 1}) == [{"x": 1}]
    assert DistributedContext().device.type == "cpu"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--strategy", default="ddp")
    parser.add_argument("--kill-at-step", type=int)
    args = parser.parse_args()
    global KILL_AT_STEP
    KILL_AT_STEP = args.kill_at_step
    rank = int(os.environ.get("RANK", "0"))

    # Record which rank calls the checkpoint writer (the test asserts: rank 0 only).
    write = checkpoint_module.CheckpointStore.write

    def recording_write(self, step, *rest):
        with open(Path(args.out) / f"checkpoint-writer-rank{rank}", "a") as record:
            record.write(f"{step}\n")
        return write(self, step, *rest)
    checkpoint_module.CheckpointStore.write = recording_write

    seed_everything(0)  # identical initial weights on every rank (DDP would broadcast rank 0's anyway)
    Trainer(TwoHeads(), objective, batches, config(args.out, strategy=args.strategy)).fit()


if __name__ == "__main__":
    main()
