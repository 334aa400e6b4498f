"""The training loop shared by search and final training: checkpoints, metrics, schedules, DDP."""

from supernas.train.checkpoint import load_checkpoint, save_checkpoint, unwrap
from supernas.train.classifier import ClassifierTask, TrainConfig, evaluate_model, param_groups
from supernas.train.distributed import (
    DistEnv,
    average_gradients,
    barrier,
    cleanup,
    init_distributed,
    resolve_device,
    wrap_ddp,
)
from supernas.train.loop import LoopConfig, Task, run_loop
from supernas.train.metrics import MetricsWriter, read_metrics
from supernas.train.schedules import Schedule, cosine_with_warmup, exp_constant_end
from supernas.train.search import SearchTask
from supernas.train.seed import seed_everything

__all__ = [
    "ClassifierTask",
    "DistEnv",
    "LoopConfig",
    "MetricsWriter",
    "Schedule",
    "SearchTask",
    "Task",
    "TrainConfig",
    "average_gradients",
    "barrier",
    "cleanup",
    "cosine_with_warmup",
    "evaluate_model",
    "exp_constant_end",
    "init_distributed",
    "load_checkpoint",
    "param_groups",
    "read_metrics",
    "resolve_device",
    "run_loop",
    "save_checkpoint",
    "seed_everything",
    "unwrap",
    "wrap_ddp",
]
