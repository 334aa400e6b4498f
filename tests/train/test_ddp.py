"""Two processes on gloo (CPU): DDP keeps the ranks' weights identical, and rank 0 alone writes."""

import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from train_fakes import classifier_task, train_loader

from runs import free_port, rank_env
from supernas.errors import RankError
from supernas.train import LoopConfig, cleanup, init_distributed, read_metrics, run_loop, unwrap
from supernas.train.distributed import any_rank, rank_failures

WORLD_SIZE = 2


def _worker(rank: int, port: int, out_dir: str) -> None:
    rank_env(rank, port, WORLD_SIZE)
    torch.set_num_threads(1)
    env = init_distributed("cpu")
    assert dist.get_backend() == "gloo"
    loader = train_loader("distributed", env)
    # A different seed per rank: only DDP's broadcast of rank 0's weights makes them equal.
    task = classifier_task(len(loader), env, init_seed=rank)
    cfg = LoopConfig(epochs=2, checkpoint_every=2, log_every=1, progress=False)
    run_loop(task, loader, cfg, Path(out_dir) / "run", env=env)
    parameters = [p.detach() for p in unwrap(task.model).parameters()]
    torch.save(parameters, Path(out_dir) / f"rank{rank}.pt")
    cleanup(env)


def test_two_ranks_end_with_identical_weights(tmp_path):
    mp.spawn(_worker, args=(free_port(), str(tmp_path)), nprocs=WORLD_SIZE, join=True)
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD_SIZE))
    assert all(torch.equal(a, b) for a, b in zip(rank0, rank1, strict=True))
    initial = [p.detach() for p in classifier_task(1).model.parameters()]  # rank 0's start
    assert not all(torch.equal(a, b) for a, b in zip(rank0, initial, strict=True)), "no training"
    steps = [r["step"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if "lr" in r]
    assert steps == list(range(1, 11)), "two epochs of 5 steps per rank, written once"
    assert len(list((tmp_path / "run" / "tb").glob("events.*"))) == 1, "rank 0 alone writes"


def _hung_worker(rank: int, port: int, out_dir: str) -> None:
    rank_env(rank, port, WORLD_SIZE)
    env = init_distributed("cpu", timeout_s=2)
    if rank == 1:  # stops answering, as a stopped or stuck process would
        time.sleep(4)
        return
    start = time.monotonic()
    try:
        with rank_failures(env, 2):
            any_rank(False, env)
    except RankError as error:
        Path(out_dir, "error.txt").write_text(f"{time.monotonic() - start:.1f} {error}")
    finally:  # as the api does: a process group left with a timed-out collective aborts at exit
        cleanup(env)


def test_a_hung_rank_ends_the_run_at_the_timeout_with_one_line(tmp_path):
    mp.spawn(_hung_worker, args=(free_port(), str(tmp_path)), nprocs=WORLD_SIZE, join=True)
    seconds, message = (tmp_path / "error.txt").read_text().split(" ", 1)
    assert float(seconds) < 6
    assert message == (
        "rank 0: another process of the run did not answer within timeout_s = 2 s (hung or "
        "dead); resume from the last checkpoint with --resume"
    )
