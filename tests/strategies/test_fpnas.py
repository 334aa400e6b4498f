"""FP-NAS: coarse-to-fine distribution, PARSEC estimator, adaptive K, Split-Attention, DDP."""

import itertools
import json
import math
import random
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from torchvision.ops import SqueezeExcitation

from runs import free_port, overrides, rank_env
from supernas.api import search
from supernas.config import from_dict
from supernas.cost.budget import Budget
from supernas.cost.latency_build import Deployment, Timing, build_table
from supernas.cost.macs import arch_cost
from supernas.errors import ConfigError
from supernas.nn import build_model
from supernas.nn.blocks import MBConv
from supernas.nn.supernet import Supernet
from supernas.recipe import load_run_config
from supernas.space import get_space
from supernas.space.choices import arch_from_choices, biggest, choices_of, decisions
from supernas.space.plan import plan
from supernas.space.space import BlockSpec, HeadSpec, SearchSpace, StemSpec
from supernas.strategies.base import SearchContext
from supernas.strategies.fpnas import FPNAS, ArchDistribution
from supernas.strategies.fpnas.search import adaptive_samples

FMNIST = get_space("fmnist_small")


def _tiny_space() -> SearchSpace:
    """Two blocks with two width options each; every other decision has one option."""
    block = dict(expansions=(2,), kernel_sizes=(3,), out_channels=(4, 8))
    return SearchSpace(
        name="tiny",
        in_channels=1,
        num_classes=3,
        resolutions=(8,),
        stem=StemSpec(out_channels=(4,), stride=1),
        blocks=(BlockSpec(stage=1, stride=2, **block), BlockSpec(stage=1, stride=1, **block)),
        head=HeadSpec(hidden_channels=(8,)),
    )


def _randomised(space: SearchSpace, seed: int) -> ArchDistribution:
    distribution = ArchDistribution(space)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for logits in distribution.factor_logits:
            logits.copy_(2 * torch.randn(logits.shape, generator=generator))
    return distribution


def test_joint_distribution_after_the_switch_is_the_product_of_the_factors():
    distribution = _randomised(FMNIST, seed=0)
    before_probs = distribution.group_probs()
    before_entropy = distribution.entropy()
    samples = distribution.sample(50, random.Random(0))
    before_log_prob = distribution.log_prob(samples).detach()
    factors = [torch.softmax(t, 0).detach() for t in distribution.factor_logits]

    distribution.to_joint()

    assert distribution.joint
    for group, joint in zip(distribution.groups, distribution.group_probs(), strict=True):
        product = torch.ones(())
        for index in group:  # outer product in the group's (C) order
            product = product.unsqueeze(-1) * factors[index]
        torch.testing.assert_close(joint, product.reshape(-1), atol=1e-6, rtol=1e-5)
    for joint, before in zip(distribution.group_probs(), before_probs, strict=True):
        torch.testing.assert_close(joint, before, atol=1e-6, rtol=1e-5)
    assert distribution.entropy() == pytest.approx(before_entropy, rel=1e-5)
    torch.testing.assert_close(distribution.log_prob(samples).detach(), before_log_prob)
    assert adaptive_samples(distribution.entropy(), 0.5, 2, 100) == adaptive_samples(
        before_entropy, 0.5, 2, 100
    )
    # The block groups really are joint: one logit per combination of the block's options.
    block0 = [d for d in decisions(FMNIST) if d.name.startswith("block0.")]
    assert len(distribution.joint_logits[2]) == math.prod(len(d.options) for d in block0)


def test_samples_round_trip_to_archs_in_both_phases():
    distribution = _randomised(FMNIST, seed=1)
    for phase in ("factorised", "joint"):
        if phase == "joint":
            distribution.to_joint()
        for sample in distribution.sample(20, random.Random(1)):
            arch = distribution.arch(sample)
            chosen = choices_of(FMNIST, arch)
            assert arch_from_choices(FMNIST, chosen) == arch


class _TableNet(nn.Module):
    """A stand-in supernet: the logits of each of the four tiny archs are a learnable row."""

    def __init__(self, space: SearchSpace) -> None:
        super().__init__()
        self.space = space
        self.table = nn.Parameter(3 * torch.randn(4, space.num_classes, dtype=torch.float64))

    def forward(self, images, arch):
        row = 2 * (arch.blocks[0].out_channels == 8) + (arch.blocks[1].out_channels == 8)
        return self.table[row].expand(images.size(0), -1)


