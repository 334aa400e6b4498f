"""Elastic layers: torch layers that own the largest weight and run any smaller slice of it.

Each layer is a subclass of the torch layer, so called without arguments it is exactly that
layer, and a standalone model built from the same classes at child size has the same parameter
names. Slicing rules (one helper each): leading channels for widths (the input width is read from
the incoming tensor) and the centre crop of the kernel for smaller kernel sizes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def centre_crop(weight: Tensor, kernel_size: int) -> Tensor:
    """The centre ``kernel_size`` x ``kernel_size`` window of a conv weight's last two dims."""
    full = weight.size(-1)
    if kernel_size == full:
        return weight
    start = full // 2 - kernel_size // 2
    return weight[..., start : start + kernel_size, start : start + kernel_size]


def slice_like(source: Tensor, shape: torch.Size) -> Tensor:
    """Slices a supernet tensor to a child's shape: leading indices, centre crop for kernels.

    A 4-D conv weight whose last two dims differ is a kernel crop; every other dim takes its
    leading entries. This one rule extracts every child weight because supernet and standalone
    model are built from the same classes (see module docstring).
    """
    if source.dim() != len(shape):
        raise ValueError(f"cannot slice a {tuple(source.shape)} tensor to {tuple(shape)}")
    if source.dim() == 4 and source.size(-1) != shape[-1]:
        source = centre_crop(source, shape[-1])
    index = tuple(slice(0, n) for n in shape)
    return source[index]


class ElasticConv2d(nn.Conv2d):
    """A dense or depthwise conv at maximum size; ``forward`` picks widths and kernel size.

    Only ``groups == 1`` and depthwise (``groups == in_channels == out_channels``) are supported,
    the two kinds an MBConv needs. Padding is always ``kernel_size // 2`` ("same" for stride 1).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        depthwise: bool = False,
        bias: bool = False,
    ) -> None:
        groups = in_channels if depthwise else 1
        if depthwise and in_channels != out_channels:
            raise ValueError("a depthwise conv keeps its width")
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            kernel_size // 2,
            groups=groups,
            bias=bias,
        )
        self.depthwise = depthwise

    def forward(
        self,
        x: Tensor,
        out_channels: int | None = None,
        kernel_size: int | None = None,
        in_scale: Tensor | None = None,
    ) -> Tensor:
        """``in_scale`` (a dense conv's, one factor per input channel) multiplies the weight:
        the same as scaling the input, for the price of the weight's size (a channel mask
        folded into the conv that follows it)."""
        in_channels = x.size(1)
        if self.depthwise:
            out_channels, groups = in_channels, in_channels
        else:
            out_channels, groups = out_channels or self.out_channels, 1
        kernel_size = kernel_size or self.kernel_size[0]
        weight, bias = self.weight, self.bias
        # At full size the weights go in whole: an exported graph then holds them as constants
        # (what int8 quantization and runtimes' fusions look for), not slices of them.
        if (out_channels, in_channels) != (self.out_channels, self.in_channels):
            weight = (
                weight[:out_channels] if self.depthwise else weight[:out_channels, :in_channels]
            )
            bias = None if bias is None else bias[:out_channels]
        weight = centre_crop(weight, kernel_size)
        if in_scale is not None:
            weight = weight * in_scale.view(1, -1, 1, 1)
        return F.conv2d(x, weight, bias, self.stride, kernel_size // 2, 1, groups)


class ElasticBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm over the leading ``x.size(1)`` channels of the full statistics and affine.

    Running statistics are updated in place through the slice views, so each width keeps
    training the statistics of the channels it uses.
    """

    def forward(self, x: Tensor) -> Tensor:
        channels = x.size(1)
        if channels == self.num_features:
            return super().forward(x)
        factor = 0.0
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:
                factor = 1.0 / float(self.num_batches_tracked)
            else:
                factor = self.momentum
        use_batch_stats = self.training or self.running_mean is None
        return F.batch_norm(
            x,
            None if self.running_mean is None else self.running_mean[:channels],
            None if self.running_var is None else self.running_var[:channels],
            None if self.weight is None else self.weight[:channels],
            None if self.bias is None else self.bias[:channels],
            use_batch_stats,
            factor,
            self.eps,
        )


class ElasticLinear(nn.Linear):
    """A linear layer whose input width is read from the incoming tensor."""

    def forward(self, x: Tensor) -> Tensor:
        in_features = x.size(-1)
        return F.linear(x, self.weight[:, :in_features], self.bias)
