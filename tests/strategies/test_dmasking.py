"""DMaskingNAS: mask algebra, one-hot exactness, resolution paths, cost gradients, schedule
(resume and DDP: `test_contract.py`)."""

import json
import math
import random

import pytest
import torch
import torch.nn.functional as F
from draws import LANGUAGE_SPACES, archs, small_space
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.overrides import TorchFunctionMode

from supernas.api import search
from supernas.config import from_dict
from supernas.cost.budget import Budget
from supernas.cost.expected import ExpectedCost, one_hot_probs
from supernas.cost.macs import arch_cost
from supernas.cost.metrics import MACs, Params
from supernas.cost.penalty import CostPenalty
from supernas.errors import ConfigError
from supernas.nn import Supernet
from supernas.nn.elastic import centre_crop
from supernas.nn.masking import WidthDist, prefix_masks
from supernas.nn.standalone import extract_child
from supernas.recipe import RunConfig
from supernas.space import get_space
from supernas.space.choices import biggest, block_decisions, decisions, sample, smallest
from supernas.space.presets import Stage, stages
from supernas.space.space import HeadSpec, SearchSpace, StemSpec
from supernas.strategies import SearchContext
from supernas.strategies.dmasking import DMaskingNAS, MaskedForward
from supernas.strategies.dmasking.search import gumbel_softmax, temperature

FMNIST = get_space("fmnist_small")


def _supernet(space, seed=0):
    """A train-mode supernet with random BN affines (so that a wrong mask shows) and no dropout."""
    torch.manual_seed(seed)
    net = Supernet(space).train()
    net.head.dropout.p = 0.0
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            torch.nn.init.uniform_(module.weight, 0.5, 1.5)
            torch.nn.init.uniform_(module.bias, -0.5, 0.5)
    return net


def _one_hot(space, arch):
    return {name: p.float() for name, p in one_hot_probs(space, arch).items()}


@given(st.lists(st.floats(0.01, 1.0), min_size=1, max_size=6))
def test_soft_mask_is_a_staircase_whose_sum_is_the_effective_width(raw):
    widths = tuple(8 * (i + 1) for i in range(len(raw)))
    table = prefix_masks(widths, max(widths))
    assert all(row.sum() == w and row[: int(w)].all() for row, w in zip(table, widths, strict=True))
    g = torch.tensor(raw) / sum(raw)
    mask = WidthDist(widths, g).mask(max(widths))
    assert torch.all(mask[1:] <= mask[:-1] + 1e-7)
    assert mask.sum().item() == pytest.approx(float((g * torch.tensor(widths)).sum()), rel=1e-5)


NET = _supernet(FMNIST)


@settings(max_examples=25)
@given(archs(FMNIST))
def test_one_hot_masked_supernet_is_the_child(arch):
    """After BN, the hidden width twice, the SE width, depth and residual: all exact."""
    x = torch.randn(4, 1, 28, 28)
    relaxed = MaskedForward(FMNIST, _one_hot(FMNIST, arch), subsampling="resize")
    torch.testing.assert_close(NET(x, relaxed), NET(x, arch), rtol=1e-5, atol=1e-5)


def _assert_one_hot_is_the_child(space, arch, seed, kernel_mixing="outputs"):
    """In float64 at 1e-10, on a batch of 8: BN in train mode on 2 samples at 1x1 pixels
    amplifies a rounding difference of 1e-16 by up to 1e12 in the child itself, which made
    this check fail at random on some machines."""
    net = _supernet(space, seed).double()
    generator = torch.Generator().manual_seed(seed)
    shape = (8, space.in_channels, arch.resolution, arch.resolution)
    x = torch.randn(shape, dtype=torch.float64, generator=generator)
    weights = {key: p.double() for key, p in _one_hot(space, arch).items()}
    torch.testing.assert_close(
        net(x, MaskedForward(space, weights, kernel_mixing=kernel_mixing)),
        net(x, arch),
        rtol=1e-10,
        atol=1e-10,
        msg=lambda m: f"{m}\nseed {seed}, arch {arch}",
    )