def _context(net, **fields) -> SearchContext:
    values = dict(
        budget=Budget.of(net.space),
        model=net,
        weight_optimizer=torch.optim.SGD(net.parameters(), lr=0.0),
        arch_batches=lambda: iter(()),
        calibration_batches=lambda: iter(()),
    )
    return SearchContext(**{**values, **fields})


def test_estimator_matches_the_brute_force_gradient_on_a_tiny_space():
    space = _tiny_space()
    torch.manual_seed(0)
    net = _TableNet(space)
    images, labels = torch.zeros(4, 1, 8, 8), torch.tensor([0, 1, 2, 0])
    context = _context(net, arch_stream=lambda: iter(lambda: (images, labels), None))
    # T = batch size: l(a) is the mean CE, so omega is far from one-hot and both terms matter.
    options = FPNAS.Config(adaptive=False, samples=4000, temperature=4.0, joint_from=None)
    strategy = FPNAS(net, options, context)
    for group in strategy.arch_optimizer.param_groups:  # the step leaves the logits as they are
        group["lr"] = 0.0
    distribution = strategy.distribution
    names = [d.name for d in decisions(space)]
    with torch.no_grad():
        for name, values in (
            ("block0.out_channels", [0.3, -0.4]),
            ("block1.out_channels", [-0.5, 0.6]),
        ):
            distribution.factor_logits[names.index(name)].copy_(torch.tensor(values))
    strategy.step((images, labels), step=0)
    estimated_pi = [t.grad.clone() for t in distribution.factor_logits]
    estimated_w = net.table.grad.clone()

    # Brute force: the log marginal likelihood sum over the 4 archs, differentiated exactly.
    for t in [*distribution.factor_logits, net.table]:
        t.grad = None
    log_terms = []
    for sample in [(a, b) for a in range(2) for b in range(2)]:
        choices = {d.name: d.options[0] for d in decisions(space)}
        choices["block0.out_channels"] = (4, 8)[sample[0]]
        choices["block1.out_channels"] = (4, 8)[sample[1]]
        arch = arch_from_choices(space, choices)
        index = tuple(d.options.index(choices[d.name]) for d in decisions(space))
        mean = F.cross_entropy(net(images, arch), labels)
        log_terms.append(distribution.log_prob([index])[0] - mean)  # l = mean CE (T = B)
    marginal = torch.logsumexp(torch.stack(log_terms), 0)
    (-marginal).backward()
    exact_pi = [t.grad for t in distribution.factor_logits]

    for estimated, exact in zip(estimated_pi, exact_pi, strict=True):
        torch.testing.assert_close(estimated, exact.to(estimated.dtype), atol=0.02, rtol=0.0)
    assert max(float(g.abs().max()) for g in exact_pi) > 0.2  # large against the tolerance
    # Weights: sum_k omega_k grad meanCE_k -> -(T/B) grad log-marginal = -grad log-marginal.
    torch.testing.assert_close(estimated_w, net.table.grad, atol=0.02, rtol=0.0)


def test_adaptive_k_is_the_clipped_ceiling_of_lambda_times_entropy():
    assert adaptive_samples(10.2, 0.5, 2, 14) == 6
    assert adaptive_samples(40.0, 0.5, 2, 14) == 14
    assert adaptive_samples(1.0, 0.5, 2, 14) == 2
    net = Supernet(_tiny_space())
    strategy = FPNAS(net, FPNAS.Config(entropy_scale=3.0, min_samples=1), _context(net))
    seen = []
    for sharpness in (0.0, 1.0, 2.0, 4.0, 8.0):
        with torch.no_grad():
            for logits in strategy.distribution.factor_logits:
                logits.copy_(sharpness * torch.arange(len(logits), dtype=torch.float32))
        entropy = strategy.distribution.entropy()
        assert strategy.num_samples() == min(max(math.ceil(3.0 * entropy), 1), 14)
        seen.append(strategy.num_samples())
    assert seen[0] == math.ceil(3.0 * 2 * math.log(2)) and seen == sorted(seen, reverse=True)
    fixed = FPNAS(net, FPNAS.Config(adaptive=False, samples=7), _context(net))
    assert fixed.num_samples() == 7


