"""The building blocks shared by the supernet and the standalone model.

Built at maximum size they are the supernet; built at a child's exact size they are the
standalone model. Parameter names are the same either way, which is what lets
`extract_child` copy weights with one generic slice.

MBConv (inverted residual): optional 1x1 expand (+BN+act), depthwise kxk (+BN+act), optional
attention, 1x1 project (+BN), shortcut. Attention ``r`` (the arch's ``attention``):

- ``r == 1``: Squeeze-Excite (pool, 1x1 conv, ReLU, 1x1 conv, hard-sigmoid gate), as in
  FBNetV2's ``_sehsig`` blocks.
- ``r >= 2``: Split-Attention (ResNeSt, placed in the MBConv as FP-NAS does): ``r``
  depthwise convs give the splits U_1..U_r, s = pool(sum U_i), a = softmax over splits of
  FC2_i(ReLU(FC1(s))), output sum a_i * U_i. Split 0 shares its weights with the plain
  depthwise conv, so all attention options share one trunk. FP-NAS's multiplier-r depthwise conv
  is the same computation as our r depthwise convs stacked; keeping them as separate modules
  makes every child weight a leading slice of the supernet's.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from supernas.nn.elastic import ElasticBatchNorm2d, ElasticConv2d, ElasticLinear, centre_crop
from supernas.space.plan import BlockPlan

KernelMixture = Sequence[tuple[int, Tensor]]  # (kernel size, weight) pairs of one soft choice

_ACTIVATIONS = {
    "relu": F.relu,
    "relu6": F.relu6,
    "hswish": F.hardswish,
    "swish": F.silu,
}


def activate(x: Tensor, name: str) -> Tensor:
    """Applies a named activation; activations are stateless, so one block serves them all."""
    return _ACTIVATIONS[name](x)


def global_avg_pool(x: Tensor, training: bool) -> Tensor:
    """The mean over the spatial positions, as an ``N x C x 1 x 1`` tensor.

    In training it is taken as a sum then a division: the sum's backward is a broadcast view of
    the pooled gradient, which the elementwise backward it meets reads in the layout of its
    other input. The backward of ``adaptive_avg_pool2d`` (and of ``mean``) writes an NCHW tensor
    instead, and on the CPU an elementwise op over one channels-last and one NCHW input runs
    5-10x slower than over two alike (a training step of ``fmnist_small``'s biggest child: 0.95x
    the time). In evaluation, and so in every export, it is the one pooling operator that the
    deployment runtimes know. The sum names its dtype so that CUDA autocast, which runs ``sum``
    in float32, does not cast a bf16 map up: that cast's backward would write the broadcast
    gradient out as an NCHW tensor again. float16 keeps the mean, whose result cannot
    overflow where a sum over a large map would (65,504 is float16's largest value).
    """
    if not training or x.dtype == torch.float16:
        return F.adaptive_avg_pool2d(x, 1)
    return x.sum((2, 3), keepdim=True, dtype=x.dtype) / (x.size(2) * x.size(3))


class ConvNorm(nn.Module):
    """An elastic conv followed by an elastic BatchNorm; the activation is the caller's."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 1,
        stride: int = 1,
        depthwise: bool = False,
    ) -> None:
        super().__init__()
        self.conv = ElasticConv2d(in_channels, out_channels, kernel_size, stride, depthwise)
        self.bn = ElasticBatchNorm2d(out_channels)

    def forward(
        self,
        x: Tensor,
        out_channels: int | None = None,
        kernel_size: int | None = None,
        in_scale: Tensor | None = None,
    ) -> Tensor:
        return self.bn(self.conv(x, out_channels, kernel_size, in_scale))


