"""The task of training one standalone model from scratch (the last step of every search)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader

from supernas.config import check_ranges
from supernas.errors import ConfigError
from supernas.train.checkpoint import unwrap
from supernas.train.distributed import DistEnv, wrap_ddp
from supernas.train.schedules import cosine_with_warmup

OPTIMIZERS = ("sgd", "adamw")
REFERENCE_BATCH = 128  # the batch size ``TrainConfig.lr`` is given for


@dataclass(frozen=True)
class TrainConfig:
    """Training from scratch; the defaults reach ~90% on Fashion-MNIST in a few epochs."""

    epochs: int = 4
    lr: float = 0.1  # peak rate for a total batch of 128; scaled linearly with the total batch
    optimizer: str = "sgd"  # "sgd" (Nesterov momentum) or "adamw"
    momentum: float = 0.9  # SGD only
    weight_decay: float = 5e-5  # not applied to BatchNorm parameters and biases
    label_smoothing: float = 0.1
    warmup_epochs: float = 0.2  # linear warm-up, then a cosine down to 0
    clip_grad_norm: float | None = 5.0  # max global gradient norm; None: no clipping
    ema_decay: float | None = None  # e.g. 0.999: keep and evaluate an EMA of the weights
    amp: bool = True  # bf16 autocast, on CUDA only
    channels_last: bool = True  # memory format on CPU and CUDA (CPU: a step in 0.52x the time)
    cudnn_benchmark: bool = True  # CUDA: cuDNN times its conv algorithms once per input shape
    log_every: int = 10  # steps between metric records
    checkpoint_every: int = 200  # steps between mid-epoch checkpoints

    def __post_init__(self) -> None:
        check_ranges(
            "train",
            self,
            positive=("epochs", "lr", "clip_grad_norm", "log_every", "checkpoint_every"),
            non_negative=("weight_decay", "warmup_epochs"),
            fraction=("momentum", "label_smoothing", "ema_decay"),
        )
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer {self.optimizer!r} is not one of {', '.join(OPTIMIZERS)}")
        if self.ema_decay is not None and not 0 <= self.ema_decay < 1:
            raise ConfigError(f"ema_decay {self.ema_decay} is not in [0, 1)")
        if self.lr <= 0 or self.warmup_epochs < 0 or self.warmup_epochs > self.epochs:
            raise ConfigError(
                f"lr {self.lr} must be positive and warmup_epochs {self.warmup_epochs} "
                f"within epochs {self.epochs}"
            )


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on conv and linear weights only.

    Decay pulls BatchNorm scales and biases toward 0, which shrinks activations rather than
    regularising; every tensor of one dimension is one of those.
    """
    decay, exempt = [], []
    for parameter in model.parameters():
        if parameter.requires_grad:
            (decay if parameter.dim() > 1 else exempt).append(parameter)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": exempt, "weight_decay": 0.0},
    ]


def build_optimizer(model: nn.Module, cfg: TrainConfig, lr: float) -> torch.optim.Optimizer:
    """SGD with Nesterov momentum, or AdamW, over `param_groups`."""
    groups = param_groups(model, cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0)


@torch.no_grad()
def evaluate_model(
    model: nn.Module, loader: DataLoader, device: torch.device, amp: bool = False
) -> dict[str, float]:
    """Top-1 accuracy and mean cross-entropy of ``model`` over ``loader``."""
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
    """Cross-entropy training of ``model``: SGD or AdamW, cosine LR, optional EMA and AMP.

    Under DDP every rank holds one; ``batch_size`` is the per-process batch, so the learning
    rate follows the total batch ``batch_size * world_size``.
    """

    def __init__(
        self,
        model: nn.Module,
        cfg: TrainConfig,
        steps_per_epoch: int,
        eval_loader: DataLoader,
        device: torch.device,
        batch_size: int,
        env: DistEnv | None = None,
    ) -> None:
        env = env or DistEnv()
        self.cfg, self.device, self.eval_loader = cfg, device, eval_loader
        self.cuda = device.type == "cuda"
        if self.cuda and cfg.cudnn_benchmark:
            # A trained arch sees one input shape (two with a short last batch), so the
            # autotuning is paid once; a search's changing shapes would pay it again and again.
            torch.backends.cudnn.benchmark = True
        self.model = model.to(device)
        if cfg.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.ema = None
        if cfg.ema_decay is not None:
            # use_buffers: the EMA averages BatchNorm statistics too, so it can be evaluated.
            self.ema = AveragedModel(
                self.model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True
            )
        self.ddp = wrap_ddp(self.model, env, device)
        schedule = cosine_with_warmup(
            cfg.lr * batch_size * env.world_size / REFERENCE_BATCH,
            cfg.epochs * steps_per_epoch,
            round(cfg.warmup_epochs * steps_per_epoch),
        )
        self.optimizer = build_optimizer(self.model, cfg, schedule.lr0)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, schedule)

    def train_step(self, batch: Any, step: int) -> dict[str, float | Tensor]:
        images, labels = (tensor.to(self.device, non_blocking=True) for tensor in batch)
        if self.cfg.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        self.ddp.train()
        with torch.autocast(self.device.type, torch.bfloat16, enabled=self.cfg.amp and self.cuda):
            logits = self.ddp(images)
        loss = F.cross_entropy(logits.float(), labels, label_smoothing=self.cfg.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.clip_grad_norm is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip_grad_norm)
        lr = self.scheduler.get_last_lr()[0]  # this step's rate, before the scheduler moves on
        self.optimizer.step()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        return {"train/loss": loss.detach(), "lr": lr}

    @property
    def eval_model(self) -> nn.Module:
        """The EMA when there is one (it is what gets evaluated and exported), else the model."""
        return self.ema.module if self.ema is not None else unwrap(self.model)

    def evaluate(self) -> dict[str, float]:
        return evaluate_model(self.eval_model, self.eval_loader, self.device, self.cfg.amp)

    def state_dict(self) -> dict[str, Any]:
        """Model, optimiser, scheduler and EMA; the loop adds the global RNGs."""
        state: dict[str, Any] = {
            "model": unwrap(self.model).state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
        }
        if self.ema is not None:
            # The EMA's weights under "module" load straight into the standalone model.
            state["ema"] = {"module": self.ema.module.state_dict(), "count": self.ema.n_averaged}
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        unwrap(self.model).load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.ema is not None:
            self.ema.module.load_state_dict(state["ema"]["module"])
            self.ema.n_averaged.copy_(state["ema"]["count"])
