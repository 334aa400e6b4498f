"""Every shipped recipe loads: known keys and types, a known space, valid method options."""

from pathlib import Path

import pytest

from supernas.config import from_dict
from supernas.recipe import load_run_config
from supernas.space import get_space
from supernas.strategies import STRATEGIES

RECIPES = sorted((Path(__file__).parents[1] / "recipes").glob("*.yaml"))


def test_there_is_a_recipe_per_method():
    strategies = {load_run_config(path).search.strategy for path in RECIPES}
    assert strategies >= {"random", "dmasking", "proxyless", "fpnas", "bignas"}


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_recipe_loads_with_valid_options(path):
    cfg = load_run_config(path)
    get_space(cfg.space)
    strategy = STRATEGIES.get(cfg.search.strategy)
    from_dict(strategy.Config, cfg.search.options, "search.options")
