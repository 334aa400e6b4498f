import pytest
import torch
from torch import nn

from supernas.errors import ConfigError
from supernas.train import DistEnv, init_distributed, resolve_device, wrap_ddp


def test_without_torchrun_the_run_is_one_process(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    env = init_distributed("cpu")
    assert env == DistEnv() and env.is_main and not env.distributed
    model = nn.Linear(2, 2)
    assert wrap_ddp(model, env, torch.device("cpu")) is model


def test_device_comes_from_the_config():
    assert resolve_device("cpu", DistEnv()) == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto", DistEnv()).type == expected
    with pytest.raises(ConfigError, match="'tpu' is not one of auto, cpu, cuda"):
        resolve_device("tpu", DistEnv())


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only error")
def test_cuda_without_a_gpu_is_a_config_error():
    with pytest.raises(ConfigError, match="no CUDA device"):
        resolve_device("cuda", DistEnv())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_each_rank_takes_the_gpu_of_its_local_rank():
    assert resolve_device("cuda", DistEnv(rank=3, world_size=4, local_rank=1)) == torch.device(
        "cuda", 1
    )
