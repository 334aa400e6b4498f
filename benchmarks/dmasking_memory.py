"""DMaskingNAS memory and time per search step against the number of channel options per conv.

Synthetic spaces of 4 searchable MBConv blocks at 28x28 (expansion 4, kernel 3, no attention)
whose stem, block outputs and head each have 1, 2, 4, 8, 16 or 32 evenly spaced width options
up to the same maximum (64 channels per block), so the biggest child is the same network for
every option count. One search step is one weight step plus one architecture step:

- masking (`DMaskingNAS`, FBNetV2): every conv runs once at the maximum width and its output is
  multiplied by the Gumbel-weighted sum of prefix masks; the hidden width follows the input
  width's distribution;
- naive (the per-option DNAS form FBNetV2 compares against, written here for the comparison):
  every searchable conv is one conv per width option (expand, depthwise and project per hidden
  or output width), each option's output zero-padded to the maximum width and summed with its
  Gumbel weight; hidden and output widths get their own logits.

``masking_step_over_plain`` divides a masked weight step (one forward, backward and SGD update
of the supernet at 32 options) by a plain training step of the biggest child as a standalone
model on the same batch. The resolution part measures FBNetV2's spatial subsampling on the
1-option space: a step with resolutions {16, 20, 24, 28} searched over a step at 28 alone,
next to the ``sum (r/R)^2`` that its extra passes predict. ``search_step_over_plain`` divides
a whole search step (weight step and arch step) by a plain step of the biggest child on the
small space the peer comparison uses (stem 16; three MBConv blocks of strides 2, 2, 1 with
kernels {3, 5, 7}, expansions {1, 3, 6} and widths {8, 16, 32}; batch 64 at 28 px, 8 with
``--quick``; our head adds a 1x1 conv to 64 channels), both in channels-last (the library's
CPU default): two passes are its floor, the goal at most 2.2x.
``search_step_one_kernel_over_plain`` is the same with kernel 7 alone, which separates the
cost of FBNet's block-type mixture (every kernel's depthwise conv, BN and project run and
their outputs are summed) from that of masking. ``search_step_mixed_kernels_over_plain`` runs
the three kernels as one conv of the weighted sum of their kernels (``kernel_mixing:
weights``, a cheaper relaxation than FBNet's, not the same computation).

Memory: this CPU has no allocator counter, so the figure is the bytes of tensors saved for
backward during the step (`torch.autograd.graph.saved_tensors_hooks`, distinct storages,
parameters excluded): the activation memory that grows with kept per-option outputs. Time: the
median over repeats, interleaved between sizes, of one step's wall time on one thread. Goal:
masking at 32 options within 1.2x (memory) and 1.3x (time) of 1 option, and a masked weight
step at most 1.3x a plain step of the biggest child, and a search step at most 2.2x a plain one
on the small space. Prints one JSON line last.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from _common import hardware, run_kind
from torch import Tensor, nn

from supernas.cost.budget import Budget
from supernas.cost.macs import arch_cost
from supernas.nn import Supernet, build_model
from supernas.space import BlockSpec, HeadSpec, SearchSpace, StemSpec, biggest, smallest
from supernas.strategies import SearchContext
from supernas.strategies.dmasking import DMaskingNAS
from supernas.strategies.dmasking.search import frozen_weights, gumbel_softmax
from supernas.train.memory import saved_activation_bytes

OPTIONS = (1, 2, 4, 8, 16, 32)
STEM, WIDTH, HIDDEN, EXPANSION = 32, 64, 128, 4
STRIDES = (2, 1, 2, 1)
RESOLUTIONS = (16, 20, 24, 28)


def widths(maximum: int, count: int) -> tuple[int, ...]:
    return tuple(maximum * (i + 1) // count for i in range(count))


def space_with(count: int, resolutions: tuple[int, ...] = (28,)) -> SearchSpace:
    blocks = tuple(
        BlockSpec(i, stride, widths(WIDTH, count), (EXPANSION,), (3,))
        for i, stride in enumerate(STRIDES)
    )
    return SearchSpace(
        name=f"bench{count}",
        in_channels=1,
        num_classes=10,
        resolutions=resolutions,
        stem=StemSpec(out_channels=widths(STEM, count), stride=1),
        blocks=blocks,
        head=HeadSpec(hidden_channels=widths(HIDDEN, count), dropout=0.0),
        width_divisor=1,
    )


def peer_space(kernels: tuple[int, ...] = (3, 5, 7)) -> SearchSpace:
    """The 3-block space of the peer comparison (see the module docstring)."""
    blocks = tuple(
        BlockSpec(i, stride, (8, 16, 32), (1, 3, 6), kernels) for i, stride in enumerate((2, 2, 1))
    )
    return SearchSpace(
        name="peer3",
        in_channels=1,
        num_classes=10,
        resolutions=(28,),
        stem=StemSpec(out_channels=(16,), stride=1),
        blocks=blocks,
        head=HeadSpec(hidden_channels=(64,), dropout=0.0),
        width_divisor=1,
    )


def batches(batch_size: int):
    generator = torch.Generator().manual_seed(0)
    while True:
        yield (
            torch.randn(batch_size, 1, 28, 28, generator=generator),
            torch.randint(0, 10, (batch_size,), generator=generator),
        )


# -- masking: the real strategy ----------------------------------------------------------


def masking_strategy(
    space: SearchSpace, batch_size: int, channels_last: bool = False, **options
) -> DMaskingNAS:
    torch.manual_seed(0)
    net = Supernet(space).train()
    if channels_last:
        net.use_channels_last()
    stream = batches(batch_size)
    # Midway between the smallest and the biggest child: a cost term that pulls both ways.
    target = (arch_cost(space, smallest(space)).macs + arch_cost(space, biggest(space)).macs) / 2
    context = SearchContext(
        budget=Budget.of(space, target),
        model=net,
        weight_optimizer=torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9),
        arch_batches=lambda: iter(()),
        calibration_batches=lambda: iter(()),
        arch_stream=lambda: stream,
    )
    return DMaskingNAS(net, DMaskingNAS.Config(warmup_epochs=0, **options), context)


def masking_phases(strategy: DMaskingNAS) -> list[Callable[[tuple[Tensor, Tensor]], object]]:
    return [strategy.weight_step, strategy.arch_step]


# -- naive: one conv per width option ------------------------------------------------------


class PerOption(nn.Module):
    """One conv + BN (+ ReLU) per output width; outputs zero-padded to the widest and mixed."""

    def __init__(
        self,
        in_channels: int,
        outs: tuple[int, ...],
        kernel: int,
        stride: int,
        depthwise: bool = False,
        act: bool = True,
    ) -> None:
        super().__init__()
        self.outs, self.depthwise = outs, depthwise
        self.options = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(
                    c if depthwise else in_channels,
                    c,
                    kernel,
                    stride,
                    kernel // 2,
                    groups=c if depthwise else 1,
                    bias=False,
                ),
                nn.BatchNorm2d(c),
                nn.ReLU() if act else nn.Identity(),
            )
            for c in outs
        )

    def forward(self, x: Tensor, g: Tensor) -> Tensor:
        widest = max(self.outs)
        total = 0
        for weight, c, option in zip(g, self.outs, self.options, strict=True):
            y = option(x[:, :c] if self.depthwise else x)
            total = total + weight * F.pad(y, (0, 0, 0, 0, 0, widest - c))
        return total


class NaiveSupernet(nn.Module):
    """The per-option DNAS network over the same widths as `space_with`."""

    def __init__(self, count: int) -> None:
        super().__init__()
        outs, hidden = widths(WIDTH, count), widths(WIDTH * EXPANSION, count)
        self.stem = PerOption(1, widths(STEM, count), 3, 1)
        self.blocks = nn.ModuleList()
        in_channels = STEM
        for stride in STRIDES:
            self.blocks.append(
                nn.ModuleList(
                    [
                        PerOption(in_channels, hidden, 1, 1),
                        PerOption(WIDTH * EXPANSION, hidden, 3, stride, depthwise=True),
                        PerOption(WIDTH * EXPANSION, outs, 1, 1, act=False),
                    ]
                )
            )
            in_channels = WIDTH
        self.head = PerOption(WIDTH, widths(HIDDEN, count), 1, 1)
        self.classifier = nn.Linear(HIDDEN, 10)
        self.decisions = 2 + 2 * len(STRIDES)  # stem, head; hidden and output width per block

    def forward(self, x: Tensor, g: list[Tensor]) -> Tensor:
        x = self.stem(x, g[0])
        for i, (expand, depthwise, project) in enumerate(self.blocks):
            hidden, out = g[1 + 2 * i], g[2 + 2 * i]
            y = project(depthwise(expand(x, hidden), hidden), out)
            x = x + y if y.shape == x.shape else y
        x = self.head(x, g[-1]).mean((2, 3))
        return self.classifier(x)


def naive_phases(net: NaiveSupernet, count: int, batch_size: int) -> list[Callable]:
    alpha = [torch.zeros(count, requires_grad=True) for _ in range(net.decisions)]
    weight_optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    arch_optimizer = torch.optim.Adam(alpha, lr=0.01)
    generator = torch.Generator().manual_seed(0)
    arch_stream = batches(batch_size)

    def gumbel(differentiable: bool) -> list[Tensor]:
        return [gumbel_softmax(a if differentiable else a.detach(), 5.0, generator) for a in alpha]

    def weight_step(batch) -> None:
        weight_optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(net(batch[0], gumbel(False)), batch[1]).backward()
        weight_optimizer.step()

    def arch_step(batch) -> None:
        images, labels = next(arch_stream)
        arch_optimizer.zero_grad(set_to_none=True)
        with frozen_weights(net):
            loss = F.cross_entropy(net(images, gumbel(True)), labels)
        loss.backward()
        arch_optimizer.step()

    return [weight_step, arch_step]


# -- plain: the biggest child alone --------------------------------------------------------


def plain_phases(space: SearchSpace, channels_last: bool = False) -> list[Callable]:
    torch.manual_seed(0)
    model = build_model(space, biggest(space)).train()
    form = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=form)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step(batch) -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(batch[0].contiguous(memory_format=form)), batch[1]).backward()
        optimizer.step()

    return [step]


# -- measuring ---------------------------------------------------------------------------


def peak_mib(net: nn.Module, phases: list[Callable], batch) -> float:
    """The larger phase's saved bytes (measured apart: a freed storage could be reused)."""
    return max(saved_activation_bytes(net, lambda f=f: f(batch)) for f in phases) / 2**20


