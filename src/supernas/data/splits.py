"""Seeded index splits: the weight/arch split of a training set, and capped subsets.

DNAS methods (FBNetV2, ProxylessNAS) train the supernet weights on one part of the training set
and the architecture parameters on another, and keep the test set for the final evaluation.
The split must be identical in every DDP rank and in a resumed run, without communication: a
seeded CPU `torch.Generator` gives the same permutation in every process, on every machine.
"""

from __future__ import annotations

import torch

from supernas.errors import DataError


def shuffled_indices(n: int, seed: int, limit: int | None = None) -> list[int]:
    """Returns a seeded permutation of range(n), cut to its first `limit` entries.

    Example: `shuffled_indices(5, seed=0, limit=3)` might give [4, 1, 0], always the same.
    A `limit` above n keeps all n: it is a cap for quick runs, not a requirement.
    """
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[:limit].tolist()


def split_indices(
    n: int, arch_fraction: float, seed: int, limit: int | None = None
) -> tuple[list[int], list[int]]:
    """Splits range(n) into disjoint weight and arch indices.

    The first `limit` indices of the seeded permutation are kept, and the first
    round(arch_fraction * kept) of those form the arch split. Example: n=10, arch_fraction=0.2
    -> 8 weight and 2 arch indices.

    Args:
        n: Size of the training set.
        arch_fraction: In [0, 1); 0 gives an empty arch split (final training).
        seed: Seed of the permutation.
        limit: Cap on the number of training images used.

    Raises:
        DataError: A split that should hold images would be empty.
    """
    if not 0.0 <= arch_fraction < 1.0:
        raise DataError(f"arch_fraction must be in [0, 1), got {arch_fraction}")
    kept = shuffled_indices(n, seed, limit)
    num_arch = round(arch_fraction * len(kept))
    if num_arch == len(kept) or (arch_fraction > 0 and num_arch == 0):
        raise DataError(
            f"cannot split {len(kept)} training images with arch_fraction {arch_fraction}: "
            "a split would be empty"
        )
    return kept[num_arch:], kept[:num_arch]


def held_out(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Splits range(n) into kept and held-out indices, the held-out ones round(fraction * n)
    from the end of a seeded permutation (another stream than `split_indices` draws from the
    kept ones, so the two splits stay independent).

    Raises:
        DataError: Either part would be empty.
    """
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 1)).tolist()
    count = round(fraction * n)
    if count == 0 or count == n:
        raise DataError(f"cannot hold out {fraction:.0%} of {n} images: a part would be empty")
    return sorted(order[:-count]), sorted(order[-count:])
