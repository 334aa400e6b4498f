"""Channel masking (FBNetV2): a soft width as a weighted sum of prefix masks.

A layer runs once at its maximum width ``C``. A width choice over options ``c_1 < ... < c_n``
with weights ``g`` becomes the mask ``M = g^T Mask``, where ``Mask[i, j] = 1[j < c_i]`` keeps the
first ``c_i`` channels. ``z * M`` equals the ``g``-weighted sum of the zero-padded outputs of the
``n`` widths, since every width shares the leading channels' weights, at the price of one layer
and one ``n x C`` product whatever ``n`` is. ``M`` is a non-increasing staircase and
``sum_j M_j = sum_i g_i c_i``, the effective width.

A `WidthDist` carries the distribution of one width through the network: the input width of a
block is the output width of the last present block before it, and a hidden width is a function
of the input width and the expansion, so both are distributions pushed forward from the
decisions' weights rather than decisions of their own.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor


# Cached per device and dtype: a search step builds the same few tables every step, and a
# table made once on the device costs no host-to-device copy afterwards.
@functools.lru_cache(maxsize=1024)
def _prefix_masks(
    widths: tuple[int, ...], channels: int, device: torch.device, dtype: torch.dtype
) -> Tensor:
    rows = torch.arange(channels).unsqueeze(0) < torch.tensor(widths).unsqueeze(1)
    return rows.to(device, dtype)


@functools.lru_cache(maxsize=1024)
def _positions(support: tuple[int, ...], widths: tuple[int, ...], device: torch.device) -> Tensor:
    return torch.tensor([support.index(c) for c in widths]).to(device)


def prefix_masks(
    widths: Sequence[int],
    channels: int,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """``[len(widths), channels]`` 0/1 matrix whose row i keeps the first ``widths[i]`` channels."""
    if max(widths) > channels:
        raise ValueError(f"width {max(widths)} exceeds the layer's {channels} channels")
    return _prefix_masks(tuple(widths), channels, torch.device(device), dtype)


@dataclass(frozen=True)
class WidthDist:
    """A distribution over channel counts: ``probs[i]`` is the weight of ``support[i]``."""

    support: tuple[int, ...]
    probs: Tensor

    def mask(self, channels: int) -> Tensor:
        """The soft mask over ``channels`` channels (the weighted sum of prefix masks)."""
        return self.probs @ prefix_masks(
            self.support, channels, self.probs.device, self.probs.dtype
        )

    def map(self, fn: Callable[[int], int]) -> WidthDist:
        """The distribution of ``fn(width)``."""
        return mixture([(1.0, WidthDist(tuple(fn(c) for c in self.support), self.probs))])

    def prob_equal(self, other: WidthDist) -> Tensor:
        """P(self == other) for independent widths."""
        total = self.probs.new_zeros(())
        for i, width in enumerate(self.support):
            if width in other.support:
                total = total + self.probs[i] * other.probs[other.support.index(width)]
        return total


def mixture(parts: Sequence[tuple[Tensor | float, WidthDist]]) -> WidthDist:
    """The mixture ``sum_k w_k * dist_k`` on the union of the supports (equal widths merged)."""
    support = tuple(sorted({c for _, dist in parts for c in dist.support}))
    reference = parts[0][1].probs
    probs = reference.new_zeros(len(support))
    for weight, dist in parts:
        index = _positions(support, dist.support, probs.device)
        probs = probs.index_add(0, index, weight * dist.probs)
    return WidthDist(support, probs)
