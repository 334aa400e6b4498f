"""ONNX graphs of modules, their static int8 quantization, and running them in a runtime.

`onnx_graph` exports an eval-mode module as a deployment graph has it (BatchNorm folded into
the convs, a dynamic batch axis); the model export (`supernas.export`) and the latency tables of
ONNX runtimes (`supernas.cost.latency_build`) both go through it, and through `quantize_onnx`
for int8, so a table's int8 entry is quantized exactly as the shipped int8 model is.

`quantize_onnx` quantizes an exported fp32 ONNX model with ONNX Runtime's static quantization
in QDQ format (a QuantizeLinear / DequantizeLinear pair around every quantized tensor, the form
both ONNX Runtime and OpenVINO run as int8): weights int8 per output channel, activations uint8
per tensor (the u8s8 pairing x86 CPUs multiply fastest, with VNNI where the CPU has it), their
ranges calibrated by min-max on training batches the way the model sees them at inference.

`OnnxRunner` runs an ONNX file in ONNX Runtime or OpenVINO with a fixed number of threads, the
way a deployment would; `runtimes()` names those installed. Both come with the ``deploy`` extra.
"""

from __future__ import annotations

import copy
import importlib.metadata
import io
import logging
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from supernas.errors import ExportError, first_line

RUNTIMES = ("onnxruntime", "openvino")
TIMED_RUNTIMES = ("torch", *RUNTIMES)  # what a latency table can be measured in
PRECISIONS = ("fp32", "int8")
EXTRA = "pip install 'supernas[deploy]'"
ONNX_OPSET = 17  # HardSwish needs 14; 17 loads in every runtime released since 2022


def runtimes() -> list[str]:
    """The ONNX runtimes importable here, of `RUNTIMES`."""
    found = []
    for name in RUNTIMES:
        try:
            __import__(name)
        except ImportError:
            continue
        found.append(name)
    return found


def runtime_version(runtime: str) -> str:
    """The installed version of ``runtime`` (``torch`` or one of `RUNTIMES`)."""
    return importlib.metadata.version(runtime)


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of the eval-mode ``model`` with every BatchNorm folded into the conv before it,
    as a deployment graph has it: one op fewer per layer, and int8 weights quantized with the
    BN scale already in them."""
    model = copy.deepcopy(model)
    for module in model.modules():
        norm = getattr(module, "bn", None)
        if not isinstance(norm, nn.BatchNorm2d):
            continue
        convs = module.convs if hasattr(module, "convs") else {"": module.conv}
        for name, conv in list(convs.items()):
            fused = fuse_conv_bn_eval(conv, norm)
            if name:
                module.convs[name] = fused
            else:
                module.conv = fused
        module.bn = nn.Identity()
    return model


def onnx_graph(model: nn.Module, example: Tensor) -> bytes:
    """The serialized fp32 ONNX graph of the eval-mode ``model`` (BatchNorm folded), input
    ``images`` and output ``logits`` with a dynamic batch axis.

    Through the TorchScript-based exporter (``dynamo=False``): the torch.export-based one needs
    ``onnxscript``, which supernas does not depend on.
    """
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # the legacy exporter warns that it is legacy; a baked-in shape is caught by the checks
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        try:
            torch.onnx.export(
                fold_batchnorm(model),
                (example,),
                buffer,
                input_names=["images"],
                output_names=["logits"],
                dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
                opset_version=ONNX_OPSET,
                dynamo=False,
            )
        except Exception as error:  # an op without an ONNX symbolic, and the like
            raise ExportError(f"ONNX export failed: {first_line(error)}") from error
    return buffer.getvalue()


def onnx_file(model: nn.Module, example: Tensor, precision: str, folder: Path) -> Path:
    """Writes ``model``'s ONNX graph into ``folder``: fp32, or int8 quantized as
    `supernas.export` quantizes, its ranges calibrated on ``example`` (the ops of an int8 graph,
    and so its latency, do not depend on its ranges). Returns its path."""
    if precision not in PRECISIONS:
        raise ExportError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    path = folder / "fp32.onnx"
    path.write_bytes(onnx_graph(model, example))
    if precision == "fp32":
        return path
    quantized = folder / "int8.onnx"
    logger = logging.getLogger()  # the quantizer warns there of biases beyond int32 and the like
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        quantize_onnx(path, quantized, [example])
    finally:
        logger.setLevel(level)
    return quantized


def compile_module(
    model: nn.Module, example: Tensor, runtime: str, precision: str, threads: int
) -> OnnxRunner:
    """``model`` loaded in ``runtime`` as a deployment runs it (see `onnx_file`)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = onnx_file(model, example, precision, Path(tmp))
        return OnnxRunner(path, runtime, threads)  # the runtimes read the file when loading


