"""Process topology, device and precision: one process, or many under torchrun.

Without torchrun (no WORLD_SIZE in the environment) nothing is initialised and every helper here is a
no-op, so the same trainer code runs in a notebook. Under torchrun it reads RANK / WORLD_SIZE / LOCAL_RANK,
joins a process group (nccl on CUDA, gloo on CPU) and wraps the model in DDP or FSDP2 (`fully_shard`).

What is tested on CPU (tests/test_distributed.py: torchrun, 2 processes, gloo): DDP and FSDP2 each train a
two-task model with gradient accumulation, are SIGKILLed after a checkpoint, resume in a new torchrun, and
end within 1e-5 of a 1-process run of the same global batch; only rank 0 writes. Not tested here: nccl,
multi-node rendezvous, FSDP2 with a bf16 `MixedPrecisionPolicy` (we use autocast instead), sharded per-rank
checkpoints — checkpoints are always gathered to full tensors on rank 0 (fine up to a few billion parameters;
beyond that, switch to torch.distributed.checkpoint's sharded save).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True)
class DistributedContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_process_group: bool = False  # True when we called init_process_group, so we also destroy it

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that writes files and draws the progress bar."""
        return self.rank == 0

    def barrier(self) -> None:
        if self.is_distributed:
            dist.barrier()

    def all_gather_object(self, obj) -> list:
        if not self.is_distributed:
            return [obj]
        gathered = [None] * self.world_size
        dist.all_gather_object(gathered, obj)  # pickles in transit only; nothing pickled reaches disk
        return gathered

    def any_across_ranks(self, flag: torch.Tensor) -> torch.Tensor:
        """Logical OR over ranks, so that every rank stops together instead of one hanging in a collective."""
        if self.is_distributed:
            flag = flag.to(self.device, torch.float32)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return flag

    def shutdown(self) -> None:
        if self.owns_process_group and dist.is_initialized():
            dist.destroy_process_group()


def init_distributed() -> DistributedContext:
    """Join the torchrun process group if there is one (idempotent); otherwise a single-process context."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available()
    device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    owns = False
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
        owns = True
    return DistributedContext(rank, world_size, local_rank, device, owns)


def cpu_has_native_bf16() -> bool:
    """True when the CPU executes bf16 natively (x86 AVX512-BF16 / AMX-BF16, Arm BF16).

    Without it, oneDNN still runs bf16 but by converting to fp32, which is slower than plain fp32. We ask
    PyTorch's cpuinfo probe first (portable), then fall back to the kernel's flags in /proc/cpuinfo.
    """
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        check = getattr(torch.cpu, probe, None)
        with contextlib.suppress(Exception):
            if check is not None and check():
                return True
    with contextlib.suppress(OSError):
        flags = set(Path("/proc/cpuinfo").read_text().split())
        return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})
    return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """'auto' → 'bf16' on GPUs and CPUs with native bf16, else 'fp32'; explicit choices pass through."""
    if precision != "auto":
        return precision
    if device.type == "cuda":  # Ampere and newer; older GPUs would only emulate bf16
        return "bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else "fp32"
    return "bf16" if cpu_has_native_bf16() else "fp32"


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The user's module inside a DDP wrapper (FSDP2 modifies the module in place, so it is its own)."""
    return model.module if isinstance(model, DistributedDataParallel) else model


def wrap_model(model: torch.nn.Module, context: DistributedContext, strategy: str,
               find_unused_parameters: bool = False) -> torch.nn.Module:
    """DDP or FSDP2 under torchrun; the model itself (already on the device) in a single process."""
    if not context.is_distributed:
        return model
    if strategy == "ddp":
        device_ids = [context.local_rank] if context.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=device_ids,
                                       find_unused_parameters=find_unused_parameters)
    if strategy == "fsdp":
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        mesh = init_device_mesh(context.device.type, (context.world_size,))
        # Shard each block of every ModuleList (where transformers keep their layers) separately, so only
        # one block's full parameters are materialised at a time; the root takes the rest (embeddings, heads).
        for module in list(model.modules()):
            if isinstance(module, torch.nn.ModuleList):
                for block in module:
                    fully_shard(block, mesh=mesh)
        fully_shard(model, mesh=mesh)
        return model
    raise ValueError(f"unknown strategy {strategy!r}")


