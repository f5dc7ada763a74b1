"""The training loop, nanoGPT-style: read `Trainer.fit` top to bottom.

Generic over the model and the objective:

- ``batches(step, micro_step, rank, world_size) -> batch``: deterministic, so the step counter is the whole
  data position (this rank's shard of global micro-batch ``micro_step`` of optimizer step ``step``);
- ``objective(model, batch) -> (loss, metrics)``: ``loss`` a scalar tensor, ``metrics`` a dict of floats or
  (better: no host sync) 0-dim tensors, e.g. ``{"loss/und": ..., "loss/proxy": ...}``. It must call the
  model it is given (``model(...)``), which under torchrun is the DDP/FSDP wrapper.

Metrics stay on the device and are read back once every ``log_every`` steps; that read also checks for
non-finite values, so a NaN is caught at the next log or checkpoint boundary, always before a checkpoint.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from contextlib import nullcontext
from pathlib import Path

import torch
from tqdm.auto import tqdm

from . import distributed
from .checkpoint import CheckpointStore, capture_rng_state, restore_rng_state, seed_everything, step_dir_name
from .config import TrainerConfig, TrainSummary
from .schedule import LRSchedule, build_adamw


# Settings that may change between a run and its resumption without changing the training trajectory
# (max_steps does change a cosine schedule's shape; it is allowed so that a finished run can be extended).
_RUN_CONTROL_FIELDS = {"max_steps", "resume", "out_dir", "log_every", "checkpoint_every", "keep_checkpoints"}


class NonFiniteLossError(RuntimeError):
    """The loss or gradient norm became NaN/inf; the run stopped without writing a checkpoint."""

    def __init__(self, step: int, task: str | None, metrics: dict[str, float], last_good_checkpoint: str | None):
        self.step, self.task, self.metrics, self.last_good_checkpoint = step, task, metrics, last_good_checkpoint
        shown = ", ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items()))
        super().__init__(f"non-finite loss or gradient norm at step {step} (task: {task or 'n/a'}; {shown}); "
                         f"last good checkpoint: {last_good_checkpoint or 'none'}")


class MetricsWindow:
    """Metrics since the last read-back, kept as device tensors (no host sync) and read in one copy."""

    def __init__(self):
        self.steps: list[tuple[int, str | None, dict]] = []  # (step, task(s), {key: mean over micro-steps})
        self._micro: list[tuple[str | None, dict]] = []  # (task, {key: value}) of the step under way

    def add_micro_step(self, loss: torch.Tensor, metrics: Mapping, task: str | None) -> None:
        values = {"loss": loss.detach(), **metrics}
        if task is not None:
            values.setdefault(f"loss/{task}", values["loss"])
        self._micro.append((task, values))

    def end_step(self, step: int, grad_norm: torch.Tensor) -> None:
        as_tensor = lambda v: torch.as_tensor(v, dtype=torch.float32, device=grad_norm.device).detach()  # noqa: E731
        keys = dict.fromkeys(k for _, values in self._micro for k in values)
        means = {k: torch.stack([as_tensor(v[k]) for _, v in self._micro if k in v]).mean() for k in keys}
        tasks = "+".join(dict.fromkeys(t for t, _ in self._micro if t is not None)) or None
        self.steps.append((step, tasks, {**means, "grad_norm": as_tensor(grad_norm)}))
        self._micro = []

    def read(self) -> list[tuple[int, str | None, dict[str, float]]]:
        """All recorded steps with float values (one device→host copy), then forget them."""
        flat = [v.reshape(()) for _, _, m in self.steps for v in m.values()]
        values = iter(torch.stack(flat).tolist() if flat else [])
        result = [(step, task, {k: next(values) for k in m}) for step, task, m in self.steps]
        self.steps = []
        return result


class Trainer:
    def __init__(self, model: torch.nn.Module, objective: Callable, batches: Callable, config: TrainerConfig,
                 trainable_parameters: Iterable[torch.nn.Parameter] | None = None):
        self.config, self.objective, self.batches = config, objective, batches
        self.dist = distributed.init_distributed()
        self.precision = distributed.resolve_precision(config.precision, self.dist.device)
        seed_everything(config.seed + self.dist.rank)  # + rank: dropout masks differ between data shards
        if self.dist.device.type == "cpu":
            # Most CPU kernels are deterministic for a fixed thread count; this pins the rest (index_put_ /
            # indexing backward with accumulation), so resume is bit-exact. Its NaN-filling of torch.empty
            # costs ~4% of a step (benchmarks/train_step_overhead.py) and buys nothing here: turned off.
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.utils.deterministic.fill_uninitialized_memory = False

        model = model.to(self.dist.device)
        # Remember trainable parameters by name: FSDP replaces parameter objects when it shards them.
        names = {id(p): n for n, p in model.named_parameters()}
        chosen = (list(trainable_parameters) if trainable_parameters is not None
                  else [p for p in model.parameters() if p.requires_grad])
        if any(id(p) not in names for p in chosen):
            raise ValueError("trainable_parameters must all be parameters of the model")
        trainable_names = list(dict.fromkeys(names[id(p)] for p in chosen))  # dedupe tied weights
        trainable_ids = {id(p) for p in chosen}
        for p in model.parameters():  # the rest is frozen: no gradients computed, stored or all-reduced
            p.requires_grad_(id(p) in trainable_ids)
        self.model = distributed.wrap_model(model, self.dist, config.strategy, config.find_unused_parameters)
        by_name = dict(distributed.unwrap(self.model).named_parameters(remove_duplicate=False))
        self.parameters = [by_name[n] for n in trainable_names]
        self.optimizer = build_adamw(self.parameters, config)
        self.schedule = LRSchedule.from_config(config)
        self.store = CheckpointStore(config.out_dir, config.keep_checkpoints)
        if self.dist.is_main:
            Path(config.out_dir).mkdir(parents=True, exist_ok=True)
        self.step = 0  # optimizer steps completed == data position (next step's batches)

    def fit(self, after_step: Callable[[int], None] | None = None) -> TrainSummary:
        """Train up to ``max_steps``. ``after_step(steps_done)`` runs on every rank after each optimizer step
        and checkpoint (a sweep evaluates and prunes there); an exception it raises ends the run."""
        cfg, rank, world = self.config, self.dist.rank, self.dist.world_size
        bar = None
        try:
            resumed_from = self._restore()
            last_checkpoint = resumed_from
            self.model.train()
            autocast = (torch.autocast(self.dist.device.type, dtype=torch.bfloat16)
                        if self.precision == "bf16" else nullcontext())
            window = MetricsWindow()
            bar = tqdm(total=cfg.max_steps, initial=self.step, disable=not self.dist.is_main,
                       desc="train", dynamic_ncols=True, mininterval=1.0)
            first_step, samples, data_time, checkpoint_time = self.step, 0, 0.0, 0.0
            last_means, last_window = {}, 0
            started = time.perf_counter()

            while self.step < cfg.max_steps:
                step = self.step
                self.schedule.apply(self.optimizer, step)
                for micro in range(cfg.grad_accum_steps):
                    fetch_started = time.perf_counter()
                    batch = distributed.to_device(self.batches(step, micro, rank, world), self.dist.device)
                    data_time += time.perf_counter() - fetch_started
                    samples += _count_samples(batch) * world
                    # No gradient all-reduce until the last micro-step (DDP no_sync).
                    with distributed.gradient_sync(self.model, enabled=micro == cfg.grad_accum_steps - 1):
                        with autocast:
                            loss, metrics = self.objective(self.model, batch)
                        (loss / cfg.grad_accum_steps).backward()
                    task = batch.get("task") if isinstance(batch, Mapping) else None
                    window.add_micro_step(loss, metrics, task if isinstance(task, str) else None)
                grad_norm = distributed.clip_grad_norm(self.parameters, cfg.grad_clip)
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
                self.step += 1
                window.end_step(step, grad_norm)
                bar.update(1)

                checkpoint_due = self.step % cfg.checkpoint_every == 0 or self.step == cfg.max_steps
                if self.step % cfg.log_every == 0 or checkpoint_due:
                    rate = samples / max(time.perf_counter() - started, 1e-9)
                    last_means, last_window = self._read_metrics(window, bar, rate, last_checkpoint)
                if checkpoint_due:
                    write_started = time.perf_counter()
                    last_checkpoint = self._save_checkpoint()
                    checkpoint_time += time.perf_counter() - write_started
                if after_step is not None:
                    after_step(self.step)
                    self.model.train()
            bar.close()
            wall = time.perf_counter() - started
            summary = TrainSummary(
                final_step=self.step, steps_this_run=self.step - first_step, resumed_from=resumed_from,
                mean_metrics=last_means, metrics_window=last_window,
                samples_per_second=samples / max(wall, 1e-9), wall_time_s=wall,
                data_time_share=data_time / max(wall, 1e-9), checkpoint_time_s=checkpoint_time,
                precision=self.precision, final_checkpoint=last_checkpoint)
            if self.dist.is_main:
                print(summary.describe())
            return summary
        finally:
            if bar is not None:
                bar.close()
            self.dist.shutdown()

    def _read_metrics(self, window: MetricsWindow, bar, samples_per_s: float,
                      last_good: str | None) -> tuple[dict[str, float], int]:
        """The only host sync of the loop: metrics to floats, NaN check, progress bar and log line.

        Returns the per-key means over the steps read, and how many steps that was."""
        steps = window.read()
        bad = [record for record in steps if not _finite_losses(record[2])]
        if self.dist.any_across_ranks(torch.tensor(float(bool(bad)))).item():
            # Every rank stops; report the earliest bad step seen on any rank.
            reports = [r for r in self.dist.all_gather_object(bad[0] if bad else None) if r is not None]
            step, task, metrics = min(reports, key=lambda r: r[0])
            raise NonFiniteLossError(step, task, metrics, last_good)
        keys = dict.fromkeys(k for _, _, m in steps for k in m)
        means = {k: sum(m[k] for _, _, m in steps if k in m) / sum(k in m for _, _, m in steps) for k in keys}
        if self.dist.is_main:
            shown = {k.removeprefix("loss/"): f"{v:.3f}" for k, v in means.items() if k.startswith("loss")}
            bar.set_postfix(shown | {"samples/s": f"{samples_per_s:.1f}"}, refresh=False)
            record = {"step": self.step, "lr": self.optimizer.param_groups[0]["lr"], **means,
                      "samples_per_s": samples_per_s}
            with open(Path(self.config.out_dir) / "train_log.jsonl", "a") as log:
                log.write(json.dumps(record) + "\n")
        return means, len(steps)

    def _save_checkpoint(self) -> str:
        # Gathering full state is collective (FSDP): every rank takes part, only rank 0 writes.
        model_state = distributed.full_model_state(self.model)
        optimizer_state = distributed.full_optimizer_state(self.model, self.optimizer)
        rng_states = self.dist.all_gather_object(capture_rng_state())
        if self.dist.is_main:
            self.store.write(self.step, model_state, optimizer_state, {
                "format_version": 1, "step": self.step,
                "data_position": {"next_step": self.step, "next_micro_step": 0,
                                  "world_size": self.dist.world_size},
                "schedule": self.schedule.state_dict(self.step), "rng_per_rank": rng_states,
                "precision": self.precision, "config": self.config.model_dump(mode="json")})
        self.dist.barrier()  # nobody moves on (or resumes) before the checkpoint is in place
        return str(self.store.root / step_dir_name(self.step))

    def _restore(self) -> str | None:
        """Load the checkpoint `config.resume` selects; returns its path (None: fresh start)."""
        resume = self.config.resume
        if self.dist.is_main:
            self.store.remove_partial()  # a killed writer's .tmp-* directory is never a candidate
        self.dist.barrier()
        if resume == "never":
            if self.store.latest() is not None:
                raise FileExistsError(f"{self.store.root} already holds checkpoints; resume='never' would mix two "
                                      "runs in one directory. Use a new out_dir or resume='auto'.")
            return None
        path = self.store.latest() if resume == "auto" else Path(resume)
        if path is None:
            return None
        checkpoint = self.store.read(path)
        distributed.load_full_state(self.model, self.optimizer, checkpoint.model, checkpoint.optimizer)
        state = checkpoint.trainer_state
        self.step = int(state["data_position"]["next_step"])
        saved, now = state["config"], self.config.model_dump(mode="json")
        changed = sorted(k for k in now if k not in _RUN_CONTROL_FIELDS and saved.get(k) != now[k])
        if changed and self.dist.is_main:
            warnings.warn(f"resuming {path} with changed settings {changed}: the result will differ from an "
                          "uninterrupted run", stacklevel=2)
        rng_states = state["rng_per_rank"]
        if len(rng_states) == self.dist.world_size:
            restore_rng_state(rng_states[self.dist.rank])  # bit-exact continuation
        else:  # world size changed: exactness is impossible anyway; stay deterministic
            seed_everything(self.config.seed + self.dist.rank + self.step)
        if self.dist.is_main and self.step > 0:
            _truncate_log(Path(self.config.out_dir) / "train_log.jsonl", self.step)
        return str(path)


def _finite_losses(metrics: dict[str, float]) -> bool:
    """Losses and the gradient norm must be finite; other metrics (e.g. an empty accuracy) may be NaN."""
    return all(math.isfinite(v) for k, v in metrics.items() if k.startswith("loss") or k == "grad_norm")


def _count_samples(batch) -> int:
    """Leading dimension of the first tensor in the batch (a tensor, or a dict / list / tuple of them);
    summed over the tasks of a ``{task: batch}`` mixed batch."""
    if isinstance(batch, torch.Tensor):
        return batch.shape[0] if batch.ndim else 1
    if isinstance(batch, Mapping) and batch and all(isinstance(v, Mapping) for v in batch.values()):
        return sum(_count_samples(v) for v in batch.values())  # {task: batch}: a mixed micro-batch
    values = batch.values() if isinstance(batch, Mapping) else batch if isinstance(batch, (list, tuple)) else []
    return next((_count_samples(v) for v in values if isinstance(v, (torch.Tensor, Mapping, list, tuple))), 1)


def _truncate_log(path: Path, step: int) -> None:
    """Drop log lines past the resumed step: a killed run logged steps the resumed run will redo."""
    if path.is_file():
        lines = [line for line in path.read_text().splitlines() if json.loads(line)["step"] <= step]
        path.write_text("".join(line + "\n" for line in lines))
