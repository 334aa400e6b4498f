"""Cross-checks against figures published with the papers' models."""

from supernas.cost.macs import arch_cost
from supernas.nn import build_model
from supernas.space import arch_from_choices, choices_of, get_space, smallest

# The released ProxylessNAS-Mobile (proxyless_mobile.config): (kernel, expansion) of the 21
# searched blocks, None for a zero op. Published: 320.4M MACs ("FLOPs"), 4.08M parameters
# (mit-han-lab/proxylessnas logs/imagenet_mobile_log.txt; pytorchcv asserts 4,080,512).
PROXYLESS_MOBILE = [
    (5, 3),
    (3, 3),
    None,
    None,
    (7, 3),
    (3, 3),
    (5, 3),
    (5, 3),
    (7, 6),
    (5, 3),
    (5, 3),
    (5, 3),
    (5, 6),
    (5, 3),
    (5, 3),
    (5, 3),
    (7, 6),
    (7, 6),
    (7, 3),
    (7, 3),
    (7, 6),
]


def proxyless_mobile_arch():
    space = get_space("proxyless_mobile")
    choices = choices_of(space, smallest(space))
    for index, block in enumerate(PROXYLESS_MOBILE, start=1):
        if block is None:
            choices[f"block{index}.present"] = False
            continue
        if f"block{index}.present" in choices:
            choices[f"block{index}.present"] = True
        choices[f"block{index}.kernel_size"], choices[f"block{index}.expansion"] = block
    return space, arch_from_choices(space, choices)


def test_proxyless_mobile_matches_the_published_cost():
    space, arch = proxyless_mobile_arch()
    cost = arch_cost(space, arch)
    assert cost.params == 4_080_512
    assert sum(p.numel() for p in build_model(space, arch).parameters()) == 4_080_512
    assert cost.macs == 320_427_584  # published, rounded: 320.4M
    assert abs(cost.macs - 320.4e6) / 320.4e6 < 0.001
