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
for _ in range(2):  # 64 MiB, freed at once; the first block is a few bytes short of aligned
    torch.empty(2**24).fill_(1.0)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
torch.empty(2**24).fill_(1.0)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _page_faults(mode: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", _FAULTS, mode], capture_output=True, text=True, check=True
    )
    return int(done.stdout.split()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="a glibc setting")
def test_a_second_large_buffer_reuses_the_first_without_page_faults():
    """64 MiB is 16,384 pages: glibc's default maps and zeroes every one of them again."""
    assert _page_faults("default") > 8_000
    assert _page_faults("keep") < 500
