"""Evaluating children of a supernet: slice, recalibrate BN, measure top-1 accuracy."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from supernas.nn.bn import recalibrate_bn
from supernas.nn.standalone import extract_child
from supernas.nn.supernet import Supernet, resize
from supernas.space.arch import Arch


@torch.no_grad()
def top1(model: nn.Module, batches: Iterable, device: torch.device, resolution: int) -> float:
    """Top-1 accuracy (a fraction) of ``model`` on ``batches`` resized to ``resolution``."""
    model.eval()
    correct = total = 0
    for images, labels in batches:
        logits = model(resize(images.to(device), resolution))
        correct += (logits.argmax(1) == labels.to(device)).sum().item()
        total += labels.numel()
    return correct / max(total, 1)


def evaluate_child(
    supernet: Supernet, arch: Arch, calibration: Iterable, batches: Iterable, device: torch.device
) -> float:
    """Top-1 of ``arch`` cut from the supernet, its BN statistics recomputed on ``calibration``."""
    child = extract_child(supernet, arch)
    images = (resize(x.to(device), arch.resolution) for x, _ in calibration)
    recalibrate_bn(child, images, device)
    return top1(child, batches, device, arch.resolution)