@contextlib.contextmanager
def gradient_sync(model: torch.nn.Module, enabled: bool):
    """Skip the gradient all-reduce on non-final accumulation micro-steps (DDP `no_sync`, FSDP2 equivalent)."""
    if isinstance(model, DistributedDataParallel) and not enabled:
        with model.no_sync():
            yield
        return
    set_sync = getattr(model, "set_requires_gradient_sync", None)  # present on fully_shard-ed modules
    if set_sync is not None:
        set_sync(enabled)
    yield


def to_device(batch, device: torch.device):
    """Move the tensors of a batch (nested dicts / lists / tuples) to the device; a no-op on CPU."""
    if device.type == "cpu":
        return batch
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def clip_grad_norm(parameters: list[torch.nn.Parameter], max_norm: float | None) -> torch.Tensor:
    """Global gradient norm over all ranks and shards (for the NaN check and the log); clips when max_norm."""
    if max_norm is not None:
        norm = torch.nn.utils.clip_grad_norm_(parameters, max_norm, foreach=True)
    else:
        norm = torch.nn.utils.get_total_norm([p.grad for p in parameters if p.grad is not None], foreach=True)
    # Under FSDP the norm is a DTensor, already reduced over ranks: its full value is the global norm.
    return norm.full_tensor() if hasattr(norm, "full_tensor") else norm


def _is_sharded(model: torch.nn.Module) -> bool:
    return hasattr(model, "set_requires_gradient_sync")  # the FSDP2 (fully_shard) module API


def full_model_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Unsharded weights with the user's parameter names (collective under FSDP: call on every rank)."""
    model = unwrap(model)
    if _is_sharded(model):
        from torch.distributed.checkpoint import state_dict as dcp  # 1.8 s import: only when sharded

        return dcp.get_model_state_dict(model, options=dcp.StateDictOptions(full_state_dict=True, cpu_offload=True))
    return model.state_dict()


def full_optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """Optimizer state keyed by parameter name rather than position (the same format DCP uses for FSDP),
    so checkpoints survive a changed parameter order and move between DDP and FSDP runs."""
    model = unwrap(model)
    if _is_sharded(model):
        from torch.distributed.checkpoint import state_dict as dcp

        return dcp.get_optimizer_state_dict(model, optimizer,
                                            options=dcp.StateDictOptions(full_state_dict=True, cpu_offload=True))
    index_to_name = _optimizer_index_to_name(model, optimizer)
    state = optimizer.state_dict()
    return {"state": {index_to_name[i]: entries for i, entries in state["state"].items()},
            "param_groups": [{**g, "params": [index_to_name[i] for i in g["params"]]}
                             for g in state["param_groups"]]}


def load_full_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    model_state: dict, optimizer_state: dict) -> None:
    """Inverse of the two functions above; every rank passes the same full state and keeps its shard."""
    model = unwrap(model)
    if _is_sharded(model):
        from torch.distributed.checkpoint import state_dict as dcp

        options = dcp.StateDictOptions(full_state_dict=True)
        dcp.set_model_state_dict(model, model_state, options=options)
        dcp.set_optimizer_state_dict(model, optimizer, optimizer_state, options=options)
        return
    model.load_state_dict(model_state)
    name_to_index = {name: i for i, name in _optimizer_index_to_name(model, optimizer).items()}
    optimizer.load_state_dict({
        "state": {name_to_index[name]: entries for name, entries in optimizer_state["state"].items()},
        "param_groups": [{**g, "params": [name_to_index[n] for n in g["params"]]}
                         for g in optimizer_state["param_groups"]]})


def _optimizer_index_to_name(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[int, str]:
    """torch numbers optimizer parameters consecutively over its param groups; map those numbers to names."""
    names = {id(p): n for n, p in model.named_parameters()}
    ordered = [p for group in optimizer.param_groups for p in group["params"]]
    return {i: names[id(p)] for i, p in enumerate(ordered)}
