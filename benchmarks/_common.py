"""What the benchmarks share: the machine they ran on and the activation memory of a step."""

import os
import platform
from collections.abc import Callable

import torch


def hardware() -> str:
    cpu = platform.processor() or platform.machine()
    threads = torch.get_num_threads()
    return f"{cpu}, {os.cpu_count()} cores, {threads} torch threads, torch {torch.__version__}"


def saved_bytes(net: torch.nn.Module, step: Callable[[], object]) -> int:
    """Bytes of distinct non-parameter storages saved for backward while ``step`` runs."""
    weights = {p.untyped_storage().data_ptr() for p in net.parameters()}
    seen: dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in weights:
            seen[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step()
    return sum(seen.values())