@pytest.mark.parametrize("name", ["bignas", "fbnetv2_f_pp", "proxyless_mobile"])
@settings(max_examples=2)
@given(data=st.data())
def test_one_hot_is_exact_on_tied_and_projected_spaces(name, data):
    """In float64: the wide ImageNet heads leave float32 sums ~1e-3 apart in another order."""
    space = small_space(name)
    _assert_one_hot_is_the_child(space, data.draw(archs(space)), seed=0)


@pytest.mark.parametrize("name", sorted(LANGUAGE_SPACES))
@settings(max_examples=30)
@given(data=st.data(), seed=st.integers(0, 2**16))
def test_one_hot_is_exact_for_every_option_of_the_language(name, data, seed):
    """Expansion 1 among others, every attention and activation, optional blocks, both kernel
    sharings and shortcuts, two resolutions."""
    space = LANGUAGE_SPACES[name]
    _assert_one_hot_is_the_child(space, data.draw(archs(space)), seed)


@pytest.mark.parametrize("name", sorted(LANGUAGE_SPACES))
@settings(max_examples=10)
@given(data=st.data(), seed=st.integers(0, 2**16))
def test_one_hot_is_exact_with_mixed_kernels(name, data, seed):
    """A one-hot kernel mixture is the chosen kernel zero-padded to the largest: the same conv."""
    space = LANGUAGE_SPACES[name]
    _assert_one_hot_is_the_child(space, data.draw(archs(space)), seed, kernel_mixing="weights")


