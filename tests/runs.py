"""Helpers for tests that run the CLI in a subprocess on small synthetic data."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from supernas.space import get_space, smallest

SYNTHETIC = [
    "data.name=synthetic",
    "data.synthetic_train=1280",
    "data.synthetic_test=256",
    "data.batch_size=32",
    "device=cpu",
    "export=[state-dict]",
]


def cli_env() -> dict[str, str]:
    # One thread: CPU results are then bitwise reproducible between processes.
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def supernas(*args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "supernas", *args]
    return subprocess.run(
        command, capture_output=True, text=True, env=cli_env(), check=check, timeout=timeout
    )


def overrides(*pairs: str) -> list[str]:
    result = []
    for pair in (*SYNTHETIC, *pairs):
        result += ["--set", pair]
    return result


def write_smallest_arch(path: Path) -> Path:
    path.write_text(smallest(get_space("fmnist_small")).to_json())
    return path


def kill_after(
    command: list[str], marker: Path, timeout: float = 240, signum: int = signal.SIGKILL
) -> tuple[int, str]:
    """Starts ``command``, sends it ``signum`` as soon as ``marker`` (a checkpoint) exists,
    and returns its exit code and stderr."""
    process = subprocess.Popen(
        command, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + timeout
    while not marker.exists():
        assert process.poll() is None, process.stderr.read()
        assert time.monotonic() < deadline, f"{marker} was never written"
        time.sleep(0.01)
    os.kill(process.pid, signum)
    _, err = process.communicate(timeout=timeout)
    return process.returncode, err


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rank_env(rank: int, port: int, world_size: int = 2) -> None:
    """The variables torchrun gives process ``rank`` of a group on this machine."""
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(world_size),
        LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