SEARCH = (
    "search.strategy=fpnas",
    "search.epochs=2",
    "search.budget.target=3e6",
    "search.arch_eval_batches=2",
    "search.log_every=1",
    "search.options={entropy_scale: 0.3, min_samples: 1, max_samples: 4, joint_from: 0.5,"
    " arch_lr: 0.2, cost_weight: 1.0, warmup_epochs: 0.25}",
    "data.synthetic_train=640",
    "train.epochs=1",
)


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    cfg = load_run_config(None, [o for o in overrides(*SEARCH) if o != "--set"])
    run_dir = tmp_path_factory.mktemp("fpnas") / "run"
    return search(cfg, run_dir), run_dir


def test_search_logs_k_from_entropy_which_falls_and_switches_smoothly(searched):
    result, run_dir = searched
    lines = (run_dir / "search" / "metrics.jsonl").read_text().splitlines()
    records = [r for r in map(json.loads, lines) if "fpnas/K" in r]
    for record in records:
        assert record["fpnas/K"] == adaptive_samples(record["fpnas/entropy"], 0.3, 1, 4)
        assert record["fpnas/samples"] == 2 * record["fpnas/K"]
    entropies = [r["fpnas/entropy"] for r in records]
    assert entropies[-1] < entropies[0] - 1.0
    switch = next(i for i, r in enumerate(records) if r["fpnas/joint"] == 1.0)
    assert 0 < switch < len(records) - 1
    assert abs(entropies[switch] - entropies[switch - 1]) < 1.0  # no jump at the switch
    assert "fpnas/entropy_factorized" in records[-1]
    assert records[-1]["fpnas/samples_total"] == sum(r["fpnas/samples"] for r in records) + (
        records[0]["step"] - 1  # one uniform child per warm-up step
    )
    assert arch_cost(FMNIST, result.arch).macs <= 3e6
    assert "entropy" in (run_dir / "report.md").read_text()


def test_split_attention_with_one_split_is_a_squeeze_excite_block():
    base = {d.name: d.options[0] for d in decisions(FMNIST)}
    archs = {}
    for splits in (0, 1):
        archs[splits] = arch_from_choices(FMNIST, {**base, "block1.attention": splits})
    attention_plan = plan(FMNIST, archs[1]).blocks[1]
    mid, squeeze = attention_plan.mid_channels, attention_plan.attn_channels
    block = MBConv(
        attention_plan.in_channels,
        attention_plan.out_channels,
        mid,
        squeeze,
        (3, 5),
        attention_plan.stride,
        max_splits=1,
        attention=True,
        expand=True,
        project_shortcut=False,
        sharing="crop",
    ).double()
    reference = SqueezeExcitation(mid, squeeze, scale_activation=nn.Hardsigmoid).double()
    assert [p.shape for p in block.attn.parameters()] == [p.shape for p in reference.parameters()]
    with torch.no_grad():
        for mine, theirs in zip(block.attn.parameters(), reference.parameters(), strict=True):
            mine.copy_(theirs)
    hidden = torch.randn(2, mid, 5, 5, dtype=torch.float64)
    torch.testing.assert_close(block.attn([hidden], squeeze), reference(hidden))
    # Cost: the one-split attention adds exactly the SE's two 1x1 convs (C*S + S*C MACs).
    extra = arch_cost(FMNIST, archs[1]).macs - arch_cost(FMNIST, archs[0]).macs
    assert extra == 2 * mid * squeeze
    model = build_model(FMNIST, archs[1]).eval()
    x = torch.randn(1, 1, archs[1].resolution, archs[1].resolution)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    assert counter.get_total_flops() / 2 == arch_cost(FMNIST, archs[1]).macs


def test_fbnetv2_f_pp_searches_split_attention_and_l_presets_exist():
    for name in ("fbnetv2_f_pp", "fpnas_l0", "fpnas_l1", "fpnas_l2"):
        space = get_space(name)
        attention = [d for d in decisions(space) if d.name.endswith(".attention")]
        assert attention and all(d.options == (0, 1, 2, 4) for d in attention), name
        distribution = ArchDistribution(space)
        assert any(len(g) > 1 for g in distribution.groups)
    sizes = [arch_cost(get_space(n), biggest(get_space(n))).macs for n in ("fpnas_l0", "fpnas_l2")]
    assert sizes[0] < sizes[1]


