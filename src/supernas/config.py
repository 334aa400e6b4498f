"""Strict loading of typed config dataclasses from YAML recipes and ``--set`` overrides.

Precedence: dataclass defaults, then the recipe, then ``--set section.key=value`` overrides.
An unknown key or a value of the wrong type is a one-line `ConfigError` naming the key and the
file, never a silent default. A dataclass may list the keys it no longer has in a ``REPLACED``
class attribute (old key -> what to write instead), so an old recipe fails with its fix.
"""

from __future__ import annotations

import dataclasses
import inspect
import io
import math
import textwrap
import tokenize
import types
import typing
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any, TypeVar, Union

import yaml

from supernas.errors import ConfigError, SupernasError

T = TypeVar("T")


def from_dict(cls: type[T], data: Any, where: str = "config", prefix: str = "") -> T:
    """Builds dataclass ``cls`` from nested plain data, checking every key and type."""
    if not isinstance(data, dict):
        section = prefix.rstrip(".") or "top level"
        raise ConfigError(f"{where}: {section} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - names)
    replaced = [key for key in unknown if key in getattr(cls, "REPLACED", {})]
    if replaced:
        key = replaced[0]
        raise ConfigError(f"{where}: '{prefix}{key}' was replaced by {cls.REPLACED[key]}")
    if unknown:
        raise ConfigError(f"{where}: unknown key '{prefix}{unknown[0]}'; known: {sorted(names)}")
    values = {k: _convert(hints[k], v, where, f"{prefix}{k}") for k, v in data.items()}
    try:
        return cls(**values)
    except SupernasError as error:
        raise ConfigError(f"{where}: {error}") from None


def _convert(hint: Any, value: Any, where: str, key: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, where, f"{key}.")
    if origin in (Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(option, value, where, key)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: {key} = {value!r} is not {_name(hint)}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: {key} = {value!r} is not a list")
        (item,) = typing.get_args(hint)[:1] or (Any,)
        return origin(_convert(item, v, where, key) for v in value)
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: {key} = {value!r} is not a mapping")
        return dict(value)
    if hint is Any:
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):  # YAML reads "5e6" (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise ConfigError(f"{where}: {key} = {value!r} is not {_name(hint)}")
    return value


RANGES: dict[str, tuple[str, Callable[[float], bool]]] = {
    "positive": ("positive", lambda v: v > 0),
    "non_negative": ("non-negative", lambda v: v >= 0),
    "fraction": ("in [0, 1)", lambda v: 0 <= v < 1),
}


def check_ranges(section: str, config: Any, **ranges: tuple[str, ...]) -> None:
    """Refuses a named field of ``config`` that is NaN, infinite or out of its range, e.g.
    ``check_ranges("search", self, positive=("lr",), fraction=("momentum",))``; None passes
    (a field that may be None says so in its type)."""
    for kind, names in ranges.items():
        label, holds = RANGES[kind]
        for name in names:
            value = getattr(config, name)
            if value is not None and not (math.isfinite(value) and holds(value)):
                raise ConfigError(f"{section}.{name} = {value!r} must be {label}")


def check_choices(section: str, config: Any, **choices: tuple[str, ...]) -> None:
    """Refuses a named field of ``config`` that is not one of its choices, e.g.
    ``check_choices("search.options", self, mode=("two_path", "full"))``."""
    for name, options in choices.items():
        value = getattr(config, name)
        if value not in options:
            raise ConfigError(f"{section}.{name} {value!r} is not one of {', '.join(options)}")


def _name(hint: Any) -> str:
    return getattr(hint, "__name__", str(hint))


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key: Any, mark: yaml.Mark) -> None:
        super().__init__(f"key {key!r} appears twice (line {mark.line + 1})")


