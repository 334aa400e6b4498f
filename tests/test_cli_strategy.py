"""``supernas strategy list | show``: every registered method and every option of its Config."""

import dataclasses
import json
import typing
from dataclasses import dataclass, field

import pytest

from supernas.cli import main
from supernas.config import Option, describe_options
from supernas.strategies import STRATEGIES


def _run(capsys, argv: list[str]) -> str:
    assert main(argv) == 0
    return capsys.readouterr().out


def _fields(cls: type, prefix: str = "") -> list[tuple[str, object]]:
    """(dotted name, default) of every field, nested dataclasses flattened."""
    hints = typing.get_type_hints(cls)
    rows = []
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            rows += _fields(hints[f.name], f"{prefix}{f.name}.")
        elif f.default is not dataclasses.MISSING:
            rows.append((prefix + f.name, f.default))
        else:
            rows.append((prefix + f.name, f.default_factory()))
    return rows


def test_list_names_every_strategy(capsys):
    lines = _run(capsys, ["strategy", "list"]).splitlines()
    assert [line.split()[0] for line in lines] == STRATEGIES.names()
    assert all(len(line.split(maxsplit=1)) == 2 for line in lines), "a strategy has no summary"


@pytest.mark.parametrize("name", STRATEGIES.names())
def test_show_lists_every_option_with_its_default(name, capsys):
    out = _run(capsys, ["strategy", "show", name])
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()[3:]}
    expected = _fields(STRATEGIES.get(name).Config)
    assert list(rows) == [option for option, _ in expected]
    for option, default in expected:
        shown = json.dumps(default) if isinstance(default, str) else repr(default)
        assert shown in " ".join(rows[option]), (option, default)


@pytest.mark.parametrize("name", STRATEGIES.names())
def test_show_json_matches_the_config(name, capsys):
    info = json.loads(_run(capsys, ["strategy", "show", name, "--json"]))
    assert info["name"] == name and info["summary"]
    expected = _fields(STRATEGIES.get(name).Config)
    assert [(o["name"], o["default"]) for o in info["options"]] == expected


def test_unknown_strategy_is_one_line_and_exit_2(capsys):
    assert main(["strategy", "show", "darts"]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith("supernas: error: unknown strategy 'darts'") and "\n" not in err
    assert "dmasking" in err and captured.out == ""


@pytest.mark.parametrize("argv", [["strategy"], ["strategy", "list"], ["strategy", "show"]])
def test_help_ends_with_an_example(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--help"])
    assert exit_info.value.code == 0
    epilog = capsys.readouterr().out.rstrip().split("\n\n")[-1]
    assert epilog.startswith("example") and "supernas strategy" in epilog


@dataclass
class _Inner:
    depth: int = 3  # inner help
    seed: int = 0


@dataclass
class _Outer:
    """A docstring is not a field."""

    plain: float = 1.0
    commented: str = "a"  # one line of help
    spread: tuple[int, ...] = field(  # help on the first line
        default=(1, 2)  # and on the second
    )
    nested: _Inner = field(default_factory=_Inner)  # replaced by its fields
    # An own-line comment belongs to no field.
    last: int | None = None  # # keeps inner hashes

    def method(self) -> int:
        local: int = 1  # not a field
        return local


def test_describe_options_reads_trailing_comments():
    assert describe_options(_Outer) == [
        Option("plain", "float", 1.0, ""),
        Option("commented", "str", "a", "one line of help"),
        Option("spread", "tuple[int, ...]", (1, 2), "help on the first line and on the second"),
        Option("nested.depth", "int", 3, "inner help"),
        Option("nested.seed", "int", 0, ""),
        Option("last", "int | None", None, "# keeps inner hashes"),
    ]
