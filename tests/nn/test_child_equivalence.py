"""A child sliced out of the supernet computes exactly what the supernet computes for its arch."""

import pytest
import torch
from draws import SPACE_NAMES, archs, examples, small_space
from hypothesis import given, settings

from supernas.nn import Supernet, extract_child
from supernas.space import biggest, plan, smallest

_SUPERNETS: dict[str, Supernet] = {}


def _randomised_supernet(name: str) -> Supernet:
    """A float64 supernet whose BN statistics and affine parameters are not trivial."""
    if name not in _SUPERNETS:
        torch.manual_seed(0)
        net = Supernet(small_space(name)).double()
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.data.uniform_(0.5, 1.5)
                module.bias.data.uniform_(-0.2, 0.2)
        _SUPERNETS[name] = net
    return _SUPERNETS[name]


def _input(space, arch, batch=3):
    generator = torch.Generator().manual_seed(1)
    shape = (batch, space.in_channels, arch.resolution, arch.resolution)
    return torch.randn(shape, generator=generator, dtype=torch.float64)


@pytest.mark.parametrize("name", SPACE_NAMES)
def test_sliced_child_equals_supernet_in_eval_mode(name):
    net = _randomised_supernet(name).eval()

    @settings(max_examples=examples(name))
    @given(archs(net.space))
    def check(arch):
        child = extract_child(net, arch).eval()
        x = _input(net.space, arch)
        with torch.no_grad():
            torch.testing.assert_close(child(x), net(x, arch), rtol=1e-10, atol=1e-10)

    check()


@pytest.mark.parametrize("name", SPACE_NAMES)
def test_sliced_child_equals_supernet_in_train_mode(name):
    net = _randomised_supernet(name).train()
    for arch in (smallest(net.space), biggest(net.space)):
        child = extract_child(net, arch).train()
        x = _input(net.space, arch, batch=4)
        with torch.no_grad():
            torch.manual_seed(0)  # the same dropout mask for both
            expected = net(x, arch)
            torch.manual_seed(0)
            torch.testing.assert_close(child(x), expected, rtol=1e-10, atol=1e-10)


def test_children_share_weights():
    net = Supernet(small_space("fmnist_small"))
    small, big = smallest(net.space), biggest(net.space)
    kernel = extract_child(net, small).blocks[0].dw[0].conv.weight
    full = net.blocks[0].dw[0].conv.weight
    # smallest picks kernel 3: the centre of the shared 5x5 kernel
    torch.testing.assert_close(kernel, full[: kernel.size(0), :, 1:4, 1:4])
    assert extract_child(net, big).blocks[0].dw[0].conv.weight.shape == full.shape


def test_supernet_resizes_input_to_the_arch_resolution():
    net = Supernet(small_space("fmnist_small")).eval()
    arch = smallest(net.space)  # resolution 24
    assert arch.resolution < 28
    out = net(torch.randn(2, 1, 28, 28), arch)
    assert out.shape == (2, 10)


def test_one_hot_channel_masks_equal_the_narrow_child():
    """FBNetV2-style masking: a max-width block with prefix masks equals the sliced block."""
    space = small_space("fmnist_small")
    net = _randomised_supernet("fmnist_small").train()
    big = biggest(space)
    narrow = big.__class__(
        **{
            **big.__dict__,
            "blocks": (big.blocks[0].__class__(16, 3, 5, 0, "relu"), *big.blocks[1:]),
        }
    )
    wide_plan = plan(
        space,
        big.__class__(
            **{
                **big.__dict__,
                "blocks": (big.blocks[0].__class__(24, 6, 5, 0, "relu"), *big.blocks[1:]),
            }
        ),
    ).blocks[0]
    narrow_plan = plan(space, narrow).blocks[0]
    block = net.blocks[0]
    x = torch.randn(4, wide_plan.in_channels, 14 * 2, 14 * 2, dtype=torch.float64)
    mid_mask = (torch.arange(wide_plan.mid_channels) < narrow_plan.mid_channels).double()
    out_mask = (torch.arange(wide_plan.out_channels) < narrow_plan.out_channels).double()
    with torch.no_grad():
        masked = block(x, wide_plan, mid_mask, out_mask)
        sliced = block(x, narrow_plan)
    torch.testing.assert_close(masked[:, : narrow_plan.out_channels], sliced)
    assert masked[:, narrow_plan.out_channels :].abs().max() == 0
