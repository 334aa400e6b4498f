"""Export a standalone model so that it runs without supernas, and check every copy.

Formats: ``state-dict`` (safetensors weights), ``torchscript`` (traced; deprecated by PyTorch
but still what many deployment stacks load), ``torch-export`` (a ``torch.export`` program,
``.pt2``), ``onnx`` (run by onnxruntime) and ``onnx-int8`` (its static int8 quantization,
`supernas.runtimes`). Each file is written atomically, read back and run
at two batch sizes against the PyTorch model in eval mode; a copy that disagrees by more than
`TOLERANCE` raises `ExportError` with the gap. The caller's model is left untouched.

The ONNX graph is `supernas.runtimes.onnx_graph`'s: BatchNorm folded, a dynamic batch axis.
"""

from __future__ import annotations

import copy
import importlib.util
import io
import math
import tempfile
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TypedDict

import torch
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes
from torch import Tensor, nn

from supernas.errors import ExportError, first_line
from supernas.runtimes import onnx_graph
from supernas.train.checkpoint import atomic_write_bytes

FORMATS = ("onnx", "onnx-int8", "torchscript", "torch-export", "state-dict")
FILENAMES = {
    "onnx": "model.onnx",
    "onnx-int8": "model.int8.onnx",
    "torchscript": "model.torchscript.pt",
    "torch-export": "model.pt2",
    "state-dict": "model.safetensors",
}
TOLERANCE = 1e-4  # max |difference| / max(1, max |output|)
NEEDS = {"onnx": ("onnx", "onnxruntime"), "onnx-int8": ("onnx", "onnxruntime")}


def check_installed(formats: Iterable[str]) -> None:
    """Refuses a format whose packages are missing before a run trains, not after it.

    Raises:
        ExportError: a package a format needs is not installed.
    """
    for name in formats:
        missing = [module for module in NEEDS.get(name, ()) if not importlib.util.find_spec(module)]
        if missing:
            raise ExportError(
                f"export {name} needs {' and '.join(missing)}: pip install 'supernas[export]' "
                "or drop it from the recipe's export list"
            )


class ExportResult(TypedDict):
    path: str  # a string so that summaries stay JSON
    max_rel_diff: float  # largest gap seen over both checked batch sizes


def export_model(
    model: nn.Module,
    example_input: Tensor,
    out_dir: Path,
    formats: Sequence[str],
    metadata: dict[str, str] | None = None,
    calibration: Iterable[Tensor] = (),
) -> dict[str, ExportResult]:
    """Writes each of ``formats`` into ``out_dir`` and checks it against ``model``.

    ``example_input`` is one batch at the model's resolution; the copies are checked on it and
    on a batch twice its size, so a batch size baked into a graph is caught here. Every format
    carries ``metadata`` (ONNX metadata properties, safetensors header, TorchScript and
    torch.export extra files): what a deployment reads back.

    ``onnx-int8`` quantizes the fp32 ONNX export (written too) with the input batches of
    ``calibration`` (`supernas.runtimes`); its gap to PyTorch is reported, not bounded.

    Returns:
        ``{"onnx": {"path": ".../model.onnx", "max_rel_diff": 3.1e-07}, ...}``
    """
    unknown = [name for name in formats if name not in FORMATS]
    if unknown:
        raise ExportError(f"unknown export format {unknown[0]!r}; choose from {', '.join(FORMATS)}")
    if "onnx-int8" in formats and "onnx" not in formats:
        formats = ["onnx", *formats]  # the int8 model is quantized from the fp32 one
    model = copy.deepcopy(model).cpu().eval()
    example = example_input.detach().cpu()

    def int8(model: nn.Module, example: Tensor, path: Path, metadata: dict[str, str]) -> float:
        return export_onnx_int8(model, example, path, metadata, calibration)

    writers: dict[str, Callable[[nn.Module, Tensor, Path, dict[str, str]], float]] = {
        "onnx": export_onnx,
        "onnx-int8": int8,
        "torchscript": export_torchscript,
        "torch-export": export_program,
        "state-dict": export_state_dict,
    }
    results: dict[str, ExportResult] = {}
    for name in dict.fromkeys(formats):  # drops repeats, keeps the order
        path = Path(out_dir) / FILENAMES[name]
        gap = writers[name](model, example, path, metadata or {})
        results[name] = {"path": str(path), "max_rel_diff": gap}
    return results


def export_state_dict(
    model: nn.Module, example: Tensor, path: Path, metadata: dict[str, str] | None = None
) -> float:
    """Weights and buffers as safetensors, ``metadata`` in its header; reloaded and compared
    bit for bit."""
    # clone: safetensors refuses tensors that share storage (views cut out of a supernet)
    # contiguous: safetensors stores row-major tensors; a channels-last weight is not one
    state = model.state_dict().items()
    tensors = {
        key: value.detach().clone(memory_format=torch.contiguous_format) for key, value in state
    }
    data = safetensors_bytes(tensors, metadata=metadata or None)
    atomic_write_bytes(path, lambda file: file.write(data))
    reloaded = load_file(path)
    for key, tensor in tensors.items():
        if not torch.equal(reloaded[key], tensor):
            raise ExportError(f"{path}: tensor {key!r} changed when read back")
    return 0.0


