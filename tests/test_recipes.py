"""Every shipped recipe loads: known keys and types, a known space, valid method options."""

from pathlib import Path

import pytest

from supernas.config import apply_overrides, from_dict, load_yaml
from supernas.errors import ConfigError
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


def test_keys_merged_in_with_yaml_anchors_may_be_overridden(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("base: &b\n  lr: 1\n  momentum: 0.5\nsearch:\n  <<: *b\n  lr: 2\n")
    assert load_yaml(path)["search"] == {"lr": 2, "momentum": 0.5}


def test_a_merged_mapping_may_override_what_it_merges_wherever_it_sits(tmp_path):
    # the anchored mapping lies deeper than the one that merges it, so it is flattened (its
    # own merge resolved) before it is constructed
    path = tmp_path / "r.yaml"
    path.write_text("a:\n  b: &b\n    <<: {lr: 0}\n    lr: 1\nsearch:\n  <<: *b\n  x: 2\n")
    assert load_yaml(path)["search"] == {"lr": 1, "x": 2}


def test_a_key_twice_in_a_merged_mapping_is_still_refused(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("a:\n  b: &b\n    lr: 0\n    lr: 1\nsearch:\n  <<: *b\n")
    with pytest.raises(ConfigError, match=r"key 'lr' appears twice \(line 4\)$"):
        load_yaml(path)


def test_an_override_with_a_key_twice_is_refused():
    with pytest.raises(ConfigError, match=r"key 'arch_every' appears twice"):
        apply_overrides({}, ["search.options={arch_every: 1, arch_every: 2}"])
