"""The task of training one standalone model from scratch (the final step of every search)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader

from supernas.train.checkpoint import unwrap
from supernas.train.distributed import DistEnv, wrap_ddp
from supernas.train.schedules import cosine_with_warmup


@dataclass(frozen=True)
class TrainConfig:
    """Training from scratch; the demo's defaults reach ~90% on Fashion-MNIST in a few epochs."""

    epochs: int = 4
    lr: float = 0.1  # peak learning rate at batch_size 128; scaled linearly with the batch
    optimizer: str = "sgd"  # "sgd" (Nesterov momentum) or "adamw"
    momentum: float = 0.9
    weight_decay: float = 5e-5  # not applied to BatchNorm and bias parameters
    label_smoothing: float = 0.1
    warmup_epochs: float = 0.2
    clip_grad_norm: float | None = 5.0  # None turns clipping off
    ema_decay: float | None = None  # e.g. 0.999: evaluate an exponential moving average
    amp: bool = True  # bf16 autocast, on CUDA only
    channels_last: bool = True  # memory format, on CUDA only
    log_every: int = 10
    checkpoint_every: int = 200


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on conv/linear weights only; BN affine parameters and biases are exempt."""
    decay, exempt = [], []
    for parameter in model.parameters():
        if parameter.requires_grad:
            (decay if parameter.dim() > 1 else exempt).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": exempt, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, cfg: TrainConfig, lr: float) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0)


@torch.no_grad()
def evaluate_model(model: nn.Module, loader: DataLoader, device: torch.device,
                   amp: bool = False) -> dict[str, float]:
    """Top-1 accuracy and mean cross-entropy over ``loader``."""
    model.eval()
    correct = total = 0
    loss = 0.0
    for images, labels in loader:
        images, labels = images.to(device), labels.to(device)
        with torch.autocast(device.type, torch.bfloat16, enabled=amp and device.type == "cuda"):
            logits = model(images).float()
        loss += F.cross_entropy(logits, labels, reduction="sum").item()
        correct += (logits.argmax(1) == labels).sum().item()
        total += labels.numel()
    return {"val/top1": correct / max(total, 1), "val/loss": loss / max(total, 1)}


class ClassifierTask:
    """Cross-entropy training of ``model`` with SGD/AdamW, cosine LR, optional EMA and AMP."""

    def __init__(self, model: nn.Module, cfg: TrainConfig, steps_per_epoch: int,
                 eval_loader: DataLoader, device: torch.device, batch_size: int,
                 env: DistEnv = DistEnv()) -> None:
        self.cfg, self.device, self.eval_loader = cfg, device, eval_loader
        self.cuda = device.type == "cuda"
        model = model.to(device)
        if self.cuda and cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.ema = None
        if cfg.ema_decay is not None:
            self.ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay),
                                     use_buffers=True)
        self.ddp = wrap_ddp(model, env, device)
        lr = cfg.lr * batch_size * env.world_size / 128
        self.optimizer = build_optimizer(model, cfg, lr)
        total = cfg.epochs * steps_per_epoch
        warmup = int(cfg.warmup_epochs * steps_per_epoch)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, cosine_with_warmup(total, warmup)
        )

    def train_step(self, batch: Any, step: int) -> dict[str, float]:
        images, labels = (t.to(self.device, non_blocking=True) for t in batch)
        if self.cuda and self.cfg.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        self.ddp.train()
        with torch.autocast(self.device.type, torch.bfloat16, enabled=self.cfg.amp and self.cuda):
            logits = self.ddp(images)
            loss = F.cross_entropy(logits.float(), labels, label_smoothing=self.cfg.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.clip_grad_norm is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        return {"train/loss": loss.item(), "lr": self.scheduler.get_last_lr()[0]}

    @property
    def eval_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else unwrap(self.model)

    def evaluate(self) -> dict[str, float]:
        return evaluate_model(self.eval_model, self.eval_loader, self.device, self.cfg.amp)

    def state_dict(self) -> dict[str, Any]:
        state = {
            "model": unwrap(self.model).state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
        }
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        unwrap(self.model).load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