def export_torchscript(
    model: nn.Module, example: Tensor, path: Path, metadata: dict[str, str] | None = None
) -> float:
    """A traced TorchScript module; ``metadata`` as its extra files."""
    with warnings.catch_warnings():
        # jit is deprecated but still widely loaded; a baked-in shape is caught by the check
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        with torch.no_grad():
            traced = torch.jit.trace(model, example, check_trace=False)  # compared below
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer, _extra_files=metadata or {})
        atomic_write_bytes(path, lambda file: file.write(buffer.getvalue()))
        reloaded = torch.jit.load(str(path))
    return _compare("TorchScript", model, example, reloaded)


def export_program(
    model: nn.Module, example: Tensor, path: Path, metadata: dict[str, str] | None = None
) -> float:
    """A ``torch.export`` program with a dynamic batch axis; ``metadata`` as its extra files."""
    # a batch of one would make torch.export specialise the batch axis to 1
    traced_on = _bigger_batch(example)
    try:
        program = torch.export.export(
            model, (traced_on,), dynamic_shapes=({0: torch.export.Dim("batch", min=1)},)
        )
    except Exception as error:  # torch raises many types for untraceable code
        raise ExportError(f"torch.export failed: {first_line(error)}") from error
    buffer = io.BytesIO()
    torch.export.save(program, buffer, extra_files=metadata or {})
    atomic_write_bytes(path, lambda file: file.write(buffer.getvalue()))
    return _compare("torch.export", model, example, torch.export.load(str(path)).module())


def export_onnx(
    model: nn.Module, example: Tensor, path: Path, metadata: dict[str, str] | None = None
) -> float:
    try:
        import onnx
        import onnxruntime
    except ImportError:
        raise ExportError(
            "ONNX export needs onnx and onnxruntime: pip install 'supernas[export]'"
        ) from None
    proto = onnx.load_from_string(onnx_graph(model, example))
    onnx.helper.set_model_props(proto, metadata or {})
    atomic_write_bytes(path, lambda file: file.write(proto.SerializeToString()))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def run(batch: Tensor) -> Tensor:
        try:
            (logits,) = session.run(None, {"images": batch.numpy()})
        except Exception as error:  # onnxruntime's errors have no common public base
            raise ExportError(
                f"ONNX model fails at batch size {len(batch)}: {first_line(error)}"
            ) from error
        return torch.from_numpy(logits)

    return _compare("ONNX", model, example, run)


def export_onnx_int8(
    model: nn.Module,
    example: Tensor,
    path: Path,
    metadata: dict[str, str],
    calibration: Iterable[Tensor],
) -> float:
    """The static int8 quantization of the ONNX export beside ``path`` (``model.onnx``)."""
    import onnx

    from supernas.runtimes import OnnxRunner, quantize_onnx

    batches = list(calibration)
    if not batches:
        raise ExportError("an int8 export needs calibration batches of the training split")
    fp32 = path.with_name(FILENAMES["onnx"])
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        quantized = Path(tmp) / path.name
        quantize_onnx(fp32, quantized, batches)
        proto = onnx.load(str(quantized))
    onnx.helper.set_model_props(proto, {**metadata, "supernas.precision": "int8"})
    atomic_write_bytes(path, lambda file: file.write(proto.SerializeToString()))
    runner = OnnxRunner(path)
    # On real images: random ones lie outside the calibrated ranges, where int8 clips.
    real = batches[0][: len(example)]
    return _compare("int8 ONNX", model, real, lambda x: torch.from_numpy(runner(x.numpy())), None)


def _compare(
    name: str,
    model: nn.Module,
    example: Tensor,
    run_copy: Callable,
    tolerance: float | None = TOLERANCE,
) -> float:
    """The largest relative gap between ``model`` and its copy over two batch sizes; above
    ``tolerance`` (None: no bound, but finite) an `ExportError`."""
    gap = 0.0
    for batch in (example, _bigger_batch(example)):
        with torch.no_grad():
            reference, output = model(batch), run_copy(batch)
        if output.shape != reference.shape:
            raise ExportError(
                f"{name} output at batch size {len(batch)} has shape {tuple(output.shape)}, "
                f"PyTorch {tuple(reference.shape)}"
            )
        scale = max(reference.abs().max().item(), 1.0)
        batch_gap = (reference - output).abs().max().item() / scale
        if not batch_gap <= (math.inf if tolerance is None else tolerance):  # NaN fails too
            raise ExportError(
                f"{name} output at batch size {len(batch)} differs from PyTorch by "
                f"{batch_gap:.2e} (tolerance {tolerance:.0e}, relative to max(1, max |output|))"
            )
        gap = max(gap, batch_gap)
    return gap


def _bigger_batch(example: Tensor) -> Tensor:
    """The example followed by its reverse: twice the batch size, different rows."""
    return torch.cat([example, example.flip(0)])