# -- two processes ---------------------------------------------------------------------------


def _run_steps(rank: int, world_size: int, out: Path, env=None) -> None:
    from supernas.train import average_gradients

    torch.manual_seed(0)  # same weights everywhere (as DDP's broadcast would make them)
    net = Supernet(FMNIST)
    generator = torch.Generator().manual_seed(5)  # the same batches on every rank
    batches = [(torch.randn(8, 1, 28, 28, generator=generator), torch.arange(8) % 10)] * 4
    net.eval()  # no dropout: ranks draw its masks in a different order than one process
    forwards = []
    net.register_forward_hook(lambda *_: forwards.append(1))
    fields = {}
    if env is not None:
        fields = dict(
            reduce_gradients=lambda tensors: average_gradients(tensors, env),
            rank=rank,
            world_size=world_size,
        )
    context = _context(
        net, arch_stream=lambda: iter(batches), steps_per_epoch=2, epochs=1, **fields
    )
    context.weight_optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    options = FPNAS.Config(adaptive=False, samples=3, joint_from=0.5, temperature=100.0)
    strategy = FPNAS(net, options, context)
    for step in range(2):
        strategy.step(batches[step], step)
    state = {
        "pi": [t.detach() for t in strategy.distribution.parameters()],
        "weights": net.state_dict(),
        "forwards": len(forwards),
    }
    torch.save(state, out / f"rank{rank}_of{world_size}.pt")


def _ddp_worker(rank: int, port: int, out_dir: str) -> None:
    from supernas.train import cleanup, init_distributed

    rank_env(rank, port)
    torch.set_num_threads(1)
    env = init_distributed("cpu")
    _run_steps(rank, 2, Path(out_dir), env)
    cleanup(env)


def test_two_ranks_split_the_samples_and_match_one_process(tmp_path):
    mp.spawn(_ddp_worker, args=(free_port(), str(tmp_path)), nprocs=2, join=True)
    _run_steps(0, 1, tmp_path)
    ranks = [torch.load(tmp_path / f"rank{r}_of2.pt") for r in range(2)]
    single = torch.load(tmp_path / "rank0_of1.pt")
    # K = 3 per phase, 2 phases, 2 steps: 12 children, split 2 + 1 per phase between ranks.
    assert single["forwards"] == 12
    assert [r["forwards"] for r in ranks] == [8, 4]
    for state in ranks:
        for mine, alone in zip(state["pi"], single["pi"], strict=True):
            torch.testing.assert_close(mine, alone, atol=1e-5, rtol=1e-4)
        for name, weight in state["weights"].items():
            torch.testing.assert_close(weight, single["weights"][name], atol=1e-5, rtol=1e-4)
    assert any(not torch.equal(p, torch.zeros_like(p)) for p in single["pi"]), "pi never moved"


def _tiny_run(stop: int, state=None):
    space = _tiny_space()
    torch.manual_seed(0)
    net = Supernet(space)
    generator = torch.Generator().manual_seed(3)
    batches = [
        (torch.randn(6, 1, 8, 8, generator=generator), torch.arange(6) % 3) for _ in "12345678"
    ]
    context = _context(net, arch_stream=lambda: iter(batches[4:]), steps_per_epoch=4, epochs=1)
    context.weight_optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    options = FPNAS.Config(entropy_scale=2.0, joint_from=0.5, temperature=10.0, arch_lr=0.3)
    strategy = FPNAS(net, options, context)
    start = 0
    if state is not None:
        net.load_state_dict(state["net"])
        strategy.load_state_dict(state["strategy"])
        start = state["step"]
    for step in range(start, stop):
        strategy.step(batches[step], step)
    return {"net": net.state_dict(), "strategy": strategy.state_dict(), "step": stop}


