"""Classifying image files the way a trained model expects: its preprocessing contract.

A finished run writes ``preprocessing.json`` (and an ONNX export carries the same JSON in its
metadata under ``supernas.preprocessing``): channels, the shorter-side resize, the centre crop,
mean, std and the class names in label order. `preprocess` applies exactly that with
torchvision, so a model is used outside supernas by reading the contract, not the source.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import Tensor

from supernas.data.transforms import eval_view
from supernas.errors import ConfigError, DataError

METADATA_KEY = "supernas.preprocessing"
CONTRACT_KEYS = ("channels", "resize_shorter_side", "center_crop", "mean", "std", "classes")


@dataclass(frozen=True)
class Prediction:
    path: str
    label: int
    name: str  # the class name
    probability: float


CHANNELS = {"L": 1, "RGB": 3}


def check_contract(contract: Any, where: str) -> dict[str, Any]:
    """The contract, or a one-line error naming its source when a key is missing or a value
    cannot be what the model was trained with."""
    if not isinstance(contract, dict):
        raise ConfigError(f"{where}: the preprocessing is not a mapping")
    missing = [key for key in CONTRACT_KEYS if key not in contract]
    if missing:
        raise ConfigError(f"{where}: the preprocessing has no {missing[0]!r}")
    channels = contract["channels"]
    if channels not in CHANNELS:
        raise ConfigError(f"{where}: preprocessing channels {channels!r} is not L or RGB")
    for key in ("mean", "std"):
        values = contract[key]
        if not _numbers(values) or len(values) != CHANNELS[channels]:
            raise ConfigError(
                f"{where}: preprocessing {key} {values!r} is not {CHANNELS[channels]} number(s) "
                f"for channels {channels}"
            )
    for key in ("resize_shorter_side", "center_crop"):
        if (
            isinstance(contract[key], bool)
            or not isinstance(contract[key], int)
            or contract[key] < 1
        ):
            raise ConfigError(f"{where}: preprocessing {key} {contract[key]!r} is not a size")
    classes = contract["classes"]
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        raise ConfigError(f"{where}: preprocessing classes {classes!r} is not a list of names")
    return contract


def _numbers(values: Any) -> bool:
    return isinstance(values, list) and all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in values
    )


def check_fits(contract: dict[str, Any], in_channels: Any, num_classes: Any, where: str) -> None:
    """Refuses a contract whose channels or classes are not the model's (a file edited or
    taken from another run), before an image goes in; a size an ONNX graph leaves symbolic
    (not an int) is not compared."""
    channels = CHANNELS[contract["channels"]]
    if isinstance(in_channels, int) and channels != in_channels:
        raise ConfigError(
            f"{where}: preprocessing channels {contract['channels']} give {channels} channel(s), "
            f"the model takes {in_channels}"
        )
    if isinstance(num_classes, int) and len(contract["classes"]) != num_classes:
        raise ConfigError(
            f"{where}: the preprocessing names {len(contract['classes'])} classes, the model "
            f"has {num_classes}"
        )


def onnx_contract(path: Path) -> dict[str, Any]:
    """The preprocessing an ONNX export of supernas carries in its metadata."""
    try:
        import onnx
    except ImportError:
        raise ConfigError("an ONNX model needs onnx: pip install 'supernas[export]'") from None
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as error:  # onnx raises its DecodeError and others for a damaged file
        raise ConfigError(f"{path} is not a readable ONNX model: {error}") from None
    props = {prop.key: prop.value for prop in model.metadata_props}
    if METADATA_KEY not in props:
        raise ConfigError(f"{path} carries no {METADATA_KEY} metadata (not a supernas export?)")
    try:
        contract = json.loads(props[METADATA_KEY])
    except ValueError:
        raise ConfigError(f"{path}: its {METADATA_KEY} metadata is not JSON") from None
    return check_contract(contract, str(path))


def preprocess(paths: list[Path], contract: dict[str, Any]) -> Tensor:
    """Image files as the (N, C, H, W) float batch the model expects."""
    view = eval_view(
        contract["resize_shorter_side"], contract["center_crop"], contract["mean"], contract["std"]
    )
    images = []
    for path in paths:
        try:
            with Image.open(path) as image:
                images.append(view(image.convert(contract["channels"])))
        except (OSError, ValueError) as err:
            raise DataError(f"cannot read image {path}: {str(err).splitlines()[0]}") from None
    return torch.stack(images)


def predictions(paths: list[Path], logits: Tensor, classes: list[str]) -> list[Prediction]:
    probabilities = logits.float().softmax(dim=1)
    best, labels = probabilities.max(dim=1)
    return [
        Prediction(str(path), int(label), classes[int(label)], float(p))
        for path, label, p in zip(paths, labels, best, strict=True)
    ]
