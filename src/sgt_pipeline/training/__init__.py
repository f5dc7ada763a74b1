"""Training: the generic loop (trainer, checkpoints, schedule, distributed) and the SGT objective."""

from .checkpoint import CheckpointStore, seed_everything
from .config import TrainerConfig, TrainSummary
from .distributed import DistributedContext, init_distributed, resolve_precision
from .schedule import LRSchedule
from .trainer import NonFiniteLossError, Trainer

__all__ = [
    "CheckpointStore", "DistributedContext", "LRSchedule", "NonFiniteLossError", "TrainSummary", "Trainer",
    "TrainerConfig", "init_distributed", "resolve_precision", "seed_everything",
]
