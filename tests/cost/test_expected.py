"""Expected cost: exact on one-hot probabilities, differentiable in every costly decision."""

import random

import pytest
import torch
from draws import SPACE_NAMES, archs, small_space
from hypothesis import given, settings
from hypothesis import strategies as st

from supernas.cost.expected import ExpectedCost, one_hot_probs
from supernas.cost.macs import arch_cost
from supernas.errors import ArchError
from supernas.space import decisions, get_space, sample

_COSTS: dict[str, ExpectedCost] = {}


def _expected(name: str) -> ExpectedCost:
    if name not in _COSTS:
        _COSTS[name] = ExpectedCost(small_space(name))
    return _COSTS[name]


@pytest.mark.parametrize("name", SPACE_NAMES)
@settings(max_examples=100)
@given(data=st.data())
def test_one_hot_expected_cost_is_exact(name, data):
    expected = _expected(name)
    arch = data.draw(archs(expected.space))
    macs, params = expected(one_hot_probs(expected.space, arch))
    exact = arch_cost(expected.space, arch)
    assert macs.item() == pytest.approx(exact.macs, rel=1e-12)
    assert params.item() == pytest.approx(exact.params, rel=1e-12)


@pytest.mark.parametrize("name", SPACE_NAMES)
def test_gradient_reaches_every_costly_decision(name):
    space = small_space(name)
    torch.manual_seed(0)
    logits = {d.name: torch.randn(len(d.options), requires_grad=True) for d in decisions(space)}
    macs, _ = _expected(name)({k: v.softmax(0) for k, v in logits.items()})
    macs.backward()
    for decision in decisions(space):
        costly = len(decision.options) > 1 and not decision.name.endswith(".activation")
        grad = logits[decision.name].grad
        if costly:
            assert grad is not None and grad.abs().max() > 0, decision.name
        else:
            assert grad is None or grad.abs().max() == 0, decision.name


def test_gradient_matches_finite_differences():
    name = "fmnist_small"
    space = get_space(name)
    torch.manual_seed(1)
    logits = {d.name: torch.randn(len(d.options), dtype=torch.float64) for d in decisions(space)}

    def macs_of(values):
        return _expected(name)({k: v.softmax(0) for k, v in values.items()})[0]

    target = "block2.out_channels"
    leaf = logits[target].clone().requires_grad_(True)
    macs_of({**logits, target: leaf}).backward()
    step = 1e-6
    for i in range(len(leaf)):
        shifted = logits[target].clone()
        shifted[i] += step
        numeric = (macs_of({**logits, target: shifted}) - macs_of(logits)) / step
        assert leaf.grad[i].item() == pytest.approx(numeric.item(), rel=1e-4, abs=1e-3)


def test_expected_cost_is_the_mean_over_sampled_archs():
    """With soft probabilities the expectation equals a Monte-Carlo mean of exact costs."""
    space = small_space("fmnist_small")
    torch.manual_seed(2)
    probs = {d.name: torch.rand(len(d.options)).softmax(0) for d in decisions(space)}
    macs, _ = _expected("fmnist_small")(probs)
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
