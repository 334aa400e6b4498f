"""The contract every registered strategy keeps, checked for each one (as timm tests every
registered model): a new strategy gets these tests by registering.

- a search of N steps equals one stopped after N/2 steps, saved, reloaded into a fresh strategy
  and continued (architecture parameters, weights and derived arch bitwise equal on the CPU);
- ``state_dict`` round-trips into a fresh strategy;
- ``derive()`` returns an arch within the budget, in MACs and in table latency (a budget below
  the space is refused by `Budget` itself, for every strategy: ``tests/cost/test_budget.py``);
- two DDP processes with different initial weights and data keep one set of weights and arch
  parameters and derive one arch; two on the same data equal one process;
- a method either ships sliced children (and tells ``select`` how to pick them) or retrains
  and refuses both with a one-line error.

Each strategy runs on a tiny space with the small settings of ``OPTIONS`` (a strategy without
an entry runs with its defaults).
"""

import copy
import dataclasses
import itertools
import math
import random
import statistics
import typing
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from draws import contract_space
from tables import fake_table

from runs import free_port, rank_env
from supernas.api import near_uniform
from supernas.config import from_dict
from supernas.cost.budget import Budget
from supernas.cost.macs import arch_cost
from supernas.errors import ConfigError
from supernas.nn import Supernet
from supernas.space.choices import biggest, sample, smallest
from supernas.strategies import STRATEGIES, SearchContext, read_options
from supernas.strategies.selection import SelectConfig

OPTIONS = {
    "random": {"num_candidates": 3, "calibration_batches": 1},
    "dmasking": {
        "warmup_epochs": 0.25,
        "arch_every": 1,
        "arch_lr": 0.1,
        "derive_samples": 2,
        "calibration_batches": 1,
        "cost_loss": "budget",
    },
    "proxyless": {"loss": "budget", "arch_every": 1, "arch_lr": 0.1},
    "fpnas": {"min_samples": 2, "max_samples": 3, "arch_lr": 0.1, "calibration_batches": 1},
    "bignas": {
        "num_random": 1,
        "calibration_batches": 1,
        "selection": {"mutations": 2, "width_levels": 2, "depth_levels": 2},
    },
    "spos": {
        "population": 4,
        "generations": 2,
        "parents": 2,
        "calibration_batches": 1,
    },
}
STEPS = 6  # a whole search; the interrupted one stops after STEPS // 2
STEPS_PER_EPOCH = 4
BATCH = 8


SPACE = contract_space()
# Between the smallest and the biggest child, so that derivation must mind it.
BUDGET = (arch_cost(SPACE, smallest(SPACE)).macs + arch_cost(SPACE, biggest(SPACE)).macs) / 2
TABLE = fake_table(SPACE)
# The median predicted latency of random children: half of the space is over it.
LATENCY_TARGET = statistics.median(
    TABLE.predict(SPACE, sample(SPACE, random.Random(i))) for i in range(41)
)


