"""The analytic cost equals what PyTorch counts on the standalone model."""

import pytest
import torch
from draws import SPACE_NAMES, archs, examples, small_space
from hypothesis import given, settings
from torch.utils.flop_counter import FlopCounterMode

from supernas.cost.macs import arch_cost
from supernas.nn import build_model
from supernas.space import biggest, get_space


def counted_macs(model: torch.nn.Module, resolution: int, in_channels: int) -> float:
    """FlopCounterMode's FLOPs for one image, halved (it counts 2 FLOPs per MAC)."""
    x = torch.randn(1, in_channels, resolution, resolution)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.eval()(x)
    return counter.get_total_flops() / 2


@pytest.mark.parametrize("name", SPACE_NAMES)
def test_macs_and_params_match_pytorch(name):
    space = small_space(name)

    @settings(max_examples=examples(name))
    @given(archs(space))
    def check(arch):
        model = build_model(space, arch)
        cost = arch_cost(space, arch)
        assert cost.params == sum(p.numel() for p in model.parameters())
        macs = counted_macs(model, arch.resolution, space.in_channels)
        assert abs(cost.macs - macs) <= 0.01 * macs

    check()


@pytest.mark.parametrize("name", ["proxyless_mobile", "bignas"])
def test_full_resolution_children_match_pytorch(name):
    space = get_space(name)
    arch = biggest(space)
    cost = arch_cost(space, arch)
    assert cost.macs == counted_macs(build_model(space, arch), arch.resolution, 3)
