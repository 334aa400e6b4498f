"""The allocator setting of CPU runs: freed memory kept for reuse instead of faulted in again."""

import platform
import subprocess
import sys

import pytest

_FAULTS = """
import resource, sys, torch
from supernas.train.host import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
def step():  # a 64 MiB activation, freed at the end of the step
    torch.empty(2**24).fill_(1.0)
for _ in range(3):  # the heap settles
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _page_faults(mode: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", _FAULTS, mode], capture_output=True, text=True, check=True
    )
    return int(done.stdout.split()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="a glibc setting")
def test_large_buffers_freed_each_step_are_reused_without_page_faults():
    """64 MiB is 16,384 pages: glibc's default maps and zeroes every one of them again at every
    step; kept, a block is reused, though now and then one is a few bytes short of aligned."""
    assert _page_faults("default") > 10 * 15_000
    assert _page_faults("keep") < 4 * 16_384
