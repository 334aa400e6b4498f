"""The soft supernet of DMaskingNAS: every decision of the space relaxed at once.

``MaskedForward(space, weights)`` is a callable ``(supernet, x) -> logits`` for
``supernet(x, relaxed)``; ``weights`` maps each decision name to its (Gumbel-softmax) weights.

- **Widths** (stem, block outputs, hidden widths, SE widths, head) are channel masks
  (`supernas.nn.masking`): each conv runs once at the widest option and its output is multiplied
  by the soft mask. Masks sit after BN and activation, where a zero is a real zero: the hidden
  mask after the expand and again after the depthwise conv (whose BN maps a zero channel to
  ``act(beta)``), the SE mask after its first conv, the output mask after the project BN. The
  hidden width is a function of the input width and the expansion, so its mask is the
  distribution of ``mid(c_in, e)`` over both, not a decision of its own. Expansion 1 has no
  expand conv: its hidden map is the block's input, mixed in with the expansion's weight beside
  the (masked) expand conv's output of the other expansions.
- **Block types** (kernel size x attention x activation) cannot be masked; as in FBNet the block
  output is the weighted sum of the candidate blocks, each at the masked widths. The weight of a
  type is the product of its three decisions' weights (our decisions are factorised; FBNet has
  one categorical over types). Candidates share what they have in common, which changes no
  number: one expand conv for all, one depthwise conv per (activation, kernel).
  ``kernel_mixing="weights"`` instead runs one depthwise conv per activation (and split) whose
  kernel is the weighted sum of the kernel sizes' (each zero-padded to the largest), as NNI's
  FBNetV2-style value choices do: 1.3-1.4x cheaper a step with kernels {3, 5, 7}, but not
  FBNet's mixture, since the depthwise BN and everything after it then see one summed map
  instead of one map per kernel. Both agree with the child at one-hot weights.
- **Depth**: an optional block's output is ``p * block(x) + (1 - p) * x``.
- **Residual**: a child has an identity shortcut when its input and output widths are equal
  (stride 1), so the shortcut enters with weight ``rho = P(c_in == c_out)``; spaces with
  ``shortcut="always"`` add ``(1 - rho)`` times the projected shortcut.
- **Resolution**: FBNetV2's spatial subsampling. Each resolution option subsamples the input by
  nearest neighbour and runs the trunk with the same weights and masks; the paper then places
  each output back on the full grid with zeros in between, so that maps of different sizes can
  be summed with aligned pixels. For classification that placement is followed by global
  average pooling over each path's own pixels, which gives the same numbers as pooling the small
  map, so we pool each path and sum the pooled features with the resolution weights; the
  classifier runs once. The cost grows with the options, as ``sum (r/R)^2`` of one full pass.

With one-hot weights every mask is a prefix mask and every mixture keeps one term, so the output
equals the child's exactly (train mode; the tests check it).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import Tensor

from supernas.nn.blocks import KernelMixture, MBConv, activate, global_avg_pool
from supernas.nn.masking import WidthDist, mixture
from supernas.nn.supernet import Supernet, resize
from supernas.space.choices import block_decisions, decisions
from supernas.space.plan import BlockPlan, conv_out_size
from supernas.space.space import BlockSpec, SearchSpace

SUBSAMPLING = ("nearest", "resize")
KERNEL_MIXING = ("outputs", "weights")


def subsample(x: Tensor, resolution: int, mode: str) -> Tensor:
    """``x`` at ``resolution``: nearest-neighbour subsampling (FBNetV2) or the data resize."""
    if mode == "resize" or x.size(-1) == resolution:
        return resize(x, resolution)
    return F.interpolate(x, size=(resolution, resolution), mode="nearest")


def _pad(x: Tensor, channels: int) -> Tensor:
    """Zero-pads or truncates the channel dim to ``channels``."""
    extra = channels - x.size(1)
    if extra == 0:
        return x
    if extra < 0:
        return x[:, :channels]
    return F.pad(x, (0, 0, 0, 0, 0, extra))


def _masked(x: Tensor, mask: Tensor) -> Tensor:
    return x * mask.view(1, -1, *([1] * (x.dim() - 2)))


class MaskedForward:
    """The supernet's forward pass under soft weights for every decision (see module doc)."""

    def __init__(
        self,
        space: SearchSpace,
        weights: Mapping[str, Tensor],
        subsampling: str = "nearest",
        kernel_mixing: str = "outputs",
    ) -> None:
        self.space = space
        self.weights = weights
        self.subsampling = subsampling
        self.kernel_mixing = kernel_mixing
        self.options = {d.name: d.options for d in decisions(space)}

    def paths(self, name: str) -> Iterator[tuple[object, Tensor]]:
        """(option, weight) pairs of a decision. Every option runs, even at weight 0: skipping
        one would mean reading the weight back from the device, a wait in every step."""
        return zip(self.options[name], self.weights[name], strict=True)

    def kernel_paths(self, prefix: str) -> Iterator[tuple[int | KernelMixture, Tensor | float]]:
        """(kernel, weight) per depthwise conv to run: each kernel size with its weight, their
        outputs to be summed (FBNet's block types), or with ``kernel_mixing="weights"`` one
        conv whose kernel is the weighted sum of theirs, at weight 1."""
        name = f"{prefix}.kernel_size"
        if self.kernel_mixing == "weights" and len(self.options[name]) > 1:
            return iter([(list(self.paths(name)), 1.0)])
        return self.paths(name)

    def dist(self, name: str) -> WidthDist:
        return WidthDist(tuple(self.options[name]), self.weights[name])

    def __call__(self, supernet: Supernet, x: Tensor) -> Tensor:
        pooled = sum(
            weight * self.features(supernet, subsample(x, r, self.subsampling))
            for r, weight in self.paths("resolution")
        )
        head = supernet.head
        return head.classifier(head.dropout(pooled))

    def features(self, supernet: Supernet, x: Tensor) -> Tensor:
        """Pooled, masked head features of one resolution path."""
        space = self.space
        stem_dist = self.dist("stem.out_channels")
        x = supernet.stem(x, max(stem_dist.support), space.stem.activation)
        x, width = _masked(x, stem_dist.mask(x.size(1))), stem_dist
        for index, block in enumerate(supernet.blocks):
            x, width = self.block(index, block, x, width)
        head_dist = self.dist("head.hidden_channels")
        hidden = activate(supernet.head.conv(x, max(head_dist.support)), space.head.activation)
        pooled = torch.flatten(global_avg_pool(hidden, supernet.training), 1)
        return _masked(pooled, head_dist.mask(pooled.size(1)))

    def block(
        self, index: int, block: MBConv, x: Tensor, width: WidthDist
    ) -> tuple[Tensor, WidthDist]:
        """Block ``index`` on ``x`` whose width is distributed as ``width``."""
        governed = block_decisions(self.space, index)
        prefix = governed.prefix
        out_width = self.dist(f"{prefix}.out_channels")
        present = self._presence(governed)
        in_width = out_width if governed.coupled else width
        spec = self.space.blocks[index]
        out = self.body(spec, block, prefix, x, in_width, out_width, governed.coupled)
        if isinstance(present, float):  # a block every child has
            return out, out_width
        channels = max(x.size(1), out.size(1))
        mixed = present * _pad(out, channels) + (1 - present) * _pad(x, channels)
        return mixed, mixture([(present, out_width), (1 - present, width)])

    def _presence(self, governed) -> Tensor | float:
        if governed.depth_index is not None:
            depths = self.options[f"{governed.prefix}.depth"]
            weights = self.weights[f"{governed.prefix}.depth"]
            runs = [weights[i] for i, depth in enumerate(depths) if depth > governed.depth_index]
            if len(runs) == len(depths):  # a stage's first block runs at every depth
                return 1.0
            return sum(runs, start=weights.new_zeros(()))
        if governed.optional:
            return self.weights[f"{governed.prefix}.present"][1]
        return 1.0

    def body(
        self,
        spec: BlockSpec,
        block: MBConv,
        prefix: str,
        x: Tensor,
        in_width: WidthDist,
        out_width: WidthDist,
        coupled: bool,
    ) -> Tensor:
        """The present block: the weighted sum of its candidate types at masked widths."""
        space = self.space
        expansions = list(self.paths(f"{prefix}.expansion"))
        expand = any(e != 1 for e, _ in expansions)
        expanded_width = mixture(
            [
                (weight, in_width.map(lambda c, e=e: space.mid_channels(c, e)))
                for e, weight in expansions
                if e != 1
            ]
            or [(0.0, in_width)]
        )
        identities = [weight for e, weight in expansions if e == 1]
        identity = sum(identities, start=0.0)
        mid_width = mixture([(1.0, expanded_width), (identity, in_width)])
        attn_width = mid_width.map(space.attention_channels)
        mid = max(*mid_width.support, x.size(1)) if expand else x.size(1)
        plan = BlockPlan(
            in_channels=x.size(1),
            out_channels=max(out_width.support),
            mid_channels=mid,
            attn_channels=max(attn_width.support),
            kernel_size=spec.kernel_sizes[0],
            stride=spec.stride,
            attention=0,
            activation=spec.activations[0],
            expand=expand,
            shortcut="none",
            in_size=x.size(-1),
            out_size=conv_out_size(x.size(-1), spec.stride),
        )
        mid_mask = mid_width.mask(mid)
        expanded_mask = expanded_width.mask(mid)
        attn_mask = attn_width.mask(plan.attn_channels)
        out_mask = out_width.mask(plan.out_channels)
        attentions = list(self.paths(f"{prefix}.attention"))
        branches = max(1, *(a for a, _ in attentions))  # depthwise splits to run
        # Without attention a split goes straight into the project conv, which is linear: its
        # hidden mask is folded into the conv's weight rather than multiplied into the map.
        folded = all(a == 0 for a, _ in attentions)
        split_mask, project_mask = (None, mid_mask) if folded else (mid_mask, None)
        pre = block.expand(x, mid) if expand else None
        # Expansion 1 has no expand conv: its hidden map is the input itself, whatever the
        # activation, so its share is computed once.
        kept = identity * _pad(x, mid) if expand and identities else None
        total: Tensor | None = None
        for activation, act_weight in self.paths(f"{prefix}.activation"):
            typed = replace(plan, activation=activation)
            hidden = x
            if expand:
                hidden = block.expanded(x, typed, expanded_mask, pre)
                hidden = hidden if kept is None else hidden + kept
            for kernel, kernel_weight in self.kernel_paths(prefix):
                splits = block.splits(hidden, typed, split_mask, branches, kernel)
                for attention, attn_weight in attentions:
                    typed = replace(typed, attention=attention)
                    # The type's weight rides on the output mask, a vector, rather than
                    # costing another pass over the map (and its backward).
                    weighted = out_mask * (act_weight * kernel_weight * attn_weight)
                    attended = block.attend(splits, typed, attn_mask)
                    out = block.projected(attended, typed, weighted, project_mask)
                    total = out if total is None else total + out
        assert total is not None  # every decision has an option
        shortcut = self.shortcut(spec, block, x, in_width, out_width, coupled, plan.out_channels)
        if shortcut is None:
            return total
        return total + _masked(shortcut, out_mask)

    def shortcut(
        self,
        spec: BlockSpec,
        block: MBConv,
        x: Tensor,
        in_width: WidthDist,
        out_width: WidthDist,
        coupled: bool,
        channels: int,
    ) -> Tensor | None:
        """The expected shortcut: identity with weight P(c_in == c_out), else projected."""
        if spec.stride > 1:
            if self.space.shortcut != "always":
                return None
            x = F.avg_pool2d(x, spec.stride, spec.stride, ceil_mode=True, count_include_pad=False)
        same = 1.0 if coupled else in_width.prob_equal(out_width)
        identity = same * _pad(x, channels)
        if self.space.shortcut != "always" or block.shortcut is None or coupled:
            return identity
        return identity + (1 - same) * block.shortcut(x, channels)
