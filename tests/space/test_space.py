import dataclasses

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
    with pytest.raises(SpaceError, match="cannot read space file"):
        SearchSpace.from_yaml(path)


def test_count_archs_small_space_by_hand():
    # proxyless_mobile: 21 mixed blocks of 6 candidates, 15 of them with the zero op too.
    assert count_archs(get_space("proxyless_mobile")) == 7**15 * 6**6
