"""Latency tables measured in ONNX Runtime and OpenVINO, fp32 and int8: what they record, that
they refuse to stand in for another runtime or precision, that an int8 entry is quantized as the
int8 export is, and the one-line errors of the CLI."""

import dataclasses
import json
import tempfile
from pathlib import Path

import onnx
import pytest
import torch
from tables import FAST, tiny_space

from supernas.cli import main
from supernas.cost.budget import Budget, BudgetConfig
from supernas.cost.latency import LatencyTable
from supernas.cost.latency_build import Deployment, _Called, build_table, check_table
from supernas.errors import ConfigError
from supernas.export import FILENAMES, export_model
from supernas.nn.standalone import build_block, build_model
from supernas.runtimes import onnx_file, runtime_version, runtimes
from supernas.space import choices, plan

INSTALLED = runtimes()
needs = {name: pytest.mark.skipif(name not in INSTALLED, reason=f"needs {name}") for name in
         ("onnxruntime", "openvino")}  # fmt: skip


@pytest.fixture(scope="module")
def int8_table() -> LatencyTable:
    if "onnxruntime" not in INSTALLED:
        pytest.skip("needs onnxruntime")
    return build_table(tiny_space(), Deployment("onnxruntime", "int8", threads=1), FAST)


def test_a_runtime_table_records_how_it_was_measured(int8_table):
    table = int8_table
    assert (table.runtime, table.precision, table.threads) == ("onnxruntime", "int8", 1)
    assert table.runtime_version == runtime_version("onnxruntime")
    assert table.provider == "CPUExecutionProvider"
    assert table.setting.startswith(f"onnxruntime {table.runtime_version} int8, 1 thread")
    assert all(value > 0 for value in table.entries.values())


def test_a_table_refuses_another_runtime_or_precision(int8_table, tmp_path):
    int8_table.check_runtime("onnxruntime", "int8")
    int8_table.check_runtime(None, None)
    with pytest.raises(ConfigError, match="measured in onnxruntime .* not with runtime openvino"):
        int8_table.check_runtime("openvino", None)
    with pytest.raises(ConfigError, match="not with precision fp32; build one with"):
        int8_table.check_runtime(None, "fp32")
    lut = tmp_path / "lut.json"
    int8_table.save(lut)
    space = tiny_space()
    Budget(BudgetConfig("latency", 5.0, str(lut), "onnxruntime", "int8"), space)
    with pytest.raises(ConfigError, match="not with precision fp32"):
        Budget(BudgetConfig("latency", 5.0, str(lut), precision="fp32"), space)
    with pytest.raises(ConfigError, match="runtime and precision are for metric latency"):
        BudgetConfig("macs", 5e6, precision="int8")


def test_a_table_checks_in_its_own_runtime(int8_table):
    result = check_table(int8_table, tiny_space(), archs=3)
    assert (result["runtime"], result["precision"]) == ("onnxruntime", "int8")
    assert all(row["measured_ms"] > 0 for row in result["rows"])
    # The second measurement of the same archs, and the repeatability it gives.
    drifts = [abs(r["measured_again_ms"] / r["measured_ms"] - 1) for r in result["rows"]]
    assert result["repeat_mape"] == pytest.approx(sum(drifts) / 3)
    assert result["repeat_within_10pct"] == sum(d <= 0.1 for d in drifts) / 3


def _conv_quantization(graph: onnx.GraphProto) -> set[tuple]:
    """For every Conv: how its weight and input are quantized (dtypes, per channel or not)."""
    initializers = {i.name: i for i in graph.initializer}
    producers = {output: node for node in graph.node for output in node.output}
    kinds = set()
    for conv in (node for node in graph.node if node.op_type == "Conv"):
        weight, activation = producers[conv.input[1]], producers[conv.input[0]]
        scale = onnx.numpy_helper.to_array(initializers[weight.input[1]])
        kinds.add(
            (
                weight.op_type,
                initializers[weight.input[0]].data_type,
                scale.size > 1,
                activation.op_type,
                initializers[activation.input[2]].data_type,
            )
        )
    return kinds