@pytest.mark.parametrize("sharing", ["separate", "crop"])
def test_mixed_kernels_run_one_conv_whose_kernel_is_the_weighted_sum(sharing):
    """Soft kernel weights, everything else one-hot: the relaxed net equals the child at the
    largest kernel whose depthwise weights were replaced by the mixed kernel."""
    space = next(s for s in LANGUAGE_SPACES.values() if s.kernel_sharing == sharing)
    arch = biggest(space)
    net = _supernet(space, seed=1).double()
    weights = {key: p.double() for key, p in _one_hot(space, arch).items()}
    generator = torch.Generator().manual_seed(1)
    for name in weights:
        if name.endswith("kernel_size") and len(weights[name]) > 1:
            weights[name] = torch.rand(len(weights[name]), generator=generator, dtype=torch.float64)
            weights[name] /= weights[name].sum()
    mixed = MaskedForward(space, weights, kernel_mixing="weights")
    x = torch.randn(8, space.in_channels, arch.resolution, arch.resolution, dtype=torch.float64)
    expected_net = _supernet(space, seed=1).double()
    with torch.no_grad():
        for index, block in enumerate(expected_net.blocks):
            g = weights[f"{block_decisions(space, index).prefix}.kernel_size"]
            sizes = space.blocks[index].kernel_sizes
            largest = max(sizes)
            for dw in block.dw:
                kernels = {
                    k: centre_crop(dw.conv.weight, k)
                    if sharing == "crop"
                    else dw.convs[str(k)].weight
                    for k in sizes
                }
                mixed_kernel = sum(
                    g[i] * F.pad(kernels[k], [(largest - k) // 2] * 4) for i, k in enumerate(sizes)
                )
                kernels[largest].copy_(mixed_kernel)
    torch.testing.assert_close(net(x, mixed), expected_net(x, arch), rtol=1e-10, atol=1e-10)
    outputs = net(x, MaskedForward(space, weights))
    assert not torch.allclose(outputs, net(x, mixed)), "the two relaxations differ when soft"


def test_kernel_mixing_is_checked():
    with pytest.raises(ConfigError, match="kernel_mixing"):
        _strategy(FMNIST, kernel_mixing="average")


def test_one_hot_supernet_equals_the_standalone_child():
    arch = sample(FMNIST, random.Random(0))
    child = extract_child(NET, arch).train()
    child.head.dropout.p = 0.0
    x = torch.randn(4, 1, arch.resolution, arch.resolution)
    relaxed = MaskedForward(FMNIST, _one_hot(FMNIST, arch), subsampling="resize")
    torch.testing.assert_close(NET(x, relaxed), child(x), rtol=1e-5, atol=1e-5)


def test_resolution_path_equals_running_the_subsampled_input():
    arch = next(
        a for a in (sample(FMNIST, random.Random(i)) for i in range(50)) if a.resolution == 24
    )
    x = torch.randn(4, 1, 28, 28)
    relaxed = MaskedForward(FMNIST, _one_hot(FMNIST, arch), subsampling="nearest")
    direct = NET(F.interpolate(x, size=(24, 24), mode="nearest"), arch)
    torch.testing.assert_close(NET(x, relaxed), direct, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kernel_mixing", ["outputs", "weights"])
def test_every_architecture_parameter_gets_a_gradient(kernel_mixing):
    alpha = {d.name: torch.zeros(len(d.options), requires_grad=True) for d in decisions(FMNIST)}
    generator = torch.Generator().manual_seed(0)
    weights = {name: gumbel_softmax(a, 1.0, generator) for name, a in alpha.items()}
    macs = ExpectedCost(FMNIST, MACs(FMNIST))(weights)
    macs.backward(retain_graph=True)
    for name, a in alpha.items():
        if "activation" not in name:  # activations cost nothing
            assert a.grad.abs().sum() > 0, f"no cost gradient for {name}"
    logits = NET(
        torch.randn(8, 1, 28, 28), MaskedForward(FMNIST, weights, kernel_mixing=kernel_mixing)
    )
    F.cross_entropy(logits, torch.randint(0, 10, (8,))).backward()
    assert all(a.grad.abs().sum() > 0 for a in alpha.values())


def test_expected_cost_matches_the_child_for_one_hot_weights():
    arch = sample(FMNIST, random.Random(0))
    macs = ExpectedCost(FMNIST, MACs(FMNIST))(_one_hot(FMNIST, arch))
    params = ExpectedCost(FMNIST, Params(FMNIST))(_one_hot(FMNIST, arch))
    cost = arch_cost(FMNIST, arch)
    assert (round(macs.item()), round(params.item())) == (cost.macs, cost.params)


def test_temperature_follows_fbnet_and_rescales_to_the_run_length():
    assert temperature(5.0, 0.045, 0) == 5.0
    assert temperature(5.0, 0.045, 10) == pytest.approx(5.0 * math.exp(-0.45))
    assert temperature(5.0, 0.045, 89) == pytest.approx(0.0911, abs=1e-4)
    strategy = _strategy(FMNIST, epochs=3, steps_per_epoch=10)
    strategy._step = 30  # the end of a 3-epoch run reaches the 90-epoch temperature
    assert strategy.tau() == pytest.approx(temperature(5.0, 0.045, 90))


def test_cost_penalty_forms():
    ce = torch.tensor(2.0)
    at_target = CostPenalty("mul_log")(ce, torch.tensor(4e6), 4e6)
    assert at_target.item() == pytest.approx(0.2 * 2.0)
    assert CostPenalty("budget")(ce, torch.tensor(3e6), 4e6).item() == 2.0
    assert CostPenalty("budget")(ce, torch.tensor(5e6), 4e6).item() == pytest.approx(2.25)
    assert CostPenalty("linear")(ce, torch.tensor(3e6), 4e6).item() == pytest.approx(1.75)
    assert CostPenalty("absolute")(ce, torch.tensor(3e6), 4e6).item() == pytest.approx(2.25)
    assert CostPenalty("absolute")(ce, torch.tensor(5e6), 4e6).item() == pytest.approx(2.25)


def _strategy(space, epochs=1, steps_per_epoch=1, model=None, target=None, stream=(), **options):
    net = model if model is not None else Supernet(space)
    context = SearchContext(
        budget=Budget.of(space, target),
        model=net,
        weight_optimizer=torch.optim.SGD(net.parameters(), lr=0.01),
        arch_batches=lambda: iter(()),
        calibration_batches=lambda: iter(()),
        steps_per_epoch=steps_per_epoch,
        epochs=epochs,
        arch_stream=lambda: iter(stream),
    )
    return DMaskingNAS(net, DMaskingNAS.Config(**options), context)


# What makes the host wait for the device: reading a value back (item, bool, float, int,
# tolist) or an op whose output size depends on values (nonzero and the masked selections).
READS_BACK = {
    "item",
    "__bool__",
    "__float__",
    "__int__",
    "__index__",
    "tolist",
    "nonzero",
    "masked_select",
    "unique",
    "cpu",
    "numpy",
}


class _ReadsBack(TorchFunctionMode):
    """Counts reads back of any tensor but those in ``host`` (kept on the host on a GPU too)."""

    def __init__(self, host: list[torch.Tensor]) -> None:
        super().__init__()
        self.host = {id(t) for t in host}
        self.calls: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in READS_BACK and not (args and id(args[0]) in self.host):
            self.calls.append(name)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize(
    ("name", "cost_loss", "kernel_mixing"),
    list(
        zip(
            sorted(LANGUAGE_SPACES),
            ["budget", "mul_log", "absolute", "linear"],
            ["outputs", "weights", "outputs", "weights"],
            strict=True,
        )
    ),
)
def test_a_search_step_never_waits_for_the_device(name, cost_loss, kernel_mixing):
    """A weight step and an arch step, under a budget, read nothing back from the device: no
    weight of an option is compared with 0, metrics stay tensors until the loop records them.
    (A check on the CPU of what would be a host sync on a GPU.)"""
    space = LANGUAGE_SPACES[name]
    batch = (torch.randn(4, 1, max(space.resolutions), max(space.resolutions)), torch.arange(4))
    target = sum(arch_cost(space, a).macs for a in (smallest(space), biggest(space))) / 2
    strategy = _strategy(
        space,
        target=target,
        stream=[batch],
        warmup_epochs=0,
        arch_every=1,
        cost_loss=cost_loss,
        kernel_mixing=kernel_mixing,
    )
    strategy.step(batch, 0)  # lazily built state (optimizer moments, caches) first
    strategy.arch_stream.load_state_dict({"used": 0})
    # Adam's step counts stay on the host whatever the device; reading them costs no wait.
    steps = [state["step"] for state in strategy.arch_optimizer.state.values()]
    with _ReadsBack(host=steps) as reads:
        metrics = strategy.step(batch, 1)
    assert "arch/loss" in metrics
    assert reads.calls == []


def _tiny_space() -> SearchSpace:
    """Every kind of decision, small enough for a whole search on 16 px images in seconds."""
    micro = dict(attentions=(0, 1), activations=("relu", "hswish"), expansions=(2, 3))
    rows = [
        Stage(blocks=2, stride=2, out_channels=(8, 12), kernel_sizes=(3, 5), min_depth=1, **micro),
        Stage(blocks=1, stride=2, out_channels=(12, 16), kernel_sizes=(3,), **micro),
    ]
    return SearchSpace(
        name="tiny_dmasking",
        in_channels=1,
        num_classes=4,
        resolutions=(12, 16),
        stem=StemSpec(out_channels=(4, 8), stride=2),
        blocks=stages(rows),
        head=HeadSpec(hidden_channels=(16, 24)),
    )


def test_search_derives_an_arch_within_the_exact_budget(tmp_path):
    space = _tiny_space()
    space.to_yaml(tmp_path / "space.yaml")
    budget = sum(arch_cost(space, a).macs for a in (smallest(space), biggest(space))) / 2
    settings = {
        "space": str(tmp_path / "space.yaml"),
        "device": "cpu",
        "export": ["state-dict"],
        "data": {
            "name": "synthetic",
            "synthetic_size": 16,
            "synthetic_classes": 4,
            "synthetic_train": 320,
            "synthetic_test": 64,
            "batch_size": 32,
        },
        "search": {
            "strategy": "dmasking",
            "epochs": 2,
            "budget": {"target": budget},
            "arch_eval_batches": 1,
            "options": {"warmup_epochs": 0.5, "arch_every": 2, "derive_samples": 3},
        },
        "train": {"epochs": 1},
    }
    result = search(from_dict(RunConfig, settings), tmp_path / "run")
    assert arch_cost(space, result.arch).macs <= budget
    candidates = json.loads((tmp_path / "run" / "candidates.json").read_text())
    assert candidates, "derive_samples > 0 evaluates sampled candidates"
