"""The training loop shared by search and final training, checkpoints, metrics, DDP."""

from supernas.train.checkpoint import load_checkpoint, save_checkpoint, unwrap
from supernas.train.classifier import ClassifierTask, TrainConfig, evaluate_model, param_groups
from supernas.train.distributed import DistEnv, cleanup, init_distributed, resolve_device
from supernas.train.loop import LoopConfig, run_loop
from supernas.train.metrics import MetricsWriter, read_metrics
from supernas.train.schedules import cosine_with_warmup, exp_constant_end
from supernas.train.search import SearchTask

__all__ = [
    "ClassifierTask", "DistEnv", "LoopConfig", "MetricsWriter", "SearchTask", "TrainConfig",
    "cleanup", "cosine_with_warmup", "evaluate_model", "exp_constant_end", "init_distributed",
    "load_checkpoint", "param_groups", "read_metrics", "resolve_device", "run_loop",
    "save_checkpoint", "unwrap",
]