@needs["onnxruntime"]
def test_an_int8_entry_is_quantized_as_the_int8_export_is(tmp_path):
    space = tiny_space()
    arch = choices.biggest(space)
    model = build_model(space, arch).eval()
    example = torch.randn(4, 1, arch.resolution, arch.resolution)
    export_model(model, example[:2], tmp_path, ["onnx-int8"], {}, [example])
    exported = _conv_quantization(onnx.load(str(tmp_path / FILENAMES["onnx-int8"])).graph)
    block = plan(space, arch).blocks[0]
    module = _Called(build_block(block, space.kernel_sharing), block).eval()
    x = torch.randn(1, block.in_channels, block.in_size, block.in_size)
    with tempfile.TemporaryDirectory() as folder:
        entry = _conv_quantization(onnx.load(str(onnx_file(module, x, "int8", Path(folder)))).graph)
    assert entry and entry == exported
    int8, uint8 = onnx.TensorProto.INT8, onnx.TensorProto.UINT8
    assert entry == {("DequantizeLinear", int8, True, "DequantizeLinear", uint8)}


@needs["openvino"]
def test_openvino_times_a_layer_net_of_its_call(tmp_path):
    table = build_table(tiny_space(), Deployment("openvino", "fp32", threads=1), FAST)
    assert table.provider == "CPU" and table.runtime == "openvino"
    assert min(table.entries.values()) > 0


def test_torch_has_no_int8_tables(capsys, tmp_path):
    out = tmp_path / "lut.json"
    argv = ["latency", "build", "--space", "fmnist_small", "--precision", "int8"]
    assert main(["-q", *argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert (
        err == "supernas: error: int8 latency is measured in onnxruntime or openvino, not torch\n"
    )
    assert not out.exists()


def test_a_missing_runtime_names_the_extra_before_any_work(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr("supernas.cost.latency_build.runtimes", lambda: [])
    out = tmp_path / "lut.json"
    argv = ["latency", "build", "--space", "fmnist_small", "--runtime", "openvino"]
    assert main(["-q", *argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == (
        "supernas: error: runtime openvino is not installed: pip install 'supernas[deploy]'\n"
    )
    assert not out.exists()


def test_an_unknown_runtime_is_refused_by_the_cli(capsys, tmp_path):
    argv = ["latency", "build", "--space", "fmnist_small", "--runtime", "tflite"]
    with pytest.raises(SystemExit) as exit_info:
        main(["-q", *argv, "--out", str(tmp_path / "lut.json")])
    assert exit_info.value.code == 2
    assert "invalid choice: 'tflite'" in capsys.readouterr().err


@needs["onnxruntime"]
def test_cli_check_refuses_a_table_of_another_precision(int8_table, tmp_path, capsys):
    lut = tmp_path / "lut.json"
    int8_table.save(lut)
    space_file = tmp_path / "tiny.yaml"
    tiny_space().to_yaml(space_file)
    check = ["latency", "check", "--lut", str(lut), "--space", str(space_file), "--archs", "2"]
    assert main(["-q", *check, "--precision", "fp32"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("supernas: error: latency table was measured in onnxruntime")
    assert err.count("\n") == 1
    assert main(["-q", *check, "--runtime", "onnxruntime"]) == 0
    assert "in onnxruntime int8: MAPE" in capsys.readouterr().out


def test_a_table_with_an_unknown_runtime_is_refused_on_load(int8_table, tmp_path):
    data = json.loads(dataclasses.replace(int8_table, runtime="tflite").to_json())
    (tmp_path / "lut.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="runtime 'tflite' 'int8' is unknown"):
        LatencyTable.load(tmp_path / "lut.json")


def test_older_tables_read_as_torch_fp32(int8_table, tmp_path):
    data = json.loads(int8_table.to_json())
    for name in ("runtime", "precision", "runtime_version", "provider"):
        del data[name]
    (tmp_path / "lut.json").write_text(json.dumps(data))
    table = LatencyTable.load(tmp_path / "lut.json")
    assert (table.runtime, table.precision) == ("torch", "fp32")


def test_cli_refuses_a_table_from_another_device_in_one_line(int8_table, tmp_path, capsys):
    lut = tmp_path / "lut.json"
    dataclasses.replace(int8_table, device_name="cpu:another model").save(lut)
    space_file = tmp_path / "tiny.yaml"
    tiny_space().to_yaml(space_file)
    check = ["latency", "check", "--lut", str(lut), "--space", str(space_file), "--archs", "2"]
    assert main(["-q", *check]) == 2
    err = capsys.readouterr().err
    assert err.startswith("supernas: error: latency table was measured on cpu:another model")
    assert err.count("\n") == 1
    assert not lut.with_name("lut.check.json").exists()
