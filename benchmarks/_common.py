"""What every benchmark reports about the machine it ran on."""

import os
import platform

import torch


def hardware() -> str:
    cpu = platform.processor() or platform.machine()
    threads = torch.get_num_threads()
    return f"{cpu}, {os.cpu_count()} cores, {threads} torch threads, torch {torch.__version__}"


def run_kind(quick: bool, faithful: bool) -> str:
    """What a run's figures mean: the full comparison, or what ``--quick`` makes of it.

    A faithful ``--quick`` is the same comparison at a smaller size, whose figures may be read
    against the goal; an unfaithful one only checks that the script runs end to end.
    """
    if not quick:
        return "full"
    if faithful:
        return "quick: the same comparison, smaller"
    return "quick: checks the script only; its figures do not test the goal"