def test_resuming_from_the_state_dict_ends_where_an_uninterrupted_run_does():
    whole = _tiny_run(4)
    resumed = _tiny_run(4, state=_tiny_run(3))  # interrupted after the switch (step 2)
    for mine, theirs in zip(
        resumed["strategy"]["distribution"]["joint_logits"],
        whole["strategy"]["distribution"]["joint_logits"],
        strict=True,
    ):
        torch.testing.assert_close(mine, theirs, atol=0, rtol=0)
    for name, weight in whole["net"].items():
        torch.testing.assert_close(resumed["net"][name], weight, atol=0, rtol=0)
    assert resumed["strategy"]["samples_drawn"] == whole["strategy"]["samples_drawn"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"min_samples": 5, "max_samples": 3},
            r"max_samples = 3 must be at least min_samples \(5\)",
        ),
        ({"joint_from": 1.5}, r"joint_from 1.5 is not in \[0, 1\]"),
        ({"cost_weight": 1.0}, "cost_weight needs search.budget.target"),
    ],
)
def test_bad_options_are_one_line_config_errors(options, message):
    net = Supernet(_tiny_space())
    with pytest.raises(ConfigError, match=message) as error:
        FPNAS(net, from_dict(FPNAS.Config, options, "search.options"), _context(net))
    assert "\n" not in str(error.value)


def test_derivation_takes_the_most_probable_arch_within_the_budget():
    space = _tiny_space()
    names = [d.name for d in decisions(space)]
    archs = {}
    for first in (4, 8):
        for second in (4, 8):
            choices = {d.name: d.options[0] for d in decisions(space)}
            choices.update({"block0.out_channels": first, "block1.out_channels": second})
            archs[(first, second)] = arch_from_choices(space, choices)
    costs = {key: arch_cost(space, arch).macs for key, arch in archs.items()}
    budget = sorted(costs.values())[2]  # three of the four archs fit; the biggest does not
    net = Supernet(space)
    strategy = FPNAS(
        net, FPNAS.Config(max_draws=300), _context(net, budget=Budget.of(net.space, budget))
    )
    logits = {"block0.out_channels": [0.0, 1.0], "block1.out_channels": [0.0, 2.0]}
    with torch.no_grad():
        for name, values in logits.items():
            strategy.distribution.factor_logits[names.index(name)].copy_(torch.tensor(values))
    probability = {
        (a, b): float(torch.softmax(torch.tensor(logits["block0.out_channels"]), 0)[int(a == 8)])
        * float(torch.softmax(torch.tensor(logits["block1.out_channels"]), 0)[int(b == 8)])
        for a, b in archs
    }
    assert costs[max(probability, key=probability.get)] > budget  # the mode is over budget
    fitting = [key for key in archs if costs[key] <= budget]
    expected = archs[max(fitting, key=probability.get)]
    assert strategy.most_probable() == expected
    strategy.distribution.to_joint()  # same distribution, same answer in the joint phase
    assert strategy.most_probable() == expected


def test_a_latency_table_sets_the_hinge_and_the_derivation_budget(tmp_path):
    space = _tiny_space()
    timing = Timing(batch_size=1, warmup=1, repeats=2, rounds=1, spread_s=0)
    table = build_table(space, Deployment(threads=1), timing=timing)
    table.save(tmp_path / "lut.json")
    grid = [
        arch_from_choices(space, dict(zip([d.name for d in decisions(space)], values, strict=True)))
        for values in itertools.product(*(d.options for d in decisions(space)))
    ]
    latency = {arch.digest: table.predict(space, arch) for arch in grid}
    target = sorted(latency.values())[1]  # two of the four archs fit
    net = Supernet(space)
    with pytest.raises(ConfigError, match="cost_weight needs search.budget.target"):
        budget = Budget.of(space, None, "latency", str(tmp_path / "lut.json"))
        FPNAS(net, FPNAS.Config(cost_weight=2.0), _context(net, budget=budget))
    budget = Budget.of(space, target, "latency", str(tmp_path / "lut.json"))
    strategy = FPNAS(net, FPNAS.Config(cost_weight=2.0), _context(net, budget=budget))
    for arch in grid:
        expected = 2.0 * max(0.0, latency[arch.digest] / target - 1)
        assert strategy._penalty(arch) == pytest.approx(expected)
    assert latency[strategy.most_probable().digest] <= target
