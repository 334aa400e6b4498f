"""One process, or one per device under ``torchrun`` (DDP): gloo on the CPU, NCCL on CUDA.

``torchrun`` gives each process ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; without them the
run is a single process and every function here is a no-op. The ranks travel in a `DistEnv`
passed by the caller, so code that takes one can be tested without a process group.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import nn

from supernas.errors import ConfigError, RankError

DEVICES = ("auto", "cpu", "cuda")
T = TypeVar("T")


@dataclass(frozen=True)
class DistEnv:
    """Where this process stands among the run's processes."""

    rank: int = 0  # 0 .. world_size - 1 over all nodes
    world_size: int = 1
    local_rank: int = 0  # the index of this process's GPU on its node

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes checkpoints, metrics and progress."""
        return self.rank == 0


def resolve_device(name: str, env: DistEnv) -> torch.device:
    """The device named in the config; ``"auto"`` takes CUDA when present.

    Under DDP each process takes the GPU of its local rank.

    Raises:
        ConfigError: The name is unknown, or CUDA is asked for and torch sees no GPU.
    """
    if name not in DEVICES:
        raise ConfigError(f"device {name!r} is not one of {', '.join(DEVICES)}")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for but torch sees no CUDA device; use cpu")
    return torch.device("cuda", env.local_rank)


def init_distributed(device: str = "auto", timeout_s: float = 600.0) -> DistEnv:
    """Reads torchrun's environment and joins the process group.

    The backend follows the device, not the machine: a run on ``device="cpu"`` uses gloo even
    where CUDA is present, since NCCL cannot move CPU tensors. A collective that waits longer
    than ``timeout_s`` for another process fails (see `rank_failures`) instead of hanging.
    """
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return DistEnv()
    env = DistEnv(
        int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0))
    )
    if env.distributed and not dist.is_initialized():
        target = resolve_device(device, env)
        if target.type == "cuda":
            torch.cuda.set_device(target)
        timeout = datetime.timedelta(seconds=timeout_s)
        store, rank, world_size = next(
            dist.rendezvous("env://", env.rank, env.world_size, timeout=timeout)
        )
        # torchrun --max-restarts keeps one store across restarts: a restarted worker could
        # read its peer's address from the killed round and wait on a dead port until the
        # timeout. Each round's keys live under their own prefix instead.
        attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
        dist.init_process_group(
            "nccl" if target.type == "cuda" else "gloo",
            store=dist.PrefixStore(f"supernas/attempt{attempt}", store),
            rank=rank,
            world_size=world_size,
            timeout=timeout,
        )
    return env


@contextlib.contextmanager
def rank_failures(env: DistEnv, timeout_s: float) -> Iterator[None]:
    """Turns a collective that timed out or lost its peer into a one-line `RankError`."""
    try:
        yield
    except RuntimeError as error:  # gloo raises RuntimeError, NCCL its subclass DistBackendError
        text = str(error).lower()
        lost = any(sign in text for sign in ("timed out", "closed by peer", "connection reset"))
        if not env.distributed or not (lost or isinstance(error, dist.DistBackendError)):
            raise
        what = (
            f"did not answer within timeout_s = {timeout_s:g} s (hung or dead)"
            if "timed out" in text
            else "was lost (its connection closed: it died or was killed)"
        )
        raise RankError(
            f"rank {env.rank}: another process of the run {what}; resume from the last "
            "checkpoint with --resume"
        ) from None


def wrap_ddp(
    model: nn.Module, env: DistEnv, device: torch.device, find_unused_parameters: bool = False
) -> nn.Module:
    """DDP in a distributed run, ``model`` itself otherwise.

    DDP copies rank 0's weights to every rank here, so all ranks start equal whatever their
    seeds. A supernet needs ``find_unused_parameters``: each step's child leaves most of its
    weights without a gradient.
    """
    if not env.distributed:
        return model
    device_ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(
        model, device_ids=device_ids, find_unused_parameters=find_unused_parameters
    )


def average_gradients(tensors: Iterable[torch.Tensor], env: DistEnv) -> None:
    """Averages the ``.grad`` of ``tensors`` over the ranks, in place, in one all-reduce.

    For what DDP does not cover: architecture parameters and passes run outside the DDP
    wrapper. A gradient missing on a rank counts as zero there, so that every rank takes part
    in the same collective whatever its own step touched; one missing on every rank stays
    missing, as in a single process, so that momentum and weight decay leave alone what no
    rank's step used.
    """
    if not env.distributed:
        return
    tensors = list(tensors)
    if not tensors:
        return
    missing = [t.grad is None for t in tensors]
    grads = [torch.zeros_like(t) if t.grad is None else t.grad for t in tensors]
    used = torch.tensor([0.0 if gone else 1.0 for gone in missing]).to(grads[0])
    flat = torch.cat([*(g.reshape(-1) for g in grads), used])
    dist.all_reduce(flat)
    flat /= env.world_size
    # Read back only when this rank lacks a gradient: one it has is used somewhere.
    used_anywhere = flat[-len(tensors) :].tolist() if any(missing) else [1.0] * len(tensors)
    offset = 0
    for tensor, grad, anywhere in zip(tensors, grads, used_anywhere, strict=True):
        count = grad.numel()
        grad.copy_(flat[offset : offset + count].view_as(grad))
        tensor.grad = grad if anywhere > 0 else None
        offset += count


def any_rank(flag: bool, env: DistEnv) -> bool:
    """Whether ``flag`` is set on any rank (every rank gets the same answer)."""
    if not env.distributed:
        return flag
    nccl = dist.get_backend() == "nccl"
    device = torch.device("cuda", torch.cuda.current_device()) if nccl else torch.device("cpu")
    value = torch.tensor([float(flag)], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def from_main(value: T, env: DistEnv) -> T:
    """Rank 0's ``value`` on every rank (e.g. the run directory only rank 0 may create)."""
    if not env.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(env: DistEnv) -> None:
    """Waits for every rank (e.g. until rank 0 has written a checkpoint)."""
    if env.distributed:
        dist.barrier()


def cleanup(env: DistEnv) -> None:
    """Leaves the process group, so that the processes exit without a warning."""
    if env.distributed and dist.is_initialized():
        dist.destroy_process_group()
