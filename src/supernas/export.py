"""Export a standalone model so that it runs without supernas.

Formats: ``state-dict`` (safetensors weights), ``torchscript`` (traced, reloaded and compared;
deprecated by PyTorch but still what many deployment stacks load), ``torch-export`` (a
``torch.export`` program, ``.pt2``) and ``onnx`` (checked with onnxruntime against PyTorch). Every file is
written atomically; a format that disagrees with PyTorch raises `ExportError` with the gap.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import save as safetensors_bytes
from torch import nn

from supernas.errors import ExportError
from supernas.train.checkpoint import atomic_write_bytes

FORMATS = ("onnx", "torchscript", "torch-export", "state-dict")
TOLERANCE = 1e-4  # max |difference| relative to the largest |output|


def _check_close(name: str, reference: torch.Tensor, other: torch.Tensor) -> float:
    scale = max(reference.abs().max().item(), 1.0)
    gap = (reference - torch.as_tensor(other)).abs().max().item() / scale
    if gap > TOLERANCE:
        raise ExportError(f"{name} output differs from PyTorch by {gap:.2e} (tolerance {TOLERANCE})")
    return gap


def export_state_dict(model: nn.Module, path: Path) -> float:
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(path, lambda file: file.write(safetensors_bytes(tensors)))
    return 0.0


def export_torchscript(model: nn.Module, example: torch.Tensor, path: Path) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # jit is deprecated, still widely loaded
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # widths are fixed: fine
        traced = torch.jit.trace(model, example)
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer)
        atomic_write_bytes(path, lambda file: file.write(buffer.getvalue()))
        reloaded = torch.jit.load(str(path))
    with torch.no_grad():
        return _check_close("TorchScript", model(example), reloaded(example))


def export_program(model: nn.Module, example: torch.Tensor, path: Path) -> float:
    batch = torch.export.Dim("batch", min=1)
    program = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    atomic_write_bytes(path, lambda file: file.write(buffer.getvalue()))
    reloaded = torch.export.load(str(path)).module()
    with torch.no_grad():
        return _check_close("torch.export", model(example), reloaded(example))


def export_onnx(model: nn.Module, example: torch.Tensor, path: Path) -> float:
    try:
        import onnxruntime
    except ImportError:
        raise ExportError("ONNX export needs onnx and onnxruntime: pip install 'supernas[export]'") from None
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # widths are fixed: fine
        torch.onnx.export(
            model, (example,), buffer, input_names=["images"], output_names=["logits"],
            dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}}, dynamo=False,
        )
    atomic_write_bytes(path, lambda file: file.write(buffer.getvalue()))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    gap = 0.0
    for batch in (example, torch.cat([example, example.flip(0)])):
        (logits,) = session.run(None, {"images": batch.numpy()})
        with torch.no_grad():
            gap = max(gap, _check_close("ONNX", model(batch), logits))
    return gap


def export_model(
    model: nn.Module, example: torch.Tensor, out_dir: Path, formats: Sequence[str]
) -> dict[str, dict]:
    """Writes each format into ``out_dir``; returns ``{format: {"path", "max_rel_diff"}}``."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ExportError(f"unknown export format {unknown[0]!r}; choose from {', '.join(FORMATS)}")
    model = model.cpu().eval()
    example = example.cpu()
    writers = {
        "state-dict": ("model.safetensors", lambda p: export_state_dict(model, p)),
        "torchscript": ("model.torchscript.pt", lambda p: export_torchscript(model, example, p)),
        "torch-export": ("model.pt2", lambda p: export_program(model, example, p)),
        "onnx": ("model.onnx", lambda p: export_onnx(model, example, p)),
    }
    results = {}
    for name in formats:
        filename, write = writers[name]
        path = Path(out_dir) / filename
        results[name] = {"path": str(path), "max_rel_diff": write(path)}
    return results
