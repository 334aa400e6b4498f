"""The int8 ONNX export: static QDQ quantization with per-channel int8 weights, calibrated on
the batches given, BN folded first, the precision in its metadata; the runtimes it runs in."""

import random

import numpy as np
import onnx
import pytest
import torch

from supernas.errors import ExportError
from supernas.export import FILENAMES, export_model
from supernas.nn import build_model
from supernas.runtimes import RUNTIMES, OnnxRunner, fold_batchnorm, predictions, runtimes
from supernas.space import get_space, sample

SPACE = get_space("fmnist_small")


def _model_and_data():
    torch.manual_seed(0)
    arch = sample(SPACE, random.Random(3))
    model = build_model(SPACE, arch).eval()
    with torch.no_grad():  # BN statistics as after training, so folding them matters
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.3, 0.3)
                module.running_var.uniform_(0.5, 2.0)
    generator = torch.Generator().manual_seed(0)
    shape = (16, 1, arch.resolution, arch.resolution)
    batches = [torch.rand(shape, generator=generator) * 2 - 1 for _ in range(4)]
    return model, batches


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model, batches = _model_and_data()
    out = tmp_path_factory.mktemp("int8")
    metadata = {"supernas.arch": "test"}
    results = export_model(model, batches[0][:2], out, ["onnx-int8"], metadata, batches)
    return model, batches, out, results


def test_int8_export_writes_the_fp32_model_it_is_quantized_from(exported):
    _, _, out, results = exported
    assert list(results) == ["onnx", "onnx-int8"]
    assert results["onnx"]["max_rel_diff"] <= 1e-4
    assert (out / FILENAMES["onnx-int8"]).stat().st_size < (out / FILENAMES["onnx"]).stat().st_size


def test_int8_graph_is_static_qdq_with_per_channel_int8_weights(exported):
    _, _, out, _ = exported
    graph = onnx.load(str(out / FILENAMES["onnx-int8"])).graph
    initializers = {i.name: i for i in graph.initializer}
    kinds = {node.op_type for node in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= kinds
    assert "BatchNormalization" not in kinds  # folded into the convolutions before quantizing
    producers = {output: node for node in graph.node for output in node.output}
    convs = [node for node in graph.node if node.op_type == "Conv"]
    for conv in convs:
        weight = producers[conv.input[1]]
        assert weight.op_type == "DequantizeLinear", conv.name
        stored, scale = initializers[weight.input[0]], initializers[weight.input[1]]
        assert stored.data_type == onnx.TensorProto.INT8, conv.name
        assert len(onnx.numpy_helper.to_array(scale).reshape(-1)) > 1, "per output channel"
        activation = producers[conv.input[0]]
        assert activation.op_type == "DequantizeLinear", conv.name
        zero_point = initializers[activation.input[2]]
        assert zero_point.data_type == onnx.TensorProto.UINT8, conv.name


def test_int8_model_carries_its_precision_and_the_metadata(exported):
    _, _, out, _ = exported
    props = {p.key: p.value for p in onnx.load(str(out / FILENAMES["onnx-int8"])).metadata_props}
    assert props == {"supernas.arch": "test", "supernas.precision": "int8"}


def test_int8_model_stays_close_to_pytorch_on_data_like_its_calibration(exported):
    model, batches, out, results = exported
    assert 0 < results["onnx-int8"]["max_rel_diff"] < 0.1
    runner = OnnxRunner(out / FILENAMES["onnx-int8"])
    with torch.no_grad():
        expected = model(batches[1]).argmax(1).numpy()
    assert (runner(batches[1].numpy()).argmax(1) == expected).mean() >= 0.75


def test_batchnorm_folding_keeps_the_outputs():
    model, batches = _model_and_data()
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    with torch.no_grad():
        torch.testing.assert_close(folded(batches[0]), model(batches[0]), rtol=1e-4, atol=1e-5)


def test_an_int8_export_without_calibration_batches_is_refused(tmp_path):
    model, batches = _model_and_data()
    with pytest.raises(ExportError, match="needs calibration batches of the training split"):
        export_model(model, batches[0][:2], tmp_path, ["onnx-int8"])


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_every_runtime_agrees_with_pytorch_on_the_fp32_model(exported, runtime):
    model, batches, out, _ = exported
    runner = OnnxRunner(out / FILENAMES["onnx"], runtime)
    labels = torch.zeros(len(batches[2]), dtype=torch.long)
    predicted, _ = predictions(runner, [(batches[2], labels)])
    with torch.no_grad():
        expected = model(batches[2])
    np.testing.assert_allclose(runner(batches[2].numpy()), expected.numpy(), rtol=1e-3, atol=1e-4)
    assert (predicted == expected.argmax(1).numpy()).all()
    assert runner.latency_ms(tuple(batches[2][:1].shape), repeats=3, warmup=1) > 0


def test_an_unknown_or_missing_runtime_is_one_line(exported, monkeypatch):
    _, _, out, _ = exported
    with pytest.raises(ExportError, match="unknown runtime 'tensorrt'; choose from onnxruntime"):
        OnnxRunner(out / FILENAMES["onnx"], "tensorrt")
    monkeypatch.setattr("supernas.runtimes.runtimes", lambda: ["onnxruntime"])
    with pytest.raises(
        ExportError, match=r"openvino is not installed: pip install 'supernas\[deploy\]'"
    ):
        OnnxRunner(out / FILENAMES["onnx"], "openvino")


def test_both_runtimes_are_installed_for_the_tests():
    assert runtimes() == list(RUNTIMES)


def test_a_runs_int8_export_is_calibrated_on_unaugmented_weight_images(tmp_path, monkeypatch):
    """The ranges must be those the deployed model sees: the weight split through the
    evaluation transform, not augmented training batches."""
    import supernas.api as api
    from supernas.data import DataConfig, build_data

    data = build_data(DataConfig(name="synthetic", augment="imagenet", num_workers=0))
    captured = {}

    def capture(model, example, out_dir, formats, metadata, calibration):
        captured["batches"] = list(calibration)
        return {}

    monkeypatch.setattr(api, "export_model", capture)
    model, _ = _model_and_data()
    arch = sample(SPACE, random.Random(3))
    api._export(model, SPACE, arch, {}, tmp_path, ["onnx-int8"], data)
    first = next(iter(data.loader(data.weight_plain, train=False, seed=0)))[0]
    assert len(captured["batches"]) == api.CALIBRATION_BATCHES
    assert torch.equal(captured["batches"][0], first)
    assert torch.equal(next(iter(data.loader(data.weight_plain, train=False, seed=0)))[0], first)