class DepthwiseConvNorm(nn.Module):
    """Depthwise conv + BN over several kernel sizes.

    ``sharing="crop"`` holds one kernel at the largest size and crops its centre (BigNAS);
    ``"separate"`` holds one weight per kernel size (ProxylessNAS-style candidates).
    """

    def __init__(
        self, channels: int, kernel_sizes: Sequence[int], stride: int, sharing: str
    ) -> None:
        super().__init__()
        self.sharing = sharing
        self.stride = stride
        if sharing == "crop":
            self.conv = ElasticConv2d(channels, channels, max(kernel_sizes), stride, depthwise=True)
        else:
            self.convs = nn.ModuleDict(
                {
                    str(k): ElasticConv2d(channels, channels, k, stride, depthwise=True)
                    for k in kernel_sizes
                }
            )
        self.bn = ElasticBatchNorm2d(channels)

    def forward(self, x: Tensor, kernel_size: int | KernelMixture) -> Tensor:
        """The conv at ``kernel_size``, or at a `KernelMixture`: its kernels, zero-padded to the
        largest, summed with their weights into one kernel (FBNetV2's masking applied to kernel
        sizes, as NNI's value choices do)."""
        if not isinstance(kernel_size, int):
            return self.bn(self._mixed(x, kernel_size))
        if self.sharing == "crop":
            return self.bn(self.conv(x, kernel_size=kernel_size))
        return self.bn(self.convs[str(kernel_size)](x))

    def _kernel(self, size: int) -> Tensor:
        if self.sharing == "crop":
            return centre_crop(self.conv.weight, size)
        return self.convs[str(size)].weight

    def _mixed(self, x: Tensor, kernels: KernelMixture) -> Tensor:
        largest = max(size for size, _ in kernels)
        channels = x.size(1)
        weight = sum(
            mix * F.pad(self._kernel(size)[:channels], [(largest - size) // 2] * 4)
            for size, mix in kernels
        )
        return F.conv2d(x, weight, None, self.stride, largest // 2, 1, channels)


class SplitAttention(nn.Module):
    """Squeeze-Excite (one split) or Split-Attention (several) over depthwise outputs."""

    def __init__(self, channels: int, attn_channels: int, num_splits: int) -> None:
        super().__init__()
        self.reduce = ElasticConv2d(channels, attn_channels, 1, bias=True)
        self.expand = nn.ModuleList(
            ElasticConv2d(attn_channels, channels, 1, bias=True) for _ in range(num_splits)
        )

    def forward(
        self, splits: list[Tensor], attn_channels: int, attn_mask: Tensor | None = None
    ) -> Tensor:
        total = splits[0] if len(splits) == 1 else torch.stack(splits).sum(0)
        pooled = global_avg_pool(total, self.training)
        hidden = _masked(F.relu(self.reduce(pooled, attn_channels)), attn_mask)
        channels = splits[0].size(1)
        logits = [self.expand[i](hidden, channels) for i in range(len(splits))]
        if len(splits) == 1:
            return splits[0] * F.hardsigmoid(logits[0])
        weights = torch.softmax(torch.stack(logits), dim=0)
        return (weights * torch.stack(splits)).sum(0)


class MBConv(nn.Module):
    """Inverted-residual block at given maximum widths; ``forward`` runs one `BlockPlan`.

    Args:
        max_splits: the number of depthwise splits to hold (1 when no split-attention is used).
        attention: whether to hold an attention module (any attention >= 1 among the options).
        expand: whether to hold the 1x1 expand conv (any expansion != 1 among the options).
        project_shortcut: whether to hold the 1x1 shortcut conv used when shapes change
            (spaces with ``shortcut="always"``).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        mid_channels: int,
        attn_channels: int,
        kernel_sizes: Sequence[int],
        stride: int,
        max_splits: int,
        *,
        attention: bool,
        expand: bool,
        project_shortcut: bool,
        sharing: str,
    ) -> None:
        super().__init__()
        self.stride = stride
        self.expand = ConvNorm(in_channels, mid_channels) if expand else nn.Identity()
        self.dw = nn.ModuleList(
            DepthwiseConvNorm(mid_channels, kernel_sizes, stride, sharing)
            for _ in range(max_splits)
        )
        self.attn = SplitAttention(mid_channels, attn_channels, max_splits) if attention else None
        self.project = ConvNorm(mid_channels, out_channels)
        self.shortcut = (
            ElasticConv2d(in_channels, out_channels, 1, bias=False) if project_shortcut else None
        )

    def forward(
        self,
        x: Tensor,
        plan: BlockPlan,
        mid_mask: Tensor | None = None,
        out_mask: Tensor | None = None,
        attn_mask: Tensor | None = None,
    ) -> Tensor:
        """Runs the child ``plan``; optional soft masks multiply the hidden, output and
        attention channels.

        Masks (shape ``[channels]``) serve channel masking (FBNetV2): run at the widths in
        ``plan`` (normally the maximum) and weight each channel. They are applied after the
        activations and after the project BN, where a zero really zeroes the channel. The
        stages are separate methods so that a relaxed forward can share a stage's output among
        the candidates that agree up to it.
        """
        hidden = self.expanded(x, plan, mid_mask) if plan.expand else x
        splits = self.splits(hidden, plan, mid_mask, max(plan.attention, 1))
        return self.projected(self.attend(splits, plan, attn_mask), plan, out_mask) + (
            self.shortcut_of(x, plan)
        )

    def expanded(
        self, x: Tensor, plan: BlockPlan, mid_mask: Tensor | None, pre: Tensor | None = None
    ) -> Tensor:
        """The activated, masked hidden map; ``pre`` is the expand conv + BN output if known."""
        pre = self.expand(x, plan.mid_channels) if pre is None else pre
        return _masked(activate(pre, plan.activation), mid_mask)

    def splits(
        self,
        hidden: Tensor,
        plan: BlockPlan,
        mid_mask: Tensor | None,
        count: int,
        kernel_size: int | KernelMixture | None = None,
    ) -> list[Tensor]:
        """The first ``count`` depthwise branches (split-attention uses several), at the
        plan's kernel size unless another size or a mixture of sizes is given (see
        `DepthwiseConvNorm.forward`)."""
        kernel_size = plan.kernel_size if kernel_size is None else kernel_size
        return [
            _masked(activate(self.dw[i](hidden, kernel_size), plan.activation), mid_mask)
            for i in range(count)
        ]

    def attend(self, splits: list[Tensor], plan: BlockPlan, attn_mask: Tensor | None) -> Tensor:
        if plan.attention == 0:
            return splits[0]
        return self.attn(splits[: plan.attention], plan.attn_channels, attn_mask)

    def projected(
        self,
        hidden: Tensor,
        plan: BlockPlan,
        out_mask: Tensor | None,
        in_mask: Tensor | None = None,
    ) -> Tensor:
        """The project conv + BN, masked; ``in_mask`` masks ``hidden``'s channels inside the
        (linear) conv, which costs a pass over its weight instead of over the map."""
        return _masked(self.project(hidden, plan.out_channels, in_scale=in_mask), out_mask)

    def shortcut_of(self, x: Tensor, plan: BlockPlan) -> Tensor | float:
        """The shortcut branch of ``plan`` (0 when the child has none)."""
        if plan.shortcut == "none":
            return 0.0
        if plan.shortcut == "identity":
            return x
        if plan.stride > 1:
            x = F.avg_pool2d(x, plan.stride, plan.stride, ceil_mode=True, count_include_pad=False)
        if plan.in_channels != plan.out_channels:
            x = self.shortcut(x, plan.out_channels)
        return x


def _masked(x: Tensor, mask: Tensor | None) -> Tensor:
    return x if mask is None else x * mask.view(1, -1, 1, 1)


class Stem(nn.Module):
    """First conv + BN + activation."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int) -> None:
        super().__init__()
        self.conv = ConvNorm(in_channels, out_channels, kernel_size, stride)

    def forward(self, x: Tensor, out_channels: int, activation: str) -> Tensor:
        return activate(self.conv(x, out_channels), activation)


class Head(nn.Module):
    """1x1 conv + BN + activation, global average pool, dropout, linear classifier."""

    def __init__(
        self, in_channels: int, hidden_channels: int, num_classes: int, dropout: float
    ) -> None:
        super().__init__()
        self.conv = ConvNorm(in_channels, hidden_channels)
        self.dropout = nn.Dropout(dropout)
        self.classifier = ElasticLinear(hidden_channels, num_classes)

    def forward(self, x: Tensor, hidden_channels: int, activation: str) -> Tensor:
        x = activate(self.conv(x, hidden_channels), activation)
        x = torch.flatten(global_avg_pool(x, self.training), 1)
        return self.classifier(self.dropout(x))
