"""Suite-wide settings: a seeded hypothesis profile and a seed for every test.

Every test starts with Python's, NumPy's and torch's global generators seeded from its own node
id, so a test that draws without an explicit generator still draws the same numbers on every
run, alone or in the whole suite, and a failure reproduces. A failing test's report names the
seed; ``SUPERNAS_TEST_SEED=N`` runs the suite with another base seed to look for inputs that
break a test.

Hypothesis's explain phase is off: after a failure it traces every line the failing example
runs, and through torch that held 22 GiB within minutes here, so a failing property test
starved the machine instead of reporting.
"""

import os
import random
import zlib

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, Phase, settings

PHASES = [phase for phase in Phase if phase is not Phase.explain]
settings.register_profile(
    "ci",
    max_examples=100,
    phases=PHASES,
    deadline=None,
    derandomize=True,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=20, deadline=None, phases=PHASES)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

if "PYTEST_XDIST_WORKER" in os.environ:
    # Workers share the cores: two processes spinning several OpenMP threads each slow each
    # other down many times over, so each worker, and every process it starts, takes one.
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)

BASE_SEED = int(os.environ.get("SUPERNAS_TEST_SEED", "0"))


def test_seed(nodeid: str) -> int:
    """The seed of one test: stable across runs, processes and test order."""
    return (zlib.crc32(nodeid.encode()) + BASE_SEED) % 2**31


test_seed.__test__ = False  # a helper, not a test


@pytest.fixture(autouse=True)
def _seed_everything(request: pytest.FixtureRequest) -> int:
    seed = test_seed(request.node.nodeid)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    threads = torch.get_num_threads()
    yield seed
    torch.set_num_threads(threads)  # a test that changes it must not change the next one's sums


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if report.failed:
        seed = test_seed(item.nodeid)
        report.sections.append(
            ("seed", f"global generators seeded with {seed} (SUPERNAS_TEST_SEED={BASE_SEED})")
        )
    return report
