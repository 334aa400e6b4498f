import dataclasses
import re

import pytest

from supernas.errors import SpaceError
from supernas.space import SPACES, SearchSpace, count_archs, get_space


@pytest.mark.parametrize("name", SPACES.names())
def test_space_yaml_round_trip(tmp_path, name):
    space = get_space(name)
    path = tmp_path / "space.yaml"
    space.to_yaml(path)
    loaded = SearchSpace.from_yaml(path)
    assert loaded == space
    assert loaded.fingerprint == space.fingerprint


def test_unknown_space_lists_known_ones():
    with pytest.raises(SpaceError, match="unknown space 'nope'; known: .*fmnist_small"):
        get_space("nope")


def test_bad_block_options_are_named():
    space = get_space("fmnist_small")
    bad = dataclasses.replace(space.blocks[1], stride=3)
    with pytest.raises(SpaceError, match=r"block 1 \(stage 2\): stride 3 not in \(1, 2\)"):
        dataclasses.replace(space, blocks=(space.blocks[0], bad, *space.blocks[2:]))


def test_unknown_activation_is_refused():
    space = get_space("fmnist_small")
    bad = dataclasses.replace(space.blocks[0], activations=("gelu",))
    with pytest.raises(SpaceError, match="activations 'gelu' not in"):
        dataclasses.replace(space, blocks=(bad, *space.blocks[1:]))


def test_strided_block_cannot_be_optional():
    space = get_space("fmnist_small")
    bad = dataclasses.replace(space.blocks[0], optional=True)
    with pytest.raises(SpaceError, match="only a stride-1 block may be optional"):
        dataclasses.replace(space, blocks=(bad, *space.blocks[1:]))


def test_resolution_below_total_stride_is_impossible():
    with pytest.raises(SpaceError, match="resolution 2 is below the total stride 4"):
        dataclasses.replace(get_space("fmnist_small"), resolutions=(2,))


def test_malformed_space_file(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("name: x\nblocks: [1, 2\n")
    with pytest.raises(SpaceError, match=r"space.yaml is not valid YAML \(line 3\)$"):
        SearchSpace.from_yaml(path)
    with pytest.raises(SpaceError, match="cannot read space file .*: No such file or directory"):
        SearchSpace.from_yaml(tmp_path / "none.yaml")


def test_a_space_file_with_a_key_twice_is_refused_not_read_as_its_last(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("name: x\nstem: 16\nstem: 32\n")
    with pytest.raises(SpaceError, match=r"space.yaml: key 'stem' appears twice \(line 3\)$"):
        SearchSpace.from_yaml(path)


def test_count_archs_small_space_by_hand():
    # proxyless_mobile: 21 mixed blocks of 6 candidates, 15 of them with the zero op too.
    assert count_archs(get_space("proxyless_mobile")) == 7**15 * 6**6


def _changed(section: str, field: str, value):
    """fmnist_small's plain data with one field changed, as a user's space file would hold."""
    data = get_space("fmnist_small").to_dict()
    target = data if section == "space" else data[section]
    if section == "blocks":
        target = target[1]
    target[field] = value
    return data


@pytest.mark.parametrize(
    ("section", "field", "value", "message"),
    [
        ("stem", "kernel_size", 4, "stem: kernel size 4 must be odd and positive"),
        ("stem", "kernel_size", 0, "stem: kernel size 0 must be odd"),
        ("blocks", "kernel_sizes", [3, 4], r"block 1 \(stage 2\): kernel size 4 must be odd"),
        ("blocks", "out_channels", [16.0, 24], "out_channels 16.0 must be a positive integer"),
        ("blocks", "expansions", [0, 3], "expansions 0 must be a finite positive number"),
        ("blocks", "expansions", [float("inf")], "expansions inf must be a finite positive"),
        ("blocks", "expansions", [float("nan")], "expansions nan must be a finite positive"),
        ("blocks", "attentions", ["sq"], "attention 'sq' must be none, se or splat"),
        ("blocks", "stride", True, "stride True not in"),
        ("space", "width_divisor", 0, "width_divisor 0 must be a positive integer"),
        ("space", "se_ratio", -1, r"se_ratio -1 must be in \(0, 1\]"),
        ("space", "in_channels", 1.5, "in_channels 1.5 must be a positive integer"),
        ("space", "resolutions", [28.5], "resolutions 28.5 must be a positive integer"),
        ("head", "dropout", 1.5, r"head: dropout 1.5 not in \[0, 1\)"),
        ("head", "hidden_channels", ["wide"], "hidden_channels 'wide' must be a positive"),
    ],
)
def test_a_space_file_that_would_build_wrong_is_refused_with_its_field(
    section, field, value, message
):
    with pytest.raises(SpaceError, match=message):
        SearchSpace.from_dict(_changed(section, field, value))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["blocks"][2].update(kernal=[3]), "space: block 2: unknown field 'kernal'"),
        (lambda d: d["blocks"][0].pop("stage"), "space: block 0: field 'stage' is missing"),
        (lambda d: d["head"].update(colour=1), "space: head: unknown field 'colour'"),
        (lambda d: d.update(blocks=3), "space: blocks must be a list"),
        (lambda d: d.update(stem=[16]), "space: stem must be a mapping"),
    ],
)
def test_a_typo_in_a_space_file_names_the_part_and_the_field(change, message):
    data = get_space("fmnist_small").to_dict()
    change(data)
    with pytest.raises(SpaceError, match=re.escape(message)):
        SearchSpace.from_dict(data)


def test_attentions_take_the_names_space_show_prints():
    data = get_space("fmnist_small").to_dict()
    data["blocks"][0]["attentions"] = ["none", "se", "splat2"]
    assert SearchSpace.from_dict(data).blocks[0].attentions == (0, 1, 2)
    data["blocks"][0]["attentions"] = ["cbam"]
    with pytest.raises(SpaceError, match="attention 'cbam' must be"):
        SearchSpace.from_dict(data)
