"""Activation memory of a step where no allocator counter exists (the CPU)."""

from __future__ import annotations

from collections.abc import Callable

import torch


def saved_activation_bytes(net: torch.nn.Module, step: Callable[[], object]) -> int:
    """Bytes of the distinct non-parameter storages saved for backward while ``step`` runs:
    the activation memory that grows with what a search keeps alive."""
    weights = {p.untyped_storage().data_ptr() for p in net.parameters()}
    seen: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in weights:
            seen[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step()
    return sum(seen.values())
