import onnxruntime
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

from supernas.errors import ExportError
from supernas.export import FILENAMES, FORMATS, export_model
from supernas.nn import build_model
from supernas.space import biggest, get_space

EXACT = [name for name in FORMATS if name != "onnx-int8"]  # int8: tests/test_int8.py


class SplitSoftmax(nn.Module):
    """Softmax over a split of the channels, as split attention computes it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        weights = torch.softmax(x.reshape(b, 2, c // 2, h, w), dim=1)
        return x * weights.reshape(b, c, h, w)


class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(8),
            nn.Hardswish(),
            SplitSoftmax(),
            nn.Conv2d(8, 8, 1),
            nn.Hardsigmoid(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.classifier = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def tiny_net() -> TinyNet:
    torch.manual_seed(0)
    net = TinyNet()
    with torch.no_grad():  # non-trivial BN and logits well above 1, so gaps are relative
        bn = net.features[1]
        bn.running_mean.uniform_(-0.2, 0.2)
        bn.running_var.uniform_(0.5, 1.5)
        bn.weight.uniform_(0.5, 1.5)
        net.classifier.weight.mul_(20)
    return net.eval()


class BatchDependent(nn.Module):
    """Python control flow on the batch size: a trace bakes in the branch it saw."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(12, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.linear(x.flatten(1))
        return out * 3 if x.shape[0] == 2 else out


class WrongSymbolic(torch.autograd.Function):
    """Identity in PyTorch, negation in ONNX: a custom op whose export disagrees."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def symbolic(g, x):
        return g.op("Neg", x)


@pytest.mark.parametrize("batch", [1, 3])
def test_every_format_matches_pytorch(tmp_path, batch):
    model = tiny_net()
    results = export_model(model, torch.randn(batch, 3, 16, 16), tmp_path, EXACT)
    assert list(results) == EXACT
    for name, info in results.items():
        assert info["path"] == str(tmp_path / FILENAMES[name])
        assert 0 <= info["max_rel_diff"] <= 1e-4, name
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        FILENAMES[name] for name in EXACT
    )  # no temps


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_every_format_carries_the_metadata(tmp_path):
    metadata = {"supernas.preprocessing": '{"center_crop": 16}', "supernas.arch": "r16/..."}
    export_model(tiny_net(), torch.randn(2, 3, 16, 16), tmp_path, EXACT, metadata)
    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"))
    assert session.get_modelmeta().custom_metadata_map == metadata
    with safe_open(tmp_path / "model.safetensors", "pt") as weights:
        assert weights.metadata() == metadata
    files = dict.fromkeys(metadata, "")
    torch.jit.load(str(tmp_path / "model.torchscript.pt"), _extra_files=files)
    assert {key: value.decode() for key, value in files.items()} == metadata  # read as bytes
    files = dict.fromkeys(metadata, "")
    torch.export.load(str(tmp_path / "model.pt2"), extra_files=files)
    assert files == metadata


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_exported_files_run_without_the_module(tmp_path):
    model = tiny_net()
    export_model(model, torch.randn(2, 3, 16, 16), tmp_path, EXACT)
    x = torch.randn(5, 3, 16, 16)  # a batch size the export never saw
    with torch.no_grad():
        expected = model(x)
    assert expected.abs().max() > 1  # not a comparison of near-zero outputs
    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"))
    (logits,) = session.run(None, {"images": x.numpy()})
    torch.testing.assert_close(torch.from_numpy(logits), expected, rtol=1e-4, atol=1e-4)
    scripted = torch.jit.load(str(tmp_path / "model.torchscript.pt"))
    torch.testing.assert_close(scripted(x), expected, rtol=1e-5, atol=1e-5)
    program = torch.export.load(str(tmp_path / "model.pt2")).module()
    torch.testing.assert_close(program(x), expected, rtol=1e-5, atol=1e-5)
    weights = load_file(tmp_path / "model.safetensors")
    assert weights.keys() == model.state_dict().keys()
    for name, tensor in model.state_dict().items():
        assert torch.equal(weights[name], tensor), name


def test_caller_model_is_left_in_train_mode(tmp_path):
    model = tiny_net().train()
    export_model(model, torch.randn(2, 3, 16, 16), tmp_path, ["onnx"])
    assert model.training and all(m.training for m in model.modules())


@pytest.mark.parametrize(("scale", "refused"), [(1 + 3e-5, False), (1 + 3e-4, True)])
def test_onnx_tolerance_is_relative_to_output_scale(tmp_path, monkeypatch, scale, refused):
    real = onnxruntime.InferenceSession.run
    monkeypatch.setattr(
        onnxruntime.InferenceSession,
        "run",
        lambda self, *args, **kwargs: [out * scale for out in real(self, *args, **kwargs)],
    )
    example = torch.randn(2, 3, 16, 16)
    if refused:
        with pytest.raises(ExportError, match=r"ONNX output at batch size 2 differs .* by 3\.0"):
            export_model(tiny_net(), example, tmp_path, ["onnx"])
    else:
        gap = export_model(tiny_net(), example, tmp_path, ["onnx"])["onnx"]["max_rel_diff"]
        assert 2e-5 < gap < 4e-5


def test_custom_op_whose_onnx_disagrees_is_refused(tmp_path):
    class Negated(nn.Module):
        def forward(self, x):
            return WrongSymbolic.apply(x) + 1

    with pytest.raises(ExportError, match="ONNX output at batch size 2 differs from PyTorch"):
        export_model(Negated(), torch.randn(2, 4), tmp_path, ["onnx"])


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("onnx", "ONNX output at batch size 4 differs from PyTorch"),
        ("torchscript", "TorchScript output at batch size 4 differs from PyTorch"),
        ("torch-export", "torch.export failed"),
    ],
)
def test_batch_size_baked_into_a_graph_is_refused(tmp_path, name, message):
    torch.manual_seed(0)
    with pytest.raises(ExportError, match=message):
        export_model(BatchDependent().eval(), torch.randn(2, 3, 2, 2), tmp_path, [name])


def test_unknown_format_lists_the_valid_ones_and_writes_nothing(tmp_path):
    with pytest.raises(ExportError) as error:
        export_model(tiny_net(), torch.randn(1, 3, 16, 16), tmp_path, ["onnx", "tflite"])
    assert str(error.value) == (
        "unknown export format 'tflite'; choose from onnx, onnx-int8, torchscript, "
        "torch-export, state-dict"
    )
    assert list(tmp_path.iterdir()) == []


def test_standalone_model_of_a_space_exports(tmp_path):
    space = get_space("fmnist_small")
    torch.manual_seed(0)
    model = build_model(space, biggest(space))  # split attention, h-swish, every block kind
    for module in model.modules():  # BN statistics of the data, or the logits barely vary
        if isinstance(module, nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # a cumulative average: one batch sets the statistics
    with torch.no_grad():
        model.train()(torch.randn(16, 1, 28, 28))
    model.eval()
    example = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        assert (model(example)[0] - model(example)[1]).abs().max() > 0.1
    results = export_model(model, example, tmp_path, EXACT)
    assert all(info["max_rel_diff"] <= 1e-4 for info in results.values())
