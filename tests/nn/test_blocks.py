"""Layout and values of the shared building blocks."""

import onnx
import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from supernas.nn import build_model
from supernas.nn.blocks import global_avg_pool
from supernas.runtimes import onnx_graph
from supernas.space import biggest, get_space


def _nchw_only(tensor: torch.Tensor) -> bool:
    """An NCHW tensor that is not also channels-last (broadcast views and 1x1 maps are both)."""
    if tensor.dim() != 4 or tensor.size(2) * tensor.size(3) == 1 or 0 in tensor.stride():
        return False
    return tensor.is_contiguous() and not tensor.is_contiguous(memory_format=torch.channels_last)


class _NchwOperators(TorchDispatchMode):
    """Names of the operators that read or write an NCHW-only tensor."""

    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        results = out if isinstance(out, (tuple, list)) else (out,)
        tensors = [t for t in (*args, *results) if isinstance(t, torch.Tensor)]
        if any(_nchw_only(t) for t in tensors):
            self.names.add(func.__name__)
        return out


def test_a_channels_last_training_step_meets_no_nchw_tensor():
    """One NCHW gradient among channels-last ones makes each elementwise backward it meets
    5-10x slower on the CPU; the global pools (squeeze-excite, head) must not make one."""
    space = get_space("fmnist_small")
    torch.manual_seed(0)
    model = build_model(space, biggest(space)).to(memory_format=torch.channels_last).train()
    images = torch.randn(4, space.in_channels, 28, 28).contiguous(memory_format=torch.channels_last)
    loss = model(images).logsumexp(1).sum()
    with _NchwOperators() as seen:
        loss.backward()
    assert seen.names == set()


@pytest.mark.parametrize("training", [True, False])
def test_global_avg_pool_is_the_spatial_mean(training):
    x = torch.randn(3, 5, 7, 7, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    leaf = x.clone().requires_grad_()
    pooled = global_avg_pool(leaf, training)
    torch.testing.assert_close(pooled, F.adaptive_avg_pool2d(x, 1))
    scale = torch.arange(5.0, dtype=x.dtype).view(1, 5, 1, 1)
    (grad,) = torch.autograd.grad((pooled * scale).sum(), leaf)
    torch.testing.assert_close(grad, scale.expand_as(x) / 49)


def test_an_exported_model_pools_with_the_operator_runtimes_know():
    space = get_space("fmnist_small")
    model = build_model(space, biggest(space)).eval()
    graph = onnx.load_from_string(onnx_graph(model, torch.randn(1, space.in_channels, 28, 28)))
    operators = {node.op_type for node in graph.graph.node}
    assert "GlobalAveragePool" in operators
    assert "ReduceSum" not in operators


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA autocast")
def test_the_training_pool_keeps_a_bf16_map_in_bf16_under_autocast():
    """CUDA autocast runs ``sum`` in float32 unless a dtype is named; the cast up would come
    back in the backward as an NCHW gradient."""
    x = torch.randn(2, 8, 7, 7, device="cuda").contiguous(memory_format=torch.channels_last)
    leaf = x.requires_grad_()
    grads = []
    with torch.autocast("cuda", torch.bfloat16):
        hidden = F.conv2d(leaf, torch.randn(8, 1, 3, 3, device="cuda"), padding=1, groups=8)
        hidden.register_hook(grads.append)
        pooled = global_avg_pool(hidden, True)
    assert hidden.dtype == pooled.dtype == torch.bfloat16
    pooled.float().sum().backward()
    assert 0 in grads[0].stride()  # a broadcast view, not a tensor written out


def test_a_float16_map_pools_without_overflowing():
    x = torch.full((1, 2, 112, 112), 6.0, dtype=torch.float16)  # relu6 saturated
    assert global_avg_pool(x, True).flatten().tolist() == [6.0, 6.0]