def quantize_onnx(fp32: Path, out: Path, calibration: Iterable[Tensor]) -> None:
    """Writes the static int8 (QDQ) quantization of the ONNX model ``fp32`` to ``out``;
    ``calibration`` yields input batches (NCHW float tensors, preprocessed as for inference)."""
    try:
        from onnxruntime.quantization import (
            CalibrationDataReader,
            QuantFormat,
            QuantType,
            quantize_static,
        )
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError:
        raise ExportError(f"int8 export needs onnxruntime: {EXTRA}") from None

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches: Iterator[dict] = ({"images": b.numpy()} for b in calibration)

        def get_next(self) -> dict | None:
            return next(self.batches, None)

    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32), str(prepared))  # shapes inferred, graph folded first
        quantize_static(
            str(prepared),
            str(out),
            Batches(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )


class OnnxRunner:
    """``runner(images) -> logits`` for an ONNX file in ``runtime`` on ``threads`` CPU threads."""

    def __init__(self, path: Path, runtime: str = "onnxruntime", threads: int = 1) -> None:
        if runtime not in RUNTIMES:
            raise ExportError(f"unknown runtime {runtime!r}; choose from {', '.join(RUNTIMES)}")
        if runtime not in runtimes():
            raise ExportError(f"runtime {runtime} is not installed: {EXTRA}")
        self.runtime = runtime
        if runtime == "onnxruntime":
            import onnxruntime

            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            session = onnxruntime.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
            self._run = lambda x: session.run(None, {"images": x})[0]
        else:
            import openvino

            core = openvino.Core()
            # f32: OpenVINO would otherwise run fp32 layers in bf16 on CPUs that have it.
            settings = {
                "INFERENCE_NUM_THREADS": threads,
                "NUM_STREAMS": 1,
                "INFERENCE_PRECISION_HINT": "f32",
            }
            compiled = core.compile_model(str(path), "CPU", settings)
            request = compiled.create_infer_request()
            self._run = lambda x: next(iter(request.infer({0: x}).values()))

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return np.asarray(self._run(np.ascontiguousarray(images, dtype=np.float32)))

    def bound(self, images: np.ndarray) -> Callable[[], object]:
        """A call that runs the model on ``images`` (prepared once), for timing."""
        images = np.ascontiguousarray(images, dtype=np.float32)
        return lambda: self._run(images)

    def latency_ms(self, shape: tuple[int, ...], repeats: int = 50, warmup: int = 10) -> float:
        """Median milliseconds of one run on a batch of ``shape``."""
        images = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
        for _ in range(warmup):
            self(images)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            self(images)
            times.append(time.perf_counter() - start)
        return 1000 * statistics.median(times)


def predictions(
    runner: OnnxRunner, batches: Iterable[tuple[Tensor, Tensor]]
) -> tuple[np.ndarray, np.ndarray]:
    """(predicted classes, labels) of ``runner`` over ``batches`` of (images, labels)."""
    predicted, labels = [], []
    for images, targets in batches:
        predicted.append(runner(images.numpy()).argmax(1))
        labels.append(targets.numpy())
    return np.concatenate(predicted), np.concatenate(labels)


def int8_report(
    fp32: Path,
    int8: Path,
    test_batches: Callable[[], Iterable[tuple[Tensor, Tensor]]],
    input_shape: tuple[int, ...],
) -> dict[str, float]:
    """The int8 model against the fp32 one: test top-1 in ONNX Runtime, file sizes, latency
    of one image on one thread in each installed runtime, and how often OpenVINO predicts
    what ONNX Runtime predicts on the test set."""
    report: dict[str, float] = {}
    reference: dict[str, np.ndarray] = {}
    for precision, path in (("fp32", fp32), ("int8", int8)):
        predicted, labels = predictions(OnnxRunner(path), test_batches())
        reference[precision] = predicted
        report[f"{precision}_onnx_test_top1"] = round(float((predicted == labels).mean()), 4)
        report[f"{precision}_size_MB"] = round(path.stat().st_size / 2**20, 3)
    for runtime in runtimes():
        for precision, path in (("fp32", fp32), ("int8", int8)):
            runner = OnnxRunner(path, runtime)
            report[f"{precision}_{runtime}_ms"] = round(runner.latency_ms((1, *input_shape)), 4)
            if runtime != "onnxruntime":
                predicted, _ = predictions(runner, test_batches())
                agreement = float((predicted == reference[precision]).mean())
                report[f"{precision}_{runtime}_agreement"] = round(agreement, 4)
    return report
