import random

import torch

from supernas.nn import Supernet, extract_child, recalibrate_bn
from supernas.space import get_space, sample


def test_recalibrated_statistics_equal_the_childs_own_statistics():
    """After recalibration each BN holds the mean and (unbiased) variance of its input over
    all calibration batches, computed here directly on the standalone child."""
    space = get_space("fmnist_small")
    torch.manual_seed(0)
    child = extract_child(Supernet(space), sample(space, random.Random(3))).double().eval()
    batches = [torch.randn(16, 1, 28, 28, dtype=torch.float64) for _ in range(4)]
    inputs: dict[torch.nn.Module, list[torch.Tensor]] = {}
    norms = [m for m in child.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    hooks = [
        n.register_forward_hook(lambda m, i, o: inputs.setdefault(m, []).append(i[0]))
        for n in norms
    ]
    recalibrate_bn(child, batches)
    for hook in hooks:
        hook.remove()
    for norm in norms:
        per_batch = inputs[norm]
        means = torch.stack([x.mean((0, 2, 3)) for x in per_batch])
        variances = torch.stack([x.var((0, 2, 3), unbiased=True) for x in per_batch])
        torch.testing.assert_close(norm.running_mean, means.mean(0))
        torch.testing.assert_close(norm.running_var, variances.mean(0))
    assert not child.training  # the model's mode is restored
