"""The training loop: learning, schedule, checkpoints, exact resume after SIGKILL, NaN handling.

Resume tests run real subprocesses (this file doubles as the training script: ``python test_trainer.py``) and
kill them with SIGKILL — from the test once a checkpoint exists, from inside mid-way between checkpoints
(in the middle of a gradient accumulation), and while a checkpoint is being written.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from sgt_pipeline.training import NonFiniteLossError, Trainer, TrainerConfig, seed_everything
from sgt_pipeline.training.checkpoint import PAUSE_ENV, CheckpointStore, load_tensors, save_tensors
from sgt_pipeline.training.schedule import LRSchedule

SCRIPT = Path(__file__).resolve()
VOCAB, SEQ = 32, 12


# ---- the toy problem: a tiny causal transformer with dropout and tied embeddings -------------------------

class TinyLM(nn.Module):
    def __init__(self, dim: int = 32):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, dim)
        nn.init.normal_(self.embed.weight, std=0.1)  # tied to the head: keep the initial logits small
        self.block = nn.TransformerEncoderLayer(dim, nhead=2, dim_feedforward=64, dropout=0.1, batch_first=True)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, VOCAB, bias=False)
        self.head.weight = self.embed.weight  # tied: checkpoints must cope with shared tensors
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(SEQ - 1))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.block(self.embed(tokens), src_mask=self.mask, is_causal=True)))


def make_batches(kill_at_step: int | None = None, seconds_per_batch: float = 0.0, batch_size: int = 8):
    """Arithmetic progressions mod VOCAB (learnable next-token task); micro-step 0 is 'und', 1 is 'proxy'."""
    def batches(step: int, micro: int, rank: int, world_size: int) -> dict:
        if kill_at_step is not None and step == kill_at_step and micro == 1:
            os.kill(os.getpid(), signal.SIGKILL)  # die in the middle of a gradient accumulation
        time.sleep(seconds_per_batch)
        g = torch.Generator().manual_seed(step * 100 + micro)
        start = torch.randint(0, VOCAB, (batch_size, 1), generator=g)
        stride = torch.randint(1, 4, (batch_size, 1), generator=g)
        tokens = (start + stride * torch.arange(SEQ)) % VOCAB
        return {"tokens": tokens[rank::world_size], "task": "und" if micro == 0 else "proxy"}
    return batches


def make_objective(nan_at_step: int | None = None, nan_in: str = "loss"):
    calls = {"n": 0}

    def objective(model, batch):
        logits = model(batch["tokens"][:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, VOCAB).float(), batch["tokens"][:, 1:].reshape(-1))
        step = calls["n"] // 2  # two micro-steps per optimizer step in these tests
        calls["n"] += 1
        if step == nan_at_step:
            if nan_in == "loss":
                loss = loss * float("nan")
            else:  # finite loss, NaN gradient: d sqrt(u)/du at u=0 is inf, times 0
                loss = loss + torch.sqrt((logits * 0).sum())
        return loss, {"accuracy": (logits.argmax(-1) == batch["tokens"][:, 1:]).float().mean()}
    return objective


def config(out_dir, **overrides) -> TrainerConfig:
    values = dict(max_steps=24, lr=3e-3, weight_decay=0.01, warmup_steps=4, schedule="cosine",
                  grad_accum_steps=2, checkpoint_every=5, keep_checkpoints=2, log_every=3, precision="fp32",
                  out_dir=str(out_dir))
    return TrainerConfig(**(values | overrides))


def train(out_dir, model=None, objective=None, batches=None, **overrides):
    seed_everything(0)
    model = model or TinyLM()
    return Trainer(model, objective or make_objective(), batches or make_batches(), config(out_dir, **overrides)).fit()


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run faster and steadier on one thread (the CPU is shared with other jobs)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---- in-process behaviour --------------------------------------------------------------------------------

def test_schedule_warmup_then_cosine_or_constant():
    cosine = LRSchedule(base_lr=1.0, max_steps=110, warmup_steps=10, kind="cosine", min_lr_ratio=0.1)
    assert cosine.lr_at(0) == pytest.approx(0.1) and cosine.lr_at(4) == pytest.approx(0.5)
    assert cosine.lr_at(10) == pytest.approx(1.0)
    assert cosine.lr_at(60) == pytest.approx(0.55)  # half-way through the decay: (1 + 0.1) / 2
    assert cosine.lr_at(110) == pytest.approx(0.1) and cosine.lr_at(500) == pytest.approx(0.1)
    constant = LRSchedule(base_lr=2e-4, max_steps=50, warmup_steps=0)
    assert {constant.lr_at(s) for s in (0, 25, 49)} == {2e-4}


def test_config_is_strict():
    with pytest.raises(ValueError, match="extra"):
        TrainerConfig(max_steps=1, out_dir="x", learning_rate=1.0)
    with pytest.raises(ValueError):
        TrainerConfig(max_steps=1, out_dir="x", precision="fp16")


def test_loss_falls_and_summary_reports(tmp_path, capsys):
    summary = train(tmp_path, max_steps=60, lr=1e-2, checkpoint_every=100, log_every=10)
    log = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [10, 20, 30, 40, 50, 60]
    assert log[-1]["loss"] < 0.45 * log[0]["loss"]  # learns (ln 32 = 3.47 at chance)
    assert summary.mean_metrics["accuracy"] > 0.3  # chance: 1/32
    assert set(summary.mean_metrics) >= {"loss", "loss/und", "loss/proxy", "accuracy", "grad_norm"}
    assert summary.mean_metrics["loss"] == pytest.approx(log[-1]["loss"])
    assert summary.final_step == summary.steps_this_run == 60 and summary.metrics_window == 10
    assert summary.samples_per_second > 0 and 0 <= summary.data_time_share < 0.5
    assert summary.final_checkpoint.endswith("step_000060") and summary.precision == "fp32"
    assert "trained to step 60" in capsys.readouterr().out


def test_checkpoint_contents_and_pruning(tmp_path):
    seed_everything(0)
    model = TinyLM()
    summary = Trainer(model, make_objective(), make_batches(), config(tmp_path, max_steps=7, checkpoint_every=2)).fit()
    root = tmp_path / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step_000006", "step_000007"]  # 2,4 pruned
    assert (root / "latest").read_text().strip() == "step_000007" == Path(summary.final_checkpoint).name
    final = root / "step_000007"
    weights = load_tensors(final / "model.safetensors")
    assert set(weights) == set(model.state_dict())  # tied head.weight restored as an alias
    for name, tensor in model.state_dict().items():
        assert torch.equal(weights[name], tensor), name
    optimizer = load_file(final / "optimizer.safetensors")  # plain safetensors, no pickle anywhere
    assert optimizer["embed.weight/exp_avg"].shape == (VOCAB, 32) and optimizer["embed.weight/step"].item() == 7
    groups = json.loads((final / "optimizer_state.json").read_text())["param_groups"]
    assert [g["weight_decay"] for g in groups] == [0.01, 0.0]  # decay on matrices only
    state = json.loads((final / "trainer_state.json").read_text())
    assert state["data_position"] == {"next_step": 7, "next_micro_step": 0, "world_size": 1}
    assert state["schedule"]["kind"] == "cosine" and state["schedule"]["next_step"] == 7
    assert set(state["rng_per_rank"][0]) >= {"python", "numpy", "torch"}
    assert state["config"]["max_steps"] == 7


def test_trainable_parameters_subset_leaves_the_rest_untouched(tmp_path):
    seed_everything(0)
    model = TinyLM()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    summary = Trainer(model, make_objective(), make_batches(), config(tmp_path, max_steps=3, grad_clip=None),
                      trainable_parameters=model.norm.parameters()).fit()
    assert summary.mean_metrics["grad_norm"] > 0  # measured even without clipping
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"norm.weight", "norm.bias"}
    assert all(p.grad is None and not p.requires_grad for p in model.block.parameters())  # frozen, no grads
    optimizer = load_file(tmp_path / "checkpoints" / "step_000003" / "optimizer.safetensors")
    assert {name.split("/")[0] for name in optimizer} == {"norm.weight", "norm.bias"}
    with pytest.raises(ValueError, match="parameters of the model"):
        Trainer(model, make_objective(), make_batches(), config(tmp_path / "other"),
                trainable_parameters=[nn.Parameter(torch.zeros(1))])


def test_precision_auto_follows_native_bf16(monkeypatch):
    from sgt_pipeline.training import distributed

    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    monkeypatch.setattr(distributed, "cpu_has_native_bf16", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert distributed.resolve_precision("auto", cpu) == "fp32" and distributed.resolve_precision("auto", cuda) == "bf16"
    monkeypatch.setattr(distributed, "cpu_has_native_bf16", lambda: True)
    assert distributed.resolve_precision("auto", cpu) == "bf16"
    assert distributed.resolve_precision("fp32", cuda) == "fp32"


def test_latest_survives_a_missing_or_dangling_pointer(tmp_path):
    store = CheckpointStore(tmp_path, keep=3)
    state = {"w": torch.ones(2)}
    for step in (1, 2, 3):
        store.write(step, state, {"state": {}, "param_groups": []}, {"step": step})
    root = tmp_path / "checkpoints"
    (root / ".tmp-step_000004-123").mkdir()  # a killed writer's leftovers, and a killed pruning's
    (root / ".deleting-step_000000-123").mkdir()
    assert store.latest() == root / "step_000003"
    (root / "latest").write_text("step_000009\n")  # dangling
    assert store.latest() == root / "step_000003"
    (root / "latest").unlink()
    assert store.latest() == root / "step_000003"
    store.remove_partial()
    assert sorted(p.name for p in root.iterdir()) == ["step_000001", "step_000002", "step_000003"]
    assert CheckpointStore.read(root / "step_000002").trainer_state == {"step": 2}


def test_save_tensors_dedupes_tied_and_copies_views(tmp_path):
    base = torch.arange(12.0).reshape(3, 4)
    tensors = {"a": base, "tied": base, "row": base[1], "t": base.t()}
    save_tensors(tensors, tmp_path / "x.safetensors")
    loaded = load_tensors(tmp_path / "x.safetensors")
    assert set(loaded) == set(tensors) and all(torch.equal(loaded[k], v) for k, v in tensors.items())
    assert loaded["tied"].data_ptr() == loaded["a"].data_ptr()


def test_resume_of_finished_run_never_and_changed_settings(tmp_path):
    train(tmp_path, max_steps=4, checkpoint_every=2)
    again = train(tmp_path, max_steps=4)  # resume='auto' on a finished run: nothing to do
    assert again.steps_this_run == 0 and again.final_checkpoint.endswith("step_000004")
    with pytest.raises(FileExistsError, match="resume='never'"):
        train(tmp_path, max_steps=4, resume="never")
    with pytest.warns(UserWarning, match=r"changed settings \['lr'\]"):  # extending is fine, a new lr is not
        extended = train(tmp_path, max_steps=6, lr=1e-3)
    assert extended.resumed_from.endswith("step_000004") and extended.final_step == 6
    step_2 = tmp_path / "checkpoints" / "step_000002"  # pruned by now (keep 2): an explicit path must exist
    with pytest.raises(FileNotFoundError, match="not a complete checkpoint"):
        train(tmp_path / "elsewhere", max_steps=4, resume=str(step_2))
    branched = train(tmp_path / "elsewhere", max_steps=6, lr=1e-3,
                     resume=str(tmp_path / "checkpoints" / "step_000006"))
    assert branched.resumed_from.endswith("step_000006") and branched.steps_this_run == 0


@pytest.mark.parametrize("nan_in", ["loss", "gradient"])
def test_non_finite_stops_before_any_checkpoint(tmp_path, nan_in):
    with pytest.raises(NonFiniteLossError) as error:
        train(tmp_path, objective=make_objective(nan_at_step=7, nan_in=nan_in), checkpoint_every=5, log_every=4)
    root = tmp_path / "checkpoints"
    assert error.value.step == 7 and error.value.task == "und+proxy"
    assert error.value.last_good_checkpoint == str(root / "step_000005")
    assert "step 7" in str(error.value) and "step_000005" in str(error.value)
    bad_value = error.value.metrics["loss" if nan_in == "loss" else "grad_norm"]
    assert math.isnan(bad_value)
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step_000005"]  # nothing partial
    assert load_tensors(root / "step_000005" / "model.safetensors")  # the good one still loads


# ---- SIGKILL and resume, in real subprocesses -----------------------------------------------------------

def launch(out_dir, *extra, env=None):
    return subprocess.Popen([sys.executable, str(SCRIPT), "--out", str(out_dir), *map(str, extra)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})


def finish(process) -> dict:
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def wait_for(predicate, process, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert process.poll() is None, "training finished before the test could kill it"
        assert time.monotonic() < deadline
        time.sleep(0.005)


def final_state(out_dir) -> dict[str, torch.Tensor]:
    """Final weights and optimizer moments as raw bytes (bit-exact comparison; safetensors' JSON header
    orders its metadata differently from run to run, so the files themselves are not compared)."""
    final = Path(out_dir) / "checkpoints" / "step_000024"
    tensors = {f"{file}:{name}": tensor for file in ("model", "optimizer")
               for name, tensor in load_file(final / f"{file}.safetensors").items()}
    return {name: tensor.reshape(-1).view(torch.uint8) for name, tensor in tensors.items()}


def assert_bit_identical(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert actual.keys() == expected.keys()
    different = [name for name in expected if not torch.equal(actual[name], expected[name])]
    assert not different, f"not bit-identical: {different}"


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """Final state of a run that nothing interrupts, per precision. Trained in this process (one thread,
    like the subprocesses), which makes the comparison a cross-process one as well."""
    cache = {}

    def get(precision: str) -> dict[str, torch.Tensor]:
        if precision not in cache:
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            out = tmp_path_factory.mktemp(f"reference-{precision}")
            train(out, precision=precision)
            torch.set_num_threads(threads)
            cache[precision] = final_state(out)
        return cache[precision]
    return get


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_sigkill_after_a_checkpoint_then_resume_is_bit_identical(tmp_path, uninterrupted, precision):
    process = launch(tmp_path, "--precision", precision, "--seconds-per-batch", 0.02)
    latest = tmp_path / "checkpoints" / "latest"
    wait_for(lambda: latest.is_file() and latest.read_text().strip() >= "step_000010", process)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    assert not (tmp_path / "checkpoints" / "step_000024").exists()
    resumed = finish(launch(tmp_path, "--precision", precision))
    assert resumed["resumed_from"] is not None and resumed["final_step"] == 24
    assert_bit_identical(final_state(tmp_path), uninterrupted(precision))  # weights and optimizer, byte for byte


def test_sigkill_mid_accumulation_between_checkpoints_resumes_exactly(tmp_path, uninterrupted):
    killed = launch(tmp_path, "--kill-at-step", 13)
    assert killed.wait(timeout=120) == -signal.SIGKILL
    assert (tmp_path / "checkpoints" / "latest").read_text().strip() == "step_000010"
    resumed = finish(launch(tmp_path))
    assert resumed["resumed_from"].endswith("step_000010") and resumed["steps_this_run"] == 14
    assert_bit_identical(final_state(tmp_path), uninterrupted("fp32"))
    steps = [json.loads(line)["step"] for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps))  # the killed run's steps past 10 were not logged twice


def test_sigkill_during_checkpoint_write_falls_back_to_last_complete(tmp_path, uninterrupted):
    process = launch(tmp_path, env={PAUSE_ENV: "15:60"})  # the write of step 15 hangs half-way
    root = tmp_path / "checkpoints"
    wait_for(lambda: any((p / "model.safetensors").exists() for p in root.glob(".tmp-step_000015-*")), process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (root / "step_000015").exists() and (root / "latest").read_text().strip() == "step_000010"
    resumed = finish(launch(tmp_path))
    assert resumed["resumed_from"].endswith("step_000010")
    assert not list(root.glob(".tmp-*"))  # the partial write was cleaned up, never loaded
    assert_bit_identical(final_state(tmp_path), uninterrupted("fp32"))


def main() -> None:
    parser = argparse.ArgumentParser(description="Train TinyLM with the Trainer (used by the tests above).")
    parser.add_argument("--out", required=True)
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--kill-at-step", type=int)
    parser.add_argument("--seconds-per-batch", type=float, default=0.0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    summary = train(args.out, batches=make_batches(args.kill_at_step, args.seconds_per_batch),
                    precision=args.precision)
    print(summary.model_dump_json())


if __name__ == "__main__":
    main()
