"""Weight/arch splits: sizes, disjointness, and the same split in every process."""

import subprocess
import sys

import pytest

from supernas.data import shuffled_indices, split_indices
from supernas.errors import DataError


def test_default_split_is_80_20_and_disjoint():
    weight, arch = split_indices(1000, 0.2, seed=0)
    assert (len(weight), len(arch)) == (800, 200)
    assert set(weight).isdisjoint(arch)
    assert sorted(weight + arch) == list(range(1000))


def test_same_seed_same_split_other_seed_other_split():
    assert split_indices(100, 0.3, seed=5) == split_indices(100, 0.3, seed=5)
    assert split_indices(100, 0.3, seed=5) != split_indices(100, 0.3, seed=6)


def test_split_is_shuffled():
    weight, _ = split_indices(100, 0.2, seed=0)
    assert weight != sorted(weight)


def test_limit_keeps_the_first_indices_of_the_seeded_shuffle():
    weight, arch = split_indices(100, 0.25, seed=1, limit=20)
    assert (len(weight), len(arch)) == (15, 5)
    assert arch + weight == shuffled_indices(100, seed=1)[:20]


def test_limit_above_size_keeps_everything():
    assert len(shuffled_indices(10, seed=0, limit=50)) == 10


def test_zero_arch_fraction_gives_an_empty_arch_split():
    weight, arch = split_indices(10, 0.0, seed=0)
    assert (len(weight), arch) == (10, [])


@pytest.mark.parametrize(("n", "fraction"), [(3, 0.1), (1, 0.5)])
def test_split_that_would_leave_a_side_empty_is_refused(n, fraction):
    with pytest.raises(DataError, match="a split would be empty"):
        split_indices(n, fraction, seed=0)


@pytest.mark.parametrize("fraction", [-0.1, 1.0])
def test_fraction_outside_unit_interval_is_refused(fraction):
    with pytest.raises(DataError, match="arch_fraction"):
        split_indices(10, fraction, seed=0)


def test_split_is_the_same_in_another_process():
    code = "from supernas.data.splits import split_indices; print(split_indices(500, 0.2, 42))"
    other = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert other.strip() == str(split_indices(500, 0.2, 42))
