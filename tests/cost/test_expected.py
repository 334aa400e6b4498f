"""Expected cost: exact on one-hot probabilities, differentiable in every costly decision, in
every metric."""

import random

import pytest
import torch
from draws import LANGUAGE_SPACES, SPACE_NAMES, archs, small_space
from hypothesis import given, settings
from hypothesis import strategies as st
from tables import fake_table

from supernas.cost.expected import ExpectedCost, one_hot_probs
from supernas.cost.macs import arch_cost
from supernas.cost.metrics import Latency, MACs, Metric, Params
from supernas.errors import ArchError
from supernas.space import decisions, get_space, sample
from supernas.space.space import SearchSpace

METRIC_NAMES = ("macs", "params", "latency")
# MACs on every space; the other metrics price the same grids, so the language spaces (every
# option the language has) and one preset cover them.
METRIC_SPACES = [
    *((name, "macs") for name in SPACE_NAMES),
    *(
        (name, metric)
        for metric in METRIC_NAMES[1:]
        for name in ("fmnist_small", *sorted(LANGUAGE_SPACES))
    ),
]
_COSTS: dict[tuple[str, str], ExpectedCost] = {}


def metric_of(space: SearchSpace, metric: str) -> Metric:
    if metric == "latency":
        return Latency(space, fake_table(space))
    return MACs(space) if metric == "macs" else Params(space)


def exact_cost(space: SearchSpace, metric: Metric, arch) -> float:
    """The cost from outside `Metric`: the MACs model, or the table's own predictor."""
    if isinstance(metric, Latency):
        return metric.table.predict(space, arch)
    return getattr(arch_cost(space, arch), metric.record_key)


def _expected(name: str, metric: str = "macs") -> ExpectedCost:
    if (name, metric) not in _COSTS:
        space = small_space(name)
        _COSTS[name, metric] = ExpectedCost(space, metric_of(space, metric))
    return _COSTS[name, metric]


@pytest.mark.parametrize(("name", "metric"), METRIC_SPACES)
@settings(max_examples=30)
@given(data=st.data())
def test_one_hot_expected_cost_is_exact(name, metric, data):
    expected = _expected(name, metric)
    arch = data.draw(archs(expected.space))
    value = expected(one_hot_probs(expected.space, arch))
    exact = exact_cost(expected.space, expected.metric, arch)
    assert value.item() == pytest.approx(exact, rel=1e-12)


@pytest.mark.parametrize(("name", "metric"), METRIC_SPACES)
def test_gradient_reaches_every_costly_decision(name, metric):
    """Every decision with options moves the cost, and activations only move latency (the
    parameter count may or may not depend on the resolution)."""
    space = small_space(name)
    torch.manual_seed(0)
    logits = {d.name: torch.randn(len(d.options), requires_grad=True) for d in decisions(space)}
    _expected(name, metric)({k: v.softmax(0) for k, v in logits.items()}).backward()
    for decision in decisions(space):
        priced = metric == "latency" or not decision.name.endswith(".activation")
        grad = logits[decision.name].grad
        if metric == "params" and decision.name == "resolution":
            continue
        if len(decision.options) > 1 and priced:
            assert grad is not None and grad.abs().max() > 0, decision.name
        else:
            assert grad is None or grad.abs().max() == 0, decision.name


@pytest.mark.parametrize("metric", ["macs", "latency"])
def test_gradient_matches_finite_differences(metric):
    space = get_space("fmnist_small")
    expected = ExpectedCost(space, metric_of(space, metric))
    torch.manual_seed(1)
    logits = {d.name: torch.randn(len(d.options), dtype=torch.float64) for d in decisions(space)}

    def cost_of(values):
        return expected({k: v.softmax(0) for k, v in values.items()})

    for target in ("block2.out_channels", "block3.activation"):
        if metric == "macs" and target.endswith("activation"):
            continue
        leaf = logits[target].clone().requires_grad_(True)
        cost_of({**logits, target: leaf}).backward()
        step = 1e-6
        for i in range(len(leaf)):
            shifted = logits[target].clone()
            shifted[i] += step
            numeric = (cost_of({**logits, target: shifted}) - cost_of(logits)) / step
            scale = abs(cost_of(logits).item())
            assert leaf.grad[i].item() == pytest.approx(numeric.item(), rel=1e-4, abs=1e-9 * scale)


def test_expected_cost_is_the_mean_over_sampled_archs():
    """With soft probabilities the expectation equals a Monte-Carlo mean of exact costs."""
    space = small_space("fmnist_small")
    torch.manual_seed(2)
    probs = {d.name: torch.rand(len(d.options)).softmax(0) for d in decisions(space)}
    macs = _expected("fmnist_small")(probs)
    rng = random.Random(0)
    plain = {k: v.tolist() for k, v in probs.items()}
    draws = [arch_cost(space, sample(space, rng, plain)).macs for _ in range(4000)]
    mean = sum(draws) / len(draws)
    assert macs.item() == pytest.approx(mean, rel=0.02)


def test_missing_decision_is_a_clear_error():
    space = get_space("fmnist_small")
    probs = one_hot_probs(space, sample(space, random.Random(0)))
    del probs["block1.kernel_size"]
    with pytest.raises(ArchError, match="no probabilities for decision 'block1.kernel_size'"):
        _expected("fmnist_small")(probs)
