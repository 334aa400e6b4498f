"""supernas's steps against NNI's and Once-for-All's on one small space, in one process.

The space is the peer comparison's of `dmasking_memory.py`: stem 16, three MBConv blocks of
strides 2, 2, 1 with kernels {3, 5, 7}, expansions {1, 3, 6} and widths {8, 16, 32}, a 1x1 head
to 64 and a linear classifier; Fashion-MNIST-shaped input (1x28x28), batch 64, one thread.
Each framework builds it with its own modules:

- **supernas**: the DMaskingNAS search step (one weight step, one arch step on another
  batch; again with ``kernel_mixing: weights``, which mixes the kernels' weights as NNI
  does, where our default sums every kernel's output as FBNet does), the BigNAS sandwich
  (biggest, 2 random, smallest; in-place distillation; one optimizer step), and a plain
  training step of the biggest child as a standalone model, all with the library's CPU
  defaults (channels-last); the sandwich and the plain step in NCHW too, the format the peers
  run in.
- **NNI 3.0**: its ``InvertedResidual`` / ``ConvBNReLU`` with value choices, turned into a
  differentiable supernet by ``GumbelDARTS().mutate_model`` (NNI's masked mixed operations,
  FBNetV2's technique for value choices), and DARTS's step as NNI runs it: an arch step
  (backward through all parameters, Adam on alpha) then a weight step (SGD).
- **Once-for-All**: its ``DynamicMBConvLayer`` (and dynamic conv/BN/linear for the stem and
  head), trained with the same sandwich as ours (OFA's own progressive shrinking samples one
  or a few subnets per step; the sandwich is the like-for-like comparison with BigNAS).
- A plain step of the biggest child in each framework's own modules (NNI's frozen space, OFA's
  dynamic net at its biggest setting), NCHW as they ship, and ours in NCHW too.

Interleaved repeats, median per step kind; ratios are from this one run. Goals (issue 17): the
DMaskingNAS step at most 0.25x NNI's, the sandwich at most 0.8x OFA's, our plain step no slower
than theirs. Needs ``nni`` and ``ofa`` in the environment that runs it (a separate one: they are
not dependencies of supernas):

    python -m venv peers && peers/bin/pip install torch torchvision nni==3.0 ofa -e .
    peers/bin/python benchmarks/peers.py [--quick]

Prints one JSON line last.
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Callable

import torch
import torch.nn.functional as F
from _common import hardware, run_kind
from dmasking_memory import batches, masking_strategy, median_times, peer_space
from torch import nn

from supernas.cost.budget import Budget
from supernas.nn import Supernet, build_model
from supernas.space import biggest
from supernas.strategies import SearchContext
from supernas.strategies.bignas import BigNAS, distillation_loss

WIDTHS, EXPANSIONS, KERNELS, STRIDES = (8, 16, 32), (1, 3, 6), (3, 5, 7), (2, 2, 1)
STEM, HEAD, CLASSES = 16, 64, 10

Step = Callable[[], None]


# -- supernas ----------------------------------------------------------------------------


def ours(batch_size: int) -> dict[str, Step]:
    space = peer_space()
    stream = batches(batch_size)
    batch, arch_batch = next(stream), next(stream)

    def search_step(**options) -> Step:
        dmasking = masking_strategy(space, batch_size, channels_last=True, **options)

        def step() -> None:
            dmasking.weight_step(batch)
            dmasking.arch_step(arch_batch)

        return step

    return {
        "dmasking_search": search_step(),
        "dmasking_search_mixed_kernels": search_step(kernel_mixing="weights"),
        "bignas_sandwich": sandwich_step(space, batch, True),
        "bignas_sandwich_nchw": sandwich_step(space, batch, False),
        "plain_channels_last": plain_step(build_model(space, biggest(space)), batch, True),
        "plain": plain_step(build_model(space, biggest(space)), batch, False),
    }


def sandwich_step(space, batch, cl: bool) -> Step:
    torch.manual_seed(0)
    supernet = Supernet(space)
    if cl:
        supernet.use_channels_last()
    context = SearchContext(
        budget=Budget.of(space),
        model=supernet,
        weight_optimizer=torch.optim.SGD(supernet.parameters(), lr=0.05, momentum=0.9),
        arch_batches=lambda: iter(()),
        calibration_batches=lambda: iter(()),
    )
    bignas = BigNAS(supernet, BigNAS.Config(), context)

    def step() -> None:
        supernet.train()
        bignas.step(batch, 0)

    return step


def plain_step(model: nn.Module, batch, cl: bool) -> Step:
    model.train()
    if cl:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    images = batch[0].contiguous(memory_format=torch.channels_last) if cl else batch[0]

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(images), batch[1]).backward()
        optimizer.step()

    return step


# -- NNI ---------------------------------------------------------------------------------


def nni_space():
    import nni
    from nni.nas.hub.pytorch.proxylessnas import ConvBNReLU, InvertedResidual
    from nni.nas.nn.pytorch import ModelSpace

    class Peer3(ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            layers = [ConvBNReLU(1, STEM, 3, stride=1)]
            channels = STEM
            for i, stride in enumerate(STRIDES):
                out = nni.choice(f"width{i}", list(WIDTHS))
                expansion = nni.choice(f"expansion{i}", list(EXPANSIONS))
                kernel = nni.choice(f"kernel{i}", list(KERNELS))
                layers.append(InvertedResidual(channels, out, expansion, kernel, stride))
                channels = out
            layers.append(ConvBNReLU(channels, HEAD, 1))
            self.features = nn.Sequential(*layers)
            self.classifier = nn.Linear(HEAD, CLASSES)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.classifier(self.features(x).mean((2, 3)))

    return Peer3


def nni_steps(batch_size: int) -> dict[str, Step]:
    from nni.nas.strategy import GumbelDARTS

    stream = batches(batch_size)
    batch, arch_batch = next(stream), next(stream)
    torch.manual_seed(0)
    space_cls = nni_space()
    strategy = GumbelDARTS()
    supernet = strategy.mutate_model(space_cls())
    alpha = list(strategy._arch_parameters.values())
    alpha_ids = {id(a) for a in alpha}
    weights = [p for p in supernet.parameters() if id(p) not in alpha_ids]
    weight_optimizer = torch.optim.SGD(weights, lr=0.05, momentum=0.9)
    arch_optimizer = torch.optim.Adam(alpha, lr=3e-4, betas=(0.5, 0.999), weight_decay=1e-3)
    supernet.train()

    def search_step() -> None:  # DartsLightningModule.training_step, without Lightning
        arch_optimizer.zero_grad()
        F.cross_entropy(supernet(arch_batch[0]), arch_batch[1]).backward()
        arch_optimizer.step()
        weight_optimizer.zero_grad()
        F.cross_entropy(supernet(batch[0]), batch[1]).backward()
        weight_optimizer.step()

    torch.manual_seed(0)
    biggest_choice = {
        **{f"width{i}": max(WIDTHS) for i in range(3)},
        **{f"expansion{i}": max(EXPANSIONS) for i in range(3)},
        **{f"kernel{i}": max(KERNELS) for i in range(3)},
    }
    child = space_cls().freeze(biggest_choice)
    return {"dmasking_search": search_step, "plain": plain_step(child, batch, False)}


# -- Once-for-All ------------------------------------------------------------------------


def ofa_net():
    from ofa.imagenet_classification.elastic_nn.modules.dynamic_layers import (
        DynamicConvLayer,
        DynamicMBConvLayer,
    )

    class Peer3(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = DynamicConvLayer([1], [STEM], kernel_size=3, stride=1, act_func="relu6")
            self.blocks = nn.ModuleList()
            channels = [STEM]
            for stride in STRIDES:
                self.blocks.append(
                    DynamicMBConvLayer(
                        channels, list(WIDTHS), list(KERNELS), list(EXPANSIONS), stride, "relu6"
                    )
                )
                channels = list(WIDTHS)
            self.head = DynamicConvLayer(channels, [HEAD], kernel_size=1, act_func="relu6")
            self.classifier = nn.Linear(HEAD, CLASSES)

        def set_active(self, widths, kernels, expansions) -> None:
            for block, w, k, e in zip(self.blocks, widths, kernels, expansions, strict=True):
                block.active_out_channel, block.active_kernel_size = w, k
                block.active_expand_ratio = e

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.stem(x)
            for block in self.blocks:
                y = block(x)
                x = x + y if block.stride == 1 and y.shape == x.shape else y
            return self.classifier(self.head(x).mean((2, 3)))

    return Peer3()


def ofa_steps(batch_size: int) -> dict[str, Step]:
    batch = next(batches(batch_size))
    torch.manual_seed(0)
    net = ofa_net().train()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    rng = random.Random(0)
    top = ([max(WIDTHS)] * 3, [max(KERNELS)] * 3, [max(EXPANSIONS)] * 3)
    bottom = ([min(WIDTHS)] * 3, [min(KERNELS)] * 3, [min(EXPANSIONS)] * 3)

    def drawn():
        return tuple(
            [rng.choice(options) for _ in range(3)] for options in (WIDTHS, KERNELS, EXPANSIONS)
        )

    def sandwich_step() -> None:  # the BigNAS rule, in OFA's dynamic modules
        optimizer.zero_grad(set_to_none=True)
        net.set_active(*top)
        logits = net(batch[0])
        F.cross_entropy(logits, batch[1]).backward()
        teacher = F.softmax(logits.detach(), 1)
        for setting in (drawn(), drawn(), bottom):
            net.set_active(*setting)
            distillation_loss(net(batch[0]), teacher).backward()
        optimizer.step()

    plain = ofa_net()
    plain.set_active(*top)
    return {"bignas_sandwich": sandwich_step, "plain": plain_step(plain, batch, False)}


# -- measuring ---------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="batch 16, 3 repeats (<1 min)")
    parser.add_argument("--repeats", type=int, help="default 3 with --quick, else 15")
    args = parser.parse_args()
    torch.set_num_threads(1)
    batch_size = 16 if args.quick else 64
    repeats = args.repeats or (3 if args.quick else 15)
    steps = {f"supernas_{k}": v for k, v in ours(batch_size).items()}
    steps |= {f"nni_{k}": v for k, v in nni_steps(batch_size).items()}
    steps |= {f"ofa_{k}": v for k, v in ofa_steps(batch_size).items()}
    seconds = median_times(
        {k: [lambda _, step=step: step()] for k, step in steps.items()}, None, repeats
    )
    ratio = {
        "dmasking_over_nni": seconds["supernas_dmasking_search"] / seconds["nni_dmasking_search"],
        "dmasking_mixed_kernels_over_nni": seconds["supernas_dmasking_search_mixed_kernels"]
        / seconds["nni_dmasking_search"],
        "sandwich_over_ofa": seconds["supernas_bignas_sandwich"] / seconds["ofa_bignas_sandwich"],
        "sandwich_nchw_over_ofa": seconds["supernas_bignas_sandwich_nchw"]
        / seconds["ofa_bignas_sandwich"],
        "plain_over_nni": seconds["supernas_plain"] / seconds["nni_plain"],
        "plain_over_ofa": seconds["supernas_plain"] / seconds["ofa_plain"],
        "plain_channels_last_over_nni": seconds["supernas_plain_channels_last"]
        / seconds["nni_plain"],
        "dmasking_over_plain": seconds["supernas_dmasking_search"]
        / seconds["supernas_plain_channels_last"],
    }
    import nni
    import ofa

    result = {
        "benchmark": "peers",
        "quick": args.quick,
        "run": run_kind(args.quick, faithful=True),
        "batch_size": batch_size,
        "repeats": repeats,
        "step_s": {k: round(v, 4) for k, v in seconds.items()},
        **{k: round(v, 3) for k, v in ratio.items()},
        "goals": {
            "dmasking_over_nni<=0.25": ratio["dmasking_over_nni"] <= 0.25,
            "sandwich_over_ofa<=0.8": ratio["sandwich_over_ofa"] <= 0.8,
            "plain_no_slower": max(ratio["plain_over_nni"], ratio["plain_over_ofa"]) <= 1.0,
        },
        "versions": {"nni": nni.__version__, "ofa": getattr(ofa, "__version__", "0.1.0")},
        "hardware": hardware(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
