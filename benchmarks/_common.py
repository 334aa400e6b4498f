"""What every benchmark reports about the machine it ran on."""

import os
import platform

import torch


def hardware() -> str:
    cpu = platform.processor() or platform.machine()
    threads = torch.get_num_threads()
    return f"{cpu}, {os.cpu_count()} cores, {threads} torch threads, torch {torch.__version__}"
