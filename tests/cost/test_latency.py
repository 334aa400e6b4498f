"""Latency look-up tables: keys cover every child, JSON round trip, prediction is the sum of
entries, tables from another space or device are refused, and the CLI builds and checks one."""

import dataclasses
import json
import platform
import random

import pytest
import torch
from tables import FAST, tiny_space

from supernas.cli import main
from supernas.cost import latency_build
from supernas.cost.latency import LatencyTable, net_keys, noisy_machine
from supernas.cost.latency_build import (
    KEPT_FREED_MEMORY,
    Deployment,
    Timing,
    build_table,
    spearman,
    table_layers,
)
from supernas.errors import ConfigError
from supernas.space import plan, sample


@pytest.fixture(autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def table() -> LatencyTable:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return build_table(tiny_space(), Deployment(threads=1), timing=FAST)
    finally:
        torch.set_num_threads(previous)


def test_table_holds_every_layer_of_every_child(table):
    space = tiny_space()
    rng = random.Random(0)
    for _ in range(50):
        arch = sample(space, rng)
        keys = net_keys(plan(space, arch))
        assert all(k in table.entries for k in keys)
        expected = sum(table.entries[k] + table.per_layer_ms for k in keys) + table.overhead_ms
        assert table.predict(space, arch) == pytest.approx(expected)
    assert set(table.entries) == set(table_layers(space))
    assert all(v > 0 for v in table.entries.values())
    assert (table.threads, table.batch_size, table.device) == (1, 1, "cpu")


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the setting is glibc's")
def test_glibc_keeps_freed_memory_while_timing_and_the_table_says_so(table):
    assert table.allocator == KEPT_FREED_MEMORY


@pytest.mark.parametrize(("estimate", "expected"), [("median", [2.0, 20.0]), ("min", [1.0, 10.0])])
def test_an_entry_is_the_estimate_over_its_passes(monkeypatch, estimate, expected):
    """Three passes over two layers; each pass's median is what `median_ms` returns."""
    per_pass = iter([1.0, 10.0, 3.0, 30.0, 2.0, 20.0])
    monkeypatch.setattr(latency_build, "median_ms", lambda run, timing: next(per_pass))
    timing = dataclasses.replace(FAST, rounds=3, estimate=estimate)
    assert latency_build._estimated_medians([print, print], timing) == expected


def test_new_tables_take_the_median_and_older_ones_are_read_as_the_smallest(
    table, tmp_path, caplog
):
    assert table.estimate == "median"
    table.save(tmp_path / "new.json")
    LatencyTable.load(tmp_path / "new.json")
    assert "rebuild" not in caplog.text
    data = json.loads(table.to_json())
    del data["estimate"], data["per_layer_ms"]  # a table written before either was recorded
    (tmp_path / "old.json").write_text(json.dumps(data))
    older = LatencyTable.load(tmp_path / "old.json")
    assert older.estimate == "min" and Timing.of(older).estimate == "min"
    assert f"{tmp_path / 'old.json'} was built before" in caplog.text  # a rebuild is advised


def _gaps_table(entries: dict[str, float]) -> LatencyTable:
    return LatencyTable("tiny", "f", "cpu", "cpu:x", "2", 1, 1, 1, 1, 1, entries=entries)


def test_the_fit_finds_a_per_network_and_a_per_layer_term_and_a_disturbed_arch_moves_neither():
    space = tiny_space()
    archs = [sample(space, random.Random(seed)) for seed in range(12)]
    table = _gaps_table(dict.fromkeys(table_layers(space), 1.0))
    layers = [len(net_keys(plan(space, arch))) for arch in archs]
    assert len(set(layers)) > 1  # the space's optional blocks vary the layer count
    measured = [n * (1.0 - 0.25) + 0.5 for n in layers]  # each layer 0.25 ms cheaper, +0.5 ms
    measured[3] += 40.0  # one measurement disturbed
    latency_build.fit_overhead(table, space, archs, measured)
    assert table.per_layer_ms == pytest.approx(-0.25)
    assert table.overhead_ms == pytest.approx(0.5)
    assert table.predict(space, archs[0]) == pytest.approx(measured[0])


def test_the_per_layer_term_never_makes_a_layer_free_and_is_0_at_one_depth():
    space = tiny_space()
    archs = [sample(space, random.Random(seed)) for seed in range(12)]
    table = _gaps_table(dict.fromkeys(table_layers(space), 1.0))
    layers = [len(net_keys(plan(space, arch))) for arch in archs]
    latency_build.fit_overhead(table, space, archs, [1e-4 for _ in layers])  # 1 ms a layer less
    assert min(table.entries.values()) + table.per_layer_ms > 0
    table.validate()
    same = [a for a, n in zip(archs, layers, strict=True) if n == layers[0]]
    latency_build.fit_overhead(table, space, same, [len(same) + 3.0] * len(same))
    assert table.per_layer_ms == 0.0


def test_json_round_trip_and_format_check(table, tmp_path):
    table.save(tmp_path / "lut.json")
    assert LatencyTable.load(tmp_path / "lut.json") == table
    data = json.loads((tmp_path / "lut.json").read_text())
    assert data["format"] == 1 and data["space"] == "tiny" and data["torch_version"]
    (tmp_path / "bad.json").write_text(json.dumps({"entries": {}}))
    with pytest.raises(ConfigError, match="not a supernas latency table"):
        LatencyTable.load(tmp_path / "bad.json")


def test_table_from_another_space_or_device_is_refused(table):
    table.check(tiny_space(), torch.device("cpu"))
    with pytest.raises(ConfigError, match="measured for space tiny .* not other"):
        table.check(tiny_space("other"))
    changed = dataclasses.replace(tiny_space(), resolutions=(8,))  # same name, other definition
    with pytest.raises(ConfigError, match="measured for space tiny"):
        table.check(changed)
    elsewhere = dataclasses.replace(table, device_name="cpu:another model")
    with pytest.raises(ConfigError, match="measured on cpu:another model, not on cpu:"):
        elsewhere.check(tiny_space(), torch.device("cpu"))


def test_missing_entry_names_the_key(table):
    space = tiny_space()
    arch = sample(space, random.Random(1))
    key = net_keys(plan(space, arch))[1]
    partial = dataclasses.replace(
        table, entries={k: v for k, v in table.entries.items() if k != key}
    )
    with pytest.raises(ConfigError, match=f"no entry {key}"):
        partial.predict(space, arch)


def test_spearman_ranks():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(0.9486833)


def test_cli_builds_checks_and_refuses_a_foreign_table(tmp_path, capsys):
    space_file = tmp_path / "tiny.yaml"
    tiny_space().to_yaml(space_file)
    out = tmp_path / "lut.json"
    build = ["latency", "build", "--space", str(space_file), "--threads", "1", "--repeats", "2"]
    build += ["--rounds", "1", "--spread", "0"]
    assert main(["-q", *build, "--out", str(out)]) == 0
    assert "entries on cpu:" in capsys.readouterr().out
    check = ["latency", "check", "--lut", str(out), "--archs", "3", "--space", str(space_file)]
    assert main(["-q", *check]) == 0
    printed = capsys.readouterr().out
    assert "MAPE" in printed and "the same archs measured again differ by" in printed
    written = json.loads((tmp_path / "lut.check.json").read_text())
    assert written["archs"] == 3 and len(written["rows"]) == 3
    assert (tmp_path / "lut.check.png").stat().st_size > 0
    assert main(["-q", "latency", "check", "--lut", str(out), "--space", "fmnist_small"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("supernas: error: latency table was measured for space tiny")
    assert error.count("\n") == 1
    assert main(["-q", "space", "show", str(space_file), "--lut", str(out)]) == 0
    shown = capsys.readouterr().out.splitlines()[-1]
    assert shown.startswith("latency (cpu:") and "smallest child" in shown and "median" in shown


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"entries": "all nan"}, "is nan, not a positive finite ms"),
        ({"entries": "all negative"}, "is -1.0, not a positive finite ms"),
        ({"entries": "one string"}, "is 'fast', not a number of ms"),
        ({"entries": {}}, "no entries"),
        ({"overhead_ms": float("inf")}, "overhead_ms is inf, not finite"),
        ({"per_layer_ms": float("nan")}, "per_layer_ms is nan, not finite"),
        ({"per_layer_ms": -1e9}, "per_layer_ms -1000000000.0 makes a layer cost <= 0"),
        ({"batch_size": 0}, "batch_size is 0, not a positive integer"),
        ({"repeats": 2.5}, "repeats = 2.5 is not int"),
        ({"estimate": "mean"}, "estimate 'mean' is not one of"),
    ],
)
def test_a_table_that_cannot_be_true_is_refused_on_load(table, tmp_path, change, message):
    data = json.loads(table.to_json())
    entries = data["entries"]
    value = change.get("entries")
    if value == "all nan":
        data["entries"] = {key: float("nan") for key in entries}
    elif value == "all negative":
        data["entries"] = {key: -1.0 for key in entries}
    elif value == "one string":
        data["entries"] = {**entries, next(iter(entries)): "fast"}
    else:
        data.update(change)
    (tmp_path / "lut.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=message):
        LatencyTable.load(tmp_path / "lut.json")


@pytest.mark.parametrize("flag", ["--batch-size", "--repeats", "--rounds"])
def test_cli_refuses_zero_timings_before_measuring(tmp_path, capsys, flag):
    out = tmp_path / "lut.json"
    argv = ["latency", "build", "--space", "fmnist_small", flag, "0", "--out", str(out)]
    assert main(["-q", *argv]) == 2
    assert "must be at least 1" in capsys.readouterr().err
    assert not out.exists()


def test_a_machine_that_cannot_repeat_itself_is_named_in_one_line():
    assert noisy_machine({"repeat_mape": 0.02, "repeat_within_10pct": 0.95}) == []
    assert noisy_machine({"mape": 0.05}) == []  # a check written before checks repeated
    (line,) = noisy_machine({"repeat_mape": 0.123, "repeat_within_10pct": 0.5})
    assert "12.3% repeat MAPE" in line and "\n" not in line
