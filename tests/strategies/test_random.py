"""Random search: derives an in-budget arch, reproducibly (a killed search resumes to the same
arch: `test_killed_resume.py`)."""

import json

import pytest

from runs import overrides
from supernas.api import search
from supernas.cost.macs import arch_cost
from supernas.errors import BudgetError
from supernas.recipe import load_run_config
from supernas.space import get_space

SEARCH = (
    "search.epochs=1",
    "search.budget.target=3e6",
    "search.options={num_candidates: 4}",
    "search.arch_eval_batches=2",
    "train.epochs=1",
    "search.log_every=1",
)


def test_derived_arch_is_within_budget_and_reproducible(tmp_path):
    cfg = load_run_config(None, [o for o in overrides(*SEARCH) if o != "--set"])
    first = search(cfg, tmp_path / "a")
    second = search(cfg, tmp_path / "b")
    assert arch_cost(get_space("fmnist_small"), first.arch).macs <= 3e6
    assert first.arch == second.arch
    candidates = json.loads((tmp_path / "a" / "candidates.json").read_text())
    assert len(candidates) == 4 and all(c["macs"] <= 3e6 for c in candidates)
    assert str(first.arch) in {c["arch"] for c in candidates}
    assert (tmp_path / "a" / "report.md").is_file()


def test_budget_below_the_smallest_child_is_refused(tmp_path):
    cfg = load_run_config(None, [o for o in overrides("search.budget.target=1e5") if o != "--set"])
    with pytest.raises(BudgetError, match="below the smallest child"):
        search(cfg, tmp_path / "run")