class _StrictLoader(yaml.SafeLoader):
    """A safe loader that refuses a key written twice in one mapping: plain YAML keeps the
    last, so a recipe with two ``strategy:`` lines would run the second without a word."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._checked: set[yaml.MappingNode] = set()

    def flatten_mapping(self, node: yaml.MappingNode) -> None:
        # Checked here, not in construct_mapping: flattening rewrites node.value in place (the
        # merged pairs first, the ``<<`` keys gone), and a mapping merged in with ``<<`` is
        # flattened when it is merged, which can be before it is constructed itself; its own
        # override of a key it merged in would then look like a key written twice.
        if node not in self._checked:
            self._checked.add(node)
            self._refuse_duplicates(node)
        super().flatten_mapping(node)

    def _refuse_duplicates(self, node: yaml.MappingNode) -> None:
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # keys merged in with ``<<`` may be overridden on purpose
            key = self.construct_object(key_node)
            if not isinstance(key, Hashable):
                continue  # the safe loader refuses it later, with its own message
            if key in seen:
                raise _DuplicateKey(key, key_node.start_mark)
            seen.add(key)


def load_yaml(
    path: str | Path, kind: str = "recipe", error_type: type[SupernasError] = ConfigError
) -> dict[str, Any]:
    """Reads a recipe (or another YAML mapping, named ``kind`` in errors); a missing,
    malformed or ambiguous (a key twice) file is an ``error_type`` (a `ConfigError` unless
    said)."""
    try:
        data = yaml.load(Path(path).read_text(), Loader=_StrictLoader)
    except OSError as error:
        raise error_type(f"cannot read {kind} {path}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise error_type(f"{kind} {path} is not UTF-8 text") from None
    except _DuplicateKey as error:
        raise error_type(f"{kind} {path}: {error}") from None
    except yaml.YAMLError as error:
        line = getattr(getattr(error, "problem_mark", None), "line", None)
        at = f" (line {line + 1})" if line is not None else ""
        raise error_type(f"{kind} {path} is not valid YAML{at}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise error_type(f"{kind} {path} must hold a mapping at the top level")
    return data


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Applies ``section.key=value`` strings (values parsed as YAML) to nested data."""
    result = _deep_copy(data)
    for override in overrides:
        key, sep, text = override.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {override!r} is not of the form key=value")
        try:
            value = yaml.load(text, Loader=_StrictLoader) if text else None
        except _DuplicateKey as error:
            raise ConfigError(f"override {override!r}: {error}") from None
        except yaml.YAMLError:
            raise ConfigError(f"override {override!r}: the value is not valid YAML") from None
        target = result
        parts = key.split(".")
        for part in parts[:-1]:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise ConfigError(f"override {override!r}: {part} is not a section")
        target[parts[-1]] = value
    return result


@dataclasses.dataclass(frozen=True)
class Option:
    """One setting of a config dataclass, as ``supernas strategy show`` prints it."""

    name: str  # dotted for a nested dataclass: "selection.mutations"
    type: str  # the annotation as written: "float | None"
    default: Any
    help: str  # the field's trailing comment; "" if it has none


def describe_options(cls: type, prefix: str = "") -> list[Option]:
    """The fields of config dataclass ``cls`` in order, each with its help comment.

    The help is the trailing comment of the field's line in the class source (comments of
    every line of a field written over several lines are joined)::

        temperature: float = 5.0  # Gumbel-softmax tau at the start (FBNet)
        -> Option("temperature", "float", 5.0, "Gumbel-softmax tau at the start (FBNet)")

    A field holding a dataclass is replaced by its own fields, named ``field.sub_field``.
    """
    hints = typing.get_type_hints(cls)
    comments = _field_comments(cls)
    options = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        if dataclasses.is_dataclass(hints[f.name]):
            options += describe_options(hints[f.name], f"{prefix}{f.name}.")
            continue
        default = f.default
        if default is dataclasses.MISSING and f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        annotation = f.type if isinstance(f.type, str) else inspect.formatannotation(f.type)
        options.append(Option(prefix + f.name, annotation, default, comments.get(f.name, "")))
    return options


def _field_comments(cls: type) -> dict[str, str]:
    """Trailing comments of the annotated fields of ``cls`` and of its dataclass bases."""
    comments: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if dataclasses.is_dataclass(klass):
            comments.update(_class_comments(klass))
    return comments


def _class_comments(cls: type) -> dict[str, str]:
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):  # defined in a REPL or generated: no help, not an error
        return {}
    comments: dict[str, list[str]] = {}
    depth = 0
    line: list[tokenize.TokenInfo] = []  # significant tokens of the current logical line
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.INDENT:
            depth += 1
        elif token.type == tokenize.DEDENT:
            depth -= 1
        elif token.type == tokenize.NEWLINE:
            line = []
        elif token.type == tokenize.COMMENT:
            # A field of the class body: "name :" opening a logical line at depth 1.
            if depth == 1 and len(line) >= 2 and line[0].type == tokenize.NAME:
                if line[1].string == ":":
                    comments.setdefault(line[0].string, []).append(token.string[1:].strip())
        elif token.type != tokenize.NL:
            line.append(token)
    return {name: " ".join(parts) for name, parts in comments.items()}


def _deep_copy(data: dict[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, dict) else v for k, v in data.items()}
