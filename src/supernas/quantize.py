"""int8 ONNX by static quantization, and ONNX models run in each installed runtime.

`quantize_onnx` quantizes an exported fp32 ONNX model with ONNX Runtime's static quantization
in QDQ format (a QuantizeLinear / DequantizeLinear pair around every quantized tensor, the form
both ONNX Runtime and OpenVINO run as int8): weights int8 per output channel, activations uint8
per tensor (the u8s8 pairing x86 CPUs multiply fastest, with VNNI where the CPU has it), their
ranges calibrated by min-max on training batches the way the model sees them at inference.

`OnnxRunner` runs an ONNX file in ONNX Runtime or OpenVINO with a fixed number of threads, the
way a deployment would; `runtimes()` names those installed. Both come with the ``deploy`` extra.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
from torch import Tensor

from supernas.errors import ExportError

RUNTIMES = ("onnxruntime", "openvino")
EXTRA = "pip install 'supernas[deploy]'"


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