def batch(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(BATCH, 1, 12, 12, generator=generator)
    return images, torch.randint(0, 4, (BATCH,), generator=generator)


def stream(first_seed: int):
    """An endless stream whose order depends on nothing but ``first_seed``."""
    return (batch(seed) for seed in itertools.count(first_seed))


def build(name: str, budget=None, model=None, reduce=None, rank=0, world_size=1, init=0):
    budget = budget or Budget.of(SPACE, BUDGET)
    torch.manual_seed(init)
    supernet = Supernet(SPACE).train()
    cls = STRATEGIES.get(name)
    context = SearchContext(
        budget=budget,
        model=model(supernet) if model else supernet,
        weight_optimizer=torch.optim.SGD(supernet.parameters(), lr=0.05, momentum=0.9),
        arch_batches=lambda: (batch(1000 + i) for i in range(2)),
        calibration_batches=lambda: (batch(2000 + i) for i in range(2)),
        seed=0,
        steps_per_epoch=STEPS_PER_EPOCH,
        epochs=2,
        arch_stream=lambda: stream(3000),
        rank=rank,
        world_size=world_size,
        weight_decay=1e-4,
        **({"reduce_gradients": reduce} if reduce else {}),
    )
    config = from_dict(cls.Config, OPTIONS.get(name, {}), "search.options")
    return cls(supernet, config, context)


def checkpoint(strategy) -> dict:
    """What the training loop saves: supernet, optimizer, strategy, the global RNG."""
    return copy.deepcopy(
        {
            "supernet": strategy.supernet.state_dict(),
            "optimizer": strategy.context.weight_optimizer.state_dict(),
            "strategy": strategy.state_dict(),
            "rng": torch.get_rng_state(),
        }
    )


def restore(strategy, state: dict) -> None:
    strategy.supernet.load_state_dict(state["supernet"])
    strategy.context.weight_optimizer.load_state_dict(state["optimizer"])
    strategy.load_state_dict(state["strategy"])
    torch.set_rng_state(state["rng"])


def run(name: str, start: int = 0, stop: int = STEPS, state: dict | None = None, budget=None):
    strategy = build(name, budget)
    if state is not None:
        restore(strategy, state)
    for step in range(start, stop):
        strategy.step(batch(step), step)
    return strategy


def assert_same_search(a, b) -> None:
    for x, y in zip(a.arch_parameters(), b.arch_parameters(), strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=0)
    theirs = b.supernet.state_dict()
    for key, x in a.supernet.state_dict().items():
        torch.testing.assert_close(x, theirs[key], rtol=0, atol=0, msg=key)
    assert a.derive() == b.derive()


NAMES = STRATEGIES.names()


def test_every_strategy_is_covered():
    """A strategy that needs settings for a tiny search gets them in OPTIONS; others run with
    their defaults. Listing the names here keeps this file honest about what it ran."""
    assert set(NAMES) >= {"random", "dmasking", "proxyless", "fpnas", "bignas", "spos"}


def option_fields(config: type, prefix: str = "") -> Iterator[tuple[str, type]]:
    """(dotted key, type) of every option, nested ones (BigNAS's ``selection``) included."""
    hints = typing.get_type_hints(config)
    for field in dataclasses.fields(config):
        hint = hints[field.name]
        if dataclasses.is_dataclass(hint):
            yield from option_fields(hint, f"{prefix}{field.name}.")
        else:
            yield f"{prefix}{field.name}", hint


def nested(key: str, value: object) -> dict:
    head, _, rest = key.partition(".")
    return {head: nested(rest, value) if rest else value}


BAD_VALUES = {int: [-1], float: [-1.0, math.nan, math.inf], str: ["bogus"]}


@pytest.mark.parametrize("name", NAMES)
def test_every_option_refuses_nonsense_when_read(name):
    """Every number refuses -1, NaN and infinity and every named choice an unknown one, each
    in one line naming the key, when the recipe is read (before any data loads), so no method
    can crash or run on with a value its paper has no meaning for."""
    strategy = STRATEGIES.get(name)
    checked = 0
    for key, hint in option_fields(strategy.Config):
        kinds = [t for t in typing.get_args(hint) or (hint,) if t in BAD_VALUES]
        for value in (v for t in kinds for v in BAD_VALUES[t]):
            with pytest.raises(ConfigError, match=rf"search\.options\.{key}\b") as error:
                read_options(strategy, nested(key, value))
            assert str(error.value).startswith(f"search.strategy {name}: ")
            checked += 1
    assert checked >= 3


@pytest.mark.parametrize("name", NAMES)
def test_resumed_search_equals_the_uninterrupted_one(name):
    half = STEPS // 2
    whole = run(name)
    interrupted = checkpoint(run(name, stop=half))
    resumed = run(name, start=half, state=interrupted)
    assert_same_search(whole, resumed)


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trips_into_a_fresh_strategy(name):
    searched = run(name, stop=STEPS // 2)
    fresh = build(name)
    restore(fresh, checkpoint(searched))
    assert_same_search(searched, fresh)


@pytest.mark.parametrize("name", NAMES)
def test_derived_arch_is_within_the_budget(name):
    arch = run(name).derive()
    assert arch_cost(SPACE, arch).macs <= BUDGET


@pytest.mark.parametrize("name", NAMES)
def test_derived_arch_is_within_a_latency_budget(name):
    """The same search under a latency table: every method derives under the target."""
    budget = Budget.of(SPACE, LATENCY_TARGET, "latency", TABLE)
    arch = run(name, budget=budget).derive()
    assert budget.cost(arch) <= LATENCY_TARGET


@pytest.mark.parametrize("name", NAMES)
def test_sliced_children_are_declared_not_assumed(name):
    strategy = run(name, stop=2)
    cls, arch = type(strategy), strategy.derive()
    calibration = strategy.context.calibration_batches()
    if cls.retrains:
        with pytest.raises(ConfigError, match="retrains its arch from scratch"):
            cls.selection(strategy.config)
        with pytest.raises(ConfigError, match="retrains its arch from scratch"):
            cls.deploy(strategy.supernet, arch, strategy.config, calibration, torch.device("cpu"))
    else:
        selection, batches = cls.selection(strategy.config)
        assert isinstance(selection, SelectConfig) and batches >= 1
        model = cls.deploy(strategy.supernet, arch, strategy.config, calibration, "cpu")
        assert model(batch(0)[0]).shape == (BATCH, SPACE.num_classes)


def _ddp_worker(rank: int, port: int, out_dir: str, same_data: bool) -> None:
    """Runs every strategy for ``STEPS`` steps on two ranks. ``same_data``: both ranks see
    the same batches and start from the same weights, so the run must equal one process."""
    from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

    from supernas.train import average_gradients, cleanup, init_distributed, wrap_ddp

    rank_env(rank, port)
    torch.set_num_threads(1)
    env = init_distributed("cpu")
    derived = {}
    for name in NAMES:
        all_reduces = []

        def wrap(net, calls=all_reduces):
            ddp = wrap_ddp(net, env, torch.device("cpu"), find_unused_parameters=True)
            ddp.register_comm_hook(calls, _counted(allreduce_hook))
            return ddp

        strategy = build(
            name,
            model=wrap,
            reduce=lambda tensors: average_gradients(tensors, env),
            rank=rank,
            world_size=2,
            init=0 if same_data else rank,  # different weights: DDP must broadcast rank 0's
        )
        for step in range(STEPS):
            strategy.step(batch(step if same_data else 100 * rank + step), step)
        derived[name] = {**_result(strategy), "all_reduces": len(all_reduces)}
    torch.save(derived, Path(out_dir) / f"rank{rank}.pt")
    cleanup(env)


def _counted(hook):
    def counted(state, bucket):
        state.append(bucket.index())
        return hook(None, bucket)

    return counted


def _result(strategy) -> dict:
    return {
        "arch": str(strategy.derive()),
        "arch_parameters": [t.detach().clone() for t in strategy.arch_parameters()],
        "weights": copy.deepcopy(strategy.supernet.state_dict()),
    }


def _trained_weights(weights: dict) -> dict:
    """The weights, without BN statistics (per rank under DDP)."""
    return {k: w for k, w in weights.items() if "running" not in k and "num_batches" not in k}


@pytest.mark.slow
def test_two_ranks_on_different_data_derive_one_arch(tmp_path):
    mp.spawn(_ddp_worker, args=(free_port(), str(tmp_path), False), nprocs=2, join=True)
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt") for r in range(2))
    for name in NAMES:
        assert rank0[name]["arch"] == rank1[name]["arch"], name
        pairs = zip(rank0[name]["arch_parameters"], rank1[name]["arch_parameters"], strict=True)
        for a, b in pairs:
            assert torch.equal(a, b), name
        for key, weight in _trained_weights(rank0[name]["weights"]).items():
            assert torch.equal(weight, rank1[name]["weights"][key]), f"{name}: {key}"


@pytest.mark.slow
def test_two_ranks_on_the_same_data_equal_one_process(tmp_path):
    """Each step's update under DDP is the single process's: the gradients averaged over two
    equal halves are the whole's, and no parameter that no child used is moved (FP-NAS's
    children run outside DDP; a gradient filled with zeros would let momentum move them)."""
    mp.spawn(_ddp_worker, args=(free_port(), str(tmp_path), True), nprocs=2, join=True)
    ranks = torch.load(tmp_path / "rank0.pt")
    for name in NAMES:
        strategy = build(name)
        for step in range(STEPS):
            strategy.step(batch(step), step)
        alone = _result(strategy)
        assert ranks[name]["arch"] == alone["arch"], name
        pairs = zip(ranks[name]["arch_parameters"], alone["arch_parameters"], strict=True)
        for a, b in pairs:
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
        for key, weight in _trained_weights(alone["weights"]).items():
            torch.testing.assert_close(
                ranks[name]["weights"][key], weight, rtol=1e-5, atol=1e-6, msg=f"{name}: {key}"
            )
    # A BigNAS sandwich of three children makes one all-reduce, as one child's step does.
    assert ranks["bignas"]["all_reduces"] == ranks["random"]["all_reduces"] > 0


@pytest.mark.parametrize("name", NAMES)
def test_spread_of_the_arch_distribution_is_a_share_of_its_maximum(name):
    strategy = build(name)
    if not strategy.arch_parameters():
        assert strategy.spread() is None
        return
    assert 0.9 < strategy.spread() <= 1 + 1e-6, "a fresh distribution is near uniform"
    with torch.no_grad():
        for logits in strategy.arch_parameters():
            logits.zero_()
            logits.view(-1)[0] = 30.0  # all mass on one option
    assert strategy.spread() < 1e-6
    assert near_uniform(0.97) and not near_uniform(strategy.spread())
