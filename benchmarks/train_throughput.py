"""Training throughput of supernas's loop against a hand-written PyTorch loop.

For the smallest and the biggest child of ``fmnist_small``: images/s of ``run_loop`` with a
``ClassifierTask`` (metrics, checkpoints, schedule, clipping) and of a plain loop doing the same
arithmetic (same optimiser groups, label smoothing, clipping, LR schedule) over the same batches.
Both run in this process, interleaved, so the ratio is measured under the same conditions
(freed memory kept for reuse, as in a run: the setting is the process's, so both loops have it).
Prints one JSON line last.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from _common import hardware

from supernas.data import DataConfig, build_data
from supernas.nn import build_model
from supernas.space import biggest, get_space, smallest
from supernas.train import ClassifierTask, LoopConfig, TrainConfig, run_loop
from supernas.train.classifier import build_optimizer
from supernas.train.host import keep_freed_memory
from supernas.train.schedules import cosine_with_warmup


def plain_loop(model, loader, cfg: TrainConfig) -> float:
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)  # the settings the supernas loop uses
    optimizer = build_optimizer(model, cfg, cfg.lr)
    schedule = cosine_with_warmup(cfg.lr, len(loader), 0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    model.train()
    start = time.perf_counter()
    for step, (images, labels) in enumerate(loader, start=1):
        images = images.contiguous(memory_format=memory_format)
        loss = F.cross_entropy(model(images), labels, label_smoothing=cfg.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad_norm)
        optimizer.step()
        scheduler.step()
        if step % 10 == 0:
            loss.item()  # the one read-back per record the supernas loop makes (log_every 10)
    return len(loader) * loader.batch_size / (time.perf_counter() - start)


def supernas_loop(model, loader, eval_loader, cfg: TrainConfig) -> float:
    task = ClassifierTask(model, cfg, len(loader), eval_loader, torch.device("cpu"), 128)
    task.evaluate = lambda: {}  # time training only, as the plain loop does
    with tempfile.TemporaryDirectory() as run_dir:
        start = time.perf_counter()
        run_loop(
            task,
            loader,
            LoopConfig(epochs=1, checkpoint_every=10**9, progress=False),
            Path(run_dir),
        )
        elapsed = time.perf_counter() - start
    return len(loader) * loader.batch_size / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=60, help="training steps per measurement")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats (median)")
    args = parser.parse_args()
    kept = keep_freed_memory()
    space = get_space("fmnist_small")
    results = []
    for label, arch in (("smallest", smallest(space)), ("biggest", biggest(space))):
        data = build_data(
            DataConfig(name="synthetic", synthetic_train=args.steps * 160, batch_size=128),
            resolution=arch.resolution,
        )
        loader = data.loader(data.weight, train=True, seed=0)
        eval_loader = data.loader(data.arch, train=False, seed=0)
        cfg = TrainConfig(epochs=1)
        ours, plain = [], []
        for _ in range(args.repeats):
            torch.manual_seed(0)
            plain.append(plain_loop(build_model(space, arch), loader, cfg))
            torch.manual_seed(0)
            ours.append(supernas_loop(build_model(space, arch), loader, eval_loader, cfg))
        ours_ips, plain_ips = sorted(ours)[len(ours) // 2], sorted(plain)[len(plain) // 2]
        results.append(
            {
                "child": label,
                "arch": str(arch),
                "images_per_s": round(ours_ips, 1),
                "plain_images_per_s": round(plain_ips, 1),
                "overhead": round(plain_ips / ours_ips - 1, 4),
            }
        )
    print(
        json.dumps(
            {
                "benchmark": "train_throughput",
                "hardware": hardware(),
                "keep_freed_memory": kept,
                "steps": len(loader),
                "results": results,
                "max_overhead": max(r["overhead"] for r in results),
            }
        )
    )


if __name__ == "__main__":
    main()
