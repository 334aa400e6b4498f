"""ProxylessNAS memory and time per search step against the number of candidate ops per block.

Synthetic spaces of 4 searchable blocks at 28x28 whose blocks have 2, 4, 9, 18 or 27 candidate
ops (kernel x expansion x width). One search step is one weight step plus one architecture step:

- binarized (two-path mode, `ProxylessNAS`): the weight step runs one sampled path per block,
  the architecture step two (the second re-run in backward without keeping activations);
- full (the reference code's default ``full_v2``, reported for contrast): as binarized, but the
  architecture step re-runs every candidate in backward, so its time grows with the candidates;
- all paths (DARTS-style, `weighted_forward`): every block outputs ``sum_j softmax(alpha)_j
  o_j(x)`` in both steps, so all candidates' activations are kept.

So that the step's work differs only by the number of candidates, every space contains the same
two ops (k5 e6 c32 and k3 e6 c32) and alpha is set so that the binarized steps always draw those
two, the first active; the all-paths steps run every candidate by construction.

Memory: this CPU has no allocator counter, so the figure is the bytes of tensors saved for
backward during the step (`torch.autograd.graph.saved_tensors_hooks`, distinct storages,
parameters and their slices excluded): the activation memory that grows with kept paths. It
leaves out the transient output of a candidate re-run under ``no_grad`` (one block output at a
time) and the weights, which are the same for every method. Time: the median over repeats,
interleaved between spaces, of one step's wall time on one thread. Goal: binarized memory and
time within 1.2x and 1.3x from the fewest to the most candidates. Prints one JSON line last.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import time

import torch
import torch.nn.functional as F
from _common import hardware, run_kind

from supernas.cost.budget import Budget
from supernas.cost.macs import arch_cost
from supernas.nn import Supernet
from supernas.space import BlockSpec, HeadSpec, SearchSpace, StemSpec, smallest
from supernas.strategies import SearchContext
from supernas.strategies.proxyless import ProxylessNAS
from supernas.strategies.proxyless.paths import weighted_forward
from supernas.train.memory import saved_activation_bytes

OPTIONS = {  # candidates per block: (kernel sizes, expansions, widths)
    2: ((3, 5), (6,), (32,)),
    4: ((3, 5), (3, 6), (32,)),
    9: ((3, 5, 7), (3, 4, 6), (32,)),
    18: ((3, 5, 7), (3, 4, 6), (24, 32)),
    27: ((3, 5, 7), (3, 4, 6), (16, 24, 32)),
}
ACTIVE, SECOND = (32, 6, 5), (32, 6, 3)  # (width, expansion, kernel) of the two drawn paths


def space_with(ops: int) -> SearchSpace:
    kernels, expansions, widths = OPTIONS[ops]
    strides = (2, 1, 2, 1)
    blocks = tuple(BlockSpec(i, s, widths, expansions, kernels) for i, s in enumerate(strides))
    return SearchSpace(
        name=f"bench{ops}",
        in_channels=1,
        num_classes=10,
        resolutions=(28,),
        stem=StemSpec(out_channels=(16,), stride=1),
        blocks=blocks,
        head=HeadSpec(hidden_channels=(128,)),
        kernel_sharing="separate",
    )


def _batches(batch_size: int):
    generator = torch.Generator().manual_seed(0)
    while True:
        yield (
            torch.randn(batch_size, 1, 28, 28, generator=generator),
            torch.randint(0, 10, (batch_size,), generator=generator),
        )


def make_strategy(ops: int, batch_size: int, mode: str = "two_path") -> ProxylessNAS:
    space = space_with(ops)
    torch.manual_seed(0)
    net = Supernet(space).train()
    stream = _batches(batch_size)
    context = SearchContext(
        budget=Budget.of(space, 1.5 * arch_cost(space, smallest(space)).macs),  # a cost term
        model=net,
        weight_optimizer=torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9),
        arch_batches=lambda: iter(()),
        calibration_batches=lambda: iter(()),
        arch_stream=lambda: stream,
    )
    config = ProxylessNAS.Config(mode=mode, arch_every=1)
    strategy = ProxylessNAS(net, config, context)
    with torch.no_grad():
        for alpha, options in zip(strategy.alphas, strategy.frame.candidates, strict=True):
            keys = [(o.out_channels, o.expansion, o.kernel_size) for o in options]
            alpha.fill_(-30.0)
            alpha[keys.index(ACTIVE)] = 30.0
            alpha[keys.index(SECOND)] = 0.0
    return strategy


def binarized_weight(strategy: ProxylessNAS, batch) -> None:
    strategy.weight_step(batch)


def binarized_arch(strategy: ProxylessNAS, batch) -> None:
    strategy.arch_step(strategy.arch_stream.next())


def all_paths_weight(strategy: ProxylessNAS, batch) -> None:
    net, frame = strategy.supernet, strategy.frame
    optimizer = strategy.context.weight_optimizer
    optimizer.zero_grad(set_to_none=True)
    mixes = [torch.softmax(a.detach(), 0) for a in strategy.alphas]
    F.cross_entropy(net(batch[0], weighted_forward(frame, mixes)), batch[1]).backward()
    optimizer.step()


def all_paths_arch(strategy: ProxylessNAS, batch) -> None:
    net, frame = strategy.supernet, strategy.frame
    images, labels = strategy.arch_stream.next()
    strategy.arch_optimizer.zero_grad(set_to_none=True)
    mixes = [torch.softmax(a, 0) for a in strategy.alphas]
    F.cross_entropy(net(images, weighted_forward(frame, mixes)), labels).backward()
    strategy.arch_optimizer.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (<1 min)")
    parser.add_argument("--batch-size", type=int, help="default 16 with --quick, else 32")
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.batch_size = args.batch_size or (16 if args.quick else 32)
    repeats = 2 if args.quick else 7
    ops = sorted(OPTIONS)
    methods = {
        "binarized": (binarized_weight, binarized_arch),
        "full": (binarized_weight, binarized_arch),
        "all_paths": (all_paths_weight, all_paths_arch),
    }
    modes = {"full": "full"}
    strategies = {
        (m, n): make_strategy(n, args.batch_size, modes.get(m, "two_path"))
        for m in methods
        for n in ops
    }
    batch = next(_batches(args.batch_size))
    # Each phase alone: the saved tensors of one forward are all alive at once (a storage
    # freed in an earlier phase could be reused and hide a later one).
    peak = {
        key: max(
            saved_activation_bytes(s.supernet, lambda s=s, f=f: f(s, batch))
            for f in methods[key[0]]
        )
        / 2**20
        for key, s in strategies.items()
    }
    times: dict[tuple[str, int], list[float]] = {key: [] for key in strategies}
    for _, (key, strategy) in itertools.product(range(repeats), strategies.items()):
        start = time.perf_counter()
        for phase in methods[key[0]]:
            phase(strategy, batch)
        times[key].append(time.perf_counter() - start)
    step_s = {key: statistics.median(t) for key, t in times.items()}
    result = {"benchmark": "proxyless_memory", "hardware": hardware(), "ops": ops}
    for method in methods:
        result[f"{method}_peak_mib"] = [round(peak[method, n], 3) for n in ops]
        result[f"{method}_step_s"] = [round(step_s[method, n], 4) for n in ops]
    mib, secs = result["binarized_peak_mib"], result["binarized_step_s"]
    result["binarized_ratio_max_to_min"] = round(max(mib) / min(mib), 3)
    result["binarized_time_ratio_max_to_min"] = round(max(secs) / min(secs), 3)
    result["all_paths_ratio_max_to_min"] = round(
        max(result["all_paths_peak_mib"]) / min(result["all_paths_peak_mib"]), 3
    )
    result["memory_measure"] = "bytes saved for backward (saved_tensors_hooks), CPU"
    result["batch_size"] = args.batch_size
    result["run"] = run_kind(args.quick, faithful=True)
    result["goal_met"] = (
        result["binarized_ratio_max_to_min"] <= 1.2
        and result["binarized_time_ratio_max_to_min"] <= 1.3
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
