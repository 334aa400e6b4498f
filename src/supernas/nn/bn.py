"""BatchNorm recalibration of a child cut out of a supernet.

Shared BN statistics belong to no child in particular, so a child's statistics are recomputed on
training batches before it is evaluated or exported. We reset each BN and let it accumulate a
cumulative average (``momentum=None``) in train mode, as AttentiveNAS does; note that PyTorch
stores the *unbiased* batch variance in ``running_var``.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


@torch.no_grad()
def recalibrate_bn(
    model: nn.Module, batches: Iterable, device: torch.device | str = "cpu"
) -> nn.Module:
    """Recomputes every BN's running statistics of ``model`` from ``batches`` (images or pairs)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m, m.momentum) for m in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
    was_training = model.training
    model.train()
    try:
        for batch in batches:
            images = batch[0] if isinstance(batch, (list, tuple)) else batch
            model(images.to(device))
    finally:
        for norm, momentum in saved:
            norm.momentum = momentum
        model.train(was_training)
    return model
