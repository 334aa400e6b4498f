import json
import random

import pytest
from draws import archs, small_space
from hypothesis import given, settings
from hypothesis import strategies as st

from supernas.errors import ArchError
from supernas.space import (
    SPACES,
    arch_from_choices,
    arch_from_json,
    arch_from_string,
    biggest,
    choices_of,
    get_space,
    sample,
    smallest,
)


@pytest.mark.parametrize("name", SPACES.names())
@settings(max_examples=100)
@given(data=st.data())
def test_json_and_string_round_trip_exactly(name, data):
    space = get_space(name)
    arch = data.draw(archs(space))
    assert arch_from_json(space, arch.to_json()) == arch
    assert arch_from_string(space, str(arch)) == arch
    assert arch_from_choices(space, choices_of(space, arch)) == arch


def test_digest_is_stable_and_distinguishes_archs():
    space = get_space("fmnist_small")
    a, b = smallest(space), biggest(space)
    assert a.digest == arch_from_json(space, a.to_json()).digest
    assert a.digest != b.digest
    assert len(a.digest) == 64


def test_skipped_blocks_have_one_canonical_form():
    space = get_space("fmnist_small")
    arch = smallest(space)
    skipped = [i for i, b in enumerate(arch.blocks) if not b.present]
    assert skipped, "fmnist_small's smallest child skips its optional blocks"
    data = json.loads(arch.to_json())
    assert data["blocks"][skipped[0]] == {"present": False}


def test_sampling_from_probabilities_follows_them():
    space = get_space("fmnist_small")
    probs = {"block0.kernel_size": [0.0, 1.0], "resolution": [1.0, 0.0]}
    rng = random.Random(0)
    for _ in range(20):
        arch = sample(space, rng, probs)
        assert arch.blocks[0].kernel_size == 5
        assert arch.resolution == 24


def test_smallest_and_biggest_are_the_extremes():
    space = get_space("fmnist_small")
    small, big = smallest(space), biggest(space)
    assert small.resolution == min(space.resolutions)
    assert big.resolution == max(space.resolutions)
    assert all(b.present for b in big.blocks)
    assert big.blocks[0].out_channels == max(space.blocks[0].out_channels)


def _edit(arch_json: str, path: list, value) -> str:
    data = json.loads(arch_json)
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return json.dumps(data)


@pytest.mark.parametrize(
    "path, value, message",
    [
        (["blocks", 0, "kernel_size"], 9, "block 0 (stage 1): kernel_size 9 not in (3, 5)"),
        (["blocks", 1, "activation"], "gelu", "block 1 (stage 2): activation 'gelu' not in"),
        (["resolution"], 31, "resolution 31 not in"),
        (["blocks", 0], {"present": False}, "block 0 (stage 1): this block cannot be skipped"),
        (["blocks", 2, "colour"], 1, "block 2: unknown keys ['colour']"),
        (["format"], 7, "arch JSON format 7 is not 1"),
        (["blocks"], {"0": {}}, "arch JSON: blocks must be a list, got dict"),
        (["blocks", 0, "out_channels"], 16.0, "block 0 (stage 1): out_channels 16.0 not in"),
        (["stem_channels"], True, "stem out_channels True not in"),
    ],
)
def test_invalid_arch_json_names_block_and_value(path, value, message):
    space = get_space("fmnist_small")
    text = _edit(biggest(space).to_json(), path, value)
    with pytest.raises(ArchError) as error:
        arch_from_json(space, text)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_arch_from_another_space_is_refused():
    arch = biggest(get_space("fmnist_small"))
    with pytest.raises(ArchError, match="belongs to space 'fmnist_small'"):
        arch_from_json(get_space("cifar_small"), arch.to_json())


def test_malformed_json_is_one_line_error():
    with pytest.raises(ArchError, match="malformed arch JSON"):
        arch_from_json(get_space("fmnist_small"), '{"format": 1, "blocks": [')


@pytest.mark.parametrize(
    "text", ["r28/s16", "x28/" + "skip/" * 6 + "h128", "r28/s16/c16_e3_k3_a0/"]
)
def test_strict_string_parser(text):
    with pytest.raises(ArchError):
        arch_from_string(get_space("fmnist_small"), text)


def test_tied_space_requires_stage_values_and_prefix_depth():
    space = small_space("bignas")
    arch = biggest(space)
    data = json.loads(arch.to_json())
    data["blocks"][6]["kernel_size"] = 3  # stage 3: blocks 5-7; block 6 now differs from 5
    with pytest.raises(ArchError, match="tie_stages"):
        arch_from_json(space, json.dumps(data))