def median_times(runs: dict[str, list[Callable]], batch, repeats: int) -> dict[str, float]:
    """Median wall time of each run's phases together, interleaving the runs per repeat."""
    times: dict[str, list[float]] = {key: [] for key in runs}
    for _, (key, phases) in itertools.product(range(repeats + 1), runs.items()):
        start = time.perf_counter()
        for phase in phases:
            phase(batch)
        times[key].append(time.perf_counter() - start)
    return {key: statistics.median(t[1:]) for key, t in times.items()}  # first run warms up


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="batch 8, 2 repeats (<1 min)")
    parser.add_argument("--batch-size", type=int, help="default 8 with --quick, else 32")
    parser.add_argument("--repeats", type=int, help="default 2 with --quick, else 9")
    args = parser.parse_args()
    torch.set_num_threads(1)
    batch_size = args.batch_size or (8 if args.quick else 32)
    repeats = args.repeats or (2 if args.quick else 9)
    batch = next(batches(batch_size))

    masking = {n: masking_strategy(space_with(n), batch_size) for n in OPTIONS}
    naive = {n: NaiveSupernet(n).train() for n in OPTIONS}
    resolution = masking_strategy(space_with(1, RESOLUTIONS), batch_size)
    runs = {f"masking{n}": masking_phases(s) for n, s in masking.items()}
    runs |= {f"naive{n}": naive_phases(net, n, batch_size) for n, net in naive.items()}
    runs["masked_weight_step"] = masking_phases(masking[OPTIONS[-1]])[:1]
    runs["plain"] = plain_phases(space_with(OPTIONS[-1]))
    runs["resolutions"] = masking_phases(resolution)

    mib = {
        f"masking{n}": peak_mib(s.supernet, runs[f"masking{n}"], batch) for n, s in masking.items()
    }
    mib |= {f"naive{n}": peak_mib(net, runs[f"naive{n}"], batch) for n, net in naive.items()}
    seconds = median_times(runs, batch, repeats)
    peer_batch = next(batches(8 if args.quick else 64))
    size = len(peer_batch[0])
    peer = {
        "search_step": masking_phases(masking_strategy(peer_space(), size, True)),
        "search_step_one_kernel": masking_phases(masking_strategy(peer_space((7,)), size, True)),
        "search_step_mixed_kernels": masking_phases(
            masking_strategy(peer_space(), size, True, kernel_mixing="weights")
        ),
        "plain": plain_phases(peer_space(), channels_last=True),
    }
    peer_seconds = median_times(peer, peer_batch, repeats)

    result: dict[str, object] = {"benchmark": "dmasking_memory", "hardware": hardware()}
    result["options"] = list(OPTIONS)
    for method in ("masking", "naive"):
        result[f"{method}_peak_mib"] = [round(mib[f"{method}{n}"], 3) for n in OPTIONS]
        result[f"{method}_step_s"] = [round(seconds[f"{method}{n}"], 4) for n in OPTIONS]
        for key, unit in (("peak_mib", ""), ("step_s", "_time")):
            values = result[f"{method}_{key}"]
            result[f"{method}{unit}_ratio_32_to_1"] = round(values[-1] / values[0], 3)
    result["masking_step_over_plain"] = round(seconds["masked_weight_step"] / seconds["plain"], 3)
    result["search_step_over_plain"] = round(peer_seconds["search_step"] / peer_seconds["plain"], 3)
    result["search_step_s"] = round(peer_seconds["search_step"], 4)
    result["search_step_one_kernel_over_plain"] = round(
        peer_seconds["search_step_one_kernel"] / peer_seconds["plain"], 3
    )
    result["search_step_mixed_kernels_over_plain"] = round(
        peer_seconds["search_step_mixed_kernels"] / peer_seconds["plain"], 3
    )
    result["resolution_options"] = list(RESOLUTIONS)
    result["resolution_time_factor"] = round(seconds["resolutions"] / seconds["masking1"], 3)
    result["resolution_expected_factor"] = round(sum((r / 28) ** 2 for r in RESOLUTIONS), 3)
    result["memory_measure"] = "bytes saved for backward (saved_tensors_hooks), CPU"
    result["batch_size"] = batch_size
    result["run"] = run_kind(args.quick, faithful=True)
    result["goal_met"] = (
        result["masking_ratio_32_to_1"] <= 1.2
        and result["masking_time_ratio_32_to_1"] <= 1.3
        and result["masking_step_over_plain"] <= 1.3
        and result["search_step_over_plain"] <= 2.2
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
