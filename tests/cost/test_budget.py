"""The budget: one metric and target for every method, checked before any work, and the old
recipe keys refused with their replacement."""

import logging
import random
import re

import pytest
from draws import LANGUAGE_SPACES, SPACE_NAMES, small_space
from tables import fake_table

from supernas.cli import main
from supernas.config import from_dict
from supernas.cost.budget import Budget, BudgetConfig
from supernas.cost.macs import arch_cost
from supernas.errors import BudgetError, ConfigError
from supernas.recipe import RunConfig
from supernas.space import sample, smallest
from supernas.strategies import STRATEGIES


@pytest.mark.parametrize("name", SPACE_NAMES)
def test_cost_is_the_exact_count_or_the_tables_prediction(name):
    space = small_space(name)
    table = fake_table(space)
    macs, params = Budget.of(space), Budget.of(space, metric="params")
    latency = Budget.of(space, None, "latency", table)
    rng = random.Random(0)
    for _ in range(10):
        arch = sample(space, rng)
        counted = arch_cost(space, arch)
        assert (macs.cost(arch), params.cost(arch)) == (counted.macs, counted.params)
        assert latency.cost(arch) == pytest.approx(table.predict(space, arch), rel=1e-12)
        assert latency.record(arch) == {
            "macs": counted.macs,
            "params": counted.params,
            "latency_ms": latency.cost(arch),
        }


def test_fits_is_at_most_the_target():
    space = LANGUAGE_SPACES["language_separate_always"]
    arch = sample(space, random.Random(1))
    cost = arch_cost(space, arch).macs
    assert Budget.of(space, cost).fits(arch)
    assert not Budget.of(space, max(cost - 1, arch_cost(space, smallest(space)).macs)).fits(arch)
    assert Budget.of(space).fits(arch)  # no target, no limit


def test_a_target_below_every_child_is_refused_for_counts_and_warned_for_latency(caplog):
    space = small_space("fmnist_small")
    floor = arch_cost(space, smallest(space))
    with pytest.raises(BudgetError, match=r"below the smallest child of fmnist_small \("):
        Budget.of(space, floor.macs - 1)
    with pytest.raises(BudgetError, match="params"):
        Budget.of(space, floor.params - 1, "params")
    table = fake_table(space)
    below = table.predict(space, smallest(space)) * 0.99
    with caplog.at_level(logging.WARNING):
        Budget.of(space, below, "latency", table)  # another child may still be faster
    assert "the search fails if it finds no cheaper child" in caplog.text


def test_bad_budgets_are_one_line_config_errors(tmp_path):
    space = small_space("fmnist_small")
    with pytest.raises(ConfigError, match="metric 'energy' is not one of latency, macs, params"):
        BudgetConfig(metric="energy")
    for target in (0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ConfigError, match="must be a positive number"):
            BudgetConfig(target=target)
    with pytest.raises(ConfigError, match="lut is for metric latency, not macs"):
        Budget.of(space, 4e6, "macs", "lut.json")
    with pytest.raises(ConfigError, match="needs search.budget.lut"):
        Budget.of(space, 1.8, "latency")
    with pytest.raises(ConfigError, match="cannot read latency table"):
        Budget.of(space, 1.8, "latency", str(tmp_path / "missing.json"))


@pytest.mark.parametrize(
    ("section", "key", "value", "replacement"),
    [
        ("search", "budget_macs", 4e6, "search.budget: {metric: macs"),
        ("dmasking", "cost_metric", "params", "search.budget.metric"),
        ("dmasking", "cost_target", 4e6, "search.budget.target"),
        ("proxyless", "cost", "latency", "search.budget.metric"),
        ("proxyless", "target", 1.8, "search.budget.target"),
        ("proxyless", "lut", "lut.json", "search.budget.lut"),
        ("fpnas", "target_macs", 4e6, "search.budget.target"),
        ("fpnas", "target_ms", 1.8, "with search.budget.metric: latency"),
        ("fpnas", "lut", "lut.json", "search.budget.lut"),
    ],
)
def test_old_keys_name_their_replacement(section, key, value, replacement):
    match = re.escape(f"{key}' was replaced by ") + ".*" + re.escape(replacement)
    with pytest.raises(ConfigError, match=match):
        if section == "search":
            from_dict(RunConfig, {"search": {key: value}}, "recipe.yaml")
        else:
            from_dict(STRATEGIES.get(section).Config, {key: value}, "search.options")


def test_old_recipe_fails_on_the_command_line_before_any_work(tmp_path, capsys):
    recipe = tmp_path / "old.yaml"
    recipe.write_text(
        "search:\n  strategy: proxyless\n  options:\n    cost: latency\n    target: 1.8\n"
    )
    out = tmp_path / "run"
    assert main(["search", str(recipe), "--run-dir", str(out), "--set", "data.name=synthetic"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "supernas: error: search.strategy proxyless: 'search.options.cost' was replaced by "
        "search.budget.metric (no cost term: leave search.budget.target unset)"
    )
    assert not out.exists()


def test_the_summary_says_whether_the_arch_fits_and_warns_when_not(caplog):
    from supernas.api import _budget_fields

    space = small_space("fmnist_small")
    arch = sample(space, random.Random(2))
    cost = arch_cost(space, arch).macs
    assert _budget_fields(Budget.of(space), arch) == {}  # MACs are in the summary anyway
    assert _budget_fields(Budget.of(space, cost), arch)["within_budget"] is True
    with caplog.at_level(logging.WARNING):
        over = _budget_fields(Budget.of(space, cost - 1), arch)
    assert over == {
        "budget_metric": "macs",
        "budget_cost": cost,
        "budget_target": cost - 1,
        "within_budget": False,
    }
    assert "over the budget of" in caplog.text
    latency = _budget_fields(Budget.of(space, None, "latency", fake_table(space)), arch)
    assert latency["budget_metric"] == "latency" and latency["budget_cost"] > 0
