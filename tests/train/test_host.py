"""The allocator setting of CPU runs: freed memory kept for reuse instead of faulted in again."""

import platform
import subprocess
import sys

import pytest

from supernas.train.host import keep_freed_memory

_FAULTS = """
import ctypes, resource, sys, torch
# Transparent huge pages ("always" on many distributions) would fault 64 MiB in 2 MiB at a
# time, and the default's count would fall far below the bound: count 4 KiB pages only.
assert ctypes.CDLL(None).prctl(41, 1, 0, 0, 0) == 0  # PR_SET_THP_DISABLE
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


def test_a_limit_beyond_a_c_int_is_refused_not_wrapped():
    """2**32 would reach mallopt as 0, which maps every block afresh: the opposite."""
    with pytest.raises(ValueError, match="not in 1.."):
        keep_freed_memory(1 << 32)
