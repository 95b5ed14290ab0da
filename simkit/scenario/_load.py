"""Reading a scenario: TOML file or mapping, ``--set`` overrides, validation.

Every problem becomes one :class:`ScenarioError` whose message is one line
naming the source, the key path and the problem::

    scenarios/x.toml: clients.count: must be > 0, got -3
    scenarios/x.toml: unknown key 'clinets'
    scenarios/x.toml: clients: unknown key 'cout'

pydantic's errors are converted here, at this single boundary.
"""

from __future__ import annotations

import copy
import os
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from simkit.scenario._schema import ScenarioConfig
from simkit.scenario._schema_data import OBJECT_PATH
from simkit.scenario._size import size_problem

__all__ = [
    "Scenario",
    "ScenarioError",
    "apply_overrides",
    "check_size",
    "load_scenario",
    "parse_override",
]


class ScenarioError(ValueError):
    """An invalid scenario or override; the message is one line naming source and key."""


@dataclass(frozen=True, slots=True)
class Scenario:
    """A validated scenario and where it came from.

    Attributes:
        config: The validated configuration.
        source: How errors name it (the path as given, or ``<mapping>``).
        base_dir: Directory relative paths in the file are resolved against.
    """

    config: ScenarioConfig
    source: str
    base_dir: Path

    @property
    def name(self) -> str:
        """The scenario's name (its ``name`` key, else the file's stem)."""
        if self.config.name:
            return self.config.name
        return "scenario" if self.source.startswith("<") else Path(self.source).stem

    def error(self, key: str, problem: str) -> ScenarioError:
        """A :class:`ScenarioError` about ``key`` of this scenario."""
        return ScenarioError(
            f"{self.source}: {key}: {problem}" if key else f"{self.source}: {problem}"
        )


# ----------------------------------------------------------------------------- overrides


def parse_override(text: str, source: str = "--set") -> tuple[list[str], Any]:
    """Split ``a.b=c`` into a key path and a value.

    The value is read as a TOML value (``3``, ``0.5``, ``true``, ``[1, 2]``,
    ``"x"``, ``{kind = "iid"}``); anything that is not TOML is taken as a string.

    Raises:
        ScenarioError: No ``=``, or an empty key part.
    """
    key, sep, raw = text.partition("=")
    parts = key.strip().split(".")
    if not sep or not all(p.strip() for p in parts):
        raise ScenarioError(f"{source}: expected KEY=VALUE with a dotted key, got {text!r}")
    raw = raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return [p.strip() for p in parts], value


def apply_overrides(
    data: Mapping[str, Any], overrides: Iterable[str] | Mapping[str, Any], source: str = "--set"
) -> dict[str, Any]:
    """A deep copy of ``data`` with overrides set (``["a.b=1"]`` or ``{"a.b": 1}``).

    Unknown keys are not checked here: the schema rejects them.

    Raises:
        ScenarioError: A malformed override, or one that would set a key
            inside a value that is not a table.
    """
    out = copy.deepcopy(dict(data))
    if isinstance(overrides, Mapping):
        items = [(str(k).split("."), v) for k, v in overrides.items()]
    else:
        items = [parse_override(text, source) for text in overrides]
    for path, value in items:
        _set_path(out, path, value, source)
    return out


def _set_path(data: dict[str, Any], path: Sequence[str], value: Any, source: str) -> None:
    node = data
    for i, part in enumerate(path[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            where = ".".join(path[: i + 1])
            raise ScenarioError(f"{source}: {'.'.join(path)}: {where} is not a table")
        node = child
    node[path[-1]] = value


# ----------------------------------------------------------------------------- loading


def load_scenario(
    path_or_mapping: str | os.PathLike[str] | Mapping[str, Any],
    overrides: Iterable[str] | Mapping[str, Any] | None = None,
    *,
    source: str | None = None,
) -> Scenario:
    """Read, override and validate a scenario.

    Args:
        path_or_mapping: A TOML file, or the file's content as a mapping.
        overrides: ``--set`` strings (``"clients.count=5"``) or a mapping of
            dotted keys to values.
        source: How errors name the scenario (default: the path, or ``<mapping>``).

    Returns:
        The validated :class:`Scenario`.

    Raises:
        ScenarioError: Unreadable file, bad TOML, bad override or invalid
            content; one line naming the file and the key.
    """
    if isinstance(path_or_mapping, Mapping):
        data = dict(path_or_mapping)
        name = source or "<mapping>"
        base = Path.cwd()
    else:
        path = Path(path_or_mapping)
        name = source or os.fspath(path_or_mapping)
        data = _read_toml(path, name)
        base = path.parent
    if overrides:
        data = apply_overrides(data, overrides)
    config = validate(data, name)
    check_size(config, name)
    return Scenario(config, name, base)


def check_size(config: ScenarioConfig, source: str, limit: int | None = None) -> None:
    """Refuse a scenario whose sizes cannot fit in memory, before any allocation.

    Raises:
        ScenarioError: ``source: clients.count=... needs ~X TB of memory ...``.
    """
    try:
        problem = size_problem(config, limit)
    except ValueError as exc:  # a malformed $SIMKIT_MEMORY_LIMIT
        raise ScenarioError(f"{source}: {exc}") from None
    if problem is not None:
        raise ScenarioError(f"{source}: {problem[1]}")


def _read_toml(path: Path, name: str) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError(f"{name}: no such scenario file") from None
    except IsADirectoryError:
        raise ScenarioError(f"{name}: is a directory, not a scenario file") from None
    except UnicodeDecodeError as exc:
        raise ScenarioError(f"{name}: not a text file ({exc.reason})") from None
    except OSError as exc:
        raise ScenarioError(f"{name}: cannot read: {exc.strerror or exc}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{name}: not valid TOML: {exc}") from None


def validate(data: Mapping[str, Any], source: str) -> ScenarioConfig:
    """Validate a scenario mapping.

    Raises:
        ScenarioError: The first problem, as one line.
    """
    try:
        return ScenarioConfig.model_validate(dict(data))
    except ValidationError as exc:
        # Where a union was tried, the deepest error is the one about the
        # variant the user meant (`{kind = "uniform"}` missing `high`), not
        # "must be a number" from the other branch.
        errors = exc.errors(include_url=False)
        best = max(errors, key=lambda e: len(_key_path(e["loc"], data, e["type"])))
        raise ScenarioError(format_error(best, data, source)) from None


# ----------------------------------------------------------------------------- error text


def format_error(error: ErrorDetails, data: Mapping[str, Any], source: str) -> str:
    """One line for one pydantic error: ``source: key.path: problem``."""
    path = _key_path(error["loc"], data, error["type"])
    kind = error["type"]
    if kind == "extra_forbidden":
        where = ".".join(path[:-1])
        problem = f"unknown key {path[-1]!r}"
        return f"{source}: {where}: {problem}" if where else f"{source}: {problem}"
    key = ".".join(path)
    return f"{source}: {key}: {_problem(error)}" if key else f"{source}: {_problem(error)}"


def _key_path(loc: tuple[int | str, ...], data: Any, kind: str = "missing") -> list[str]:
    """The key path of ``loc`` in the input, without union tags pydantic inserts.

    A part absent from the input is a key only at the end of the path of a
    ``missing`` or ``extra_forbidden`` error; elsewhere it is a union tag.
    """
    names_key = kind in ("missing", "extra_forbidden")
    out: list[str] = []
    node = data
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(part, int) and isinstance(node, list):
            out[-1:] = [f"{out[-1]}[{part}]"] if out else [f"[{part}]"]
            node = node[part] if 0 <= part < len(node) else None
            continue
        if isinstance(node, Mapping) and part not in node and not (last and names_key):
            continue  # a union member's tag (`lognormal`, `float`...), not a key
        if i > 0 and not isinstance(node, Mapping):
            continue  # a union member's tag below a scalar input
        out.append(str(part))
        node = node.get(part) if isinstance(node, Mapping) else None
    return out


def _got(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return repr(value)


_TYPE_WORDS = {
    "int_type": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "finite_number": "a finite number",
    "bool_type": "true or false",
    "string_type": "a string",
    "list_type": "an array",
    "dict_type": "a table",
    "model_type": "a table",
    "model_attributes_type": "a table",
}


_TAG_FUNCTIONS = {"_model_tag()": "'kind'", "_data_tag()": "'source'"}


def _problem(error: ErrorDetails) -> str:
    kind, ctx, value = error["type"], error.get("ctx") or {}, error.get("input")
    bounds = {
        "greater_than": ">",
        "greater_than_equal": ">=",
        "less_than": "<",
        "less_than_equal": "<=",
    }
    if kind in bounds:
        limit = next(iter(ctx.values()))
        return f"must be {bounds[kind]} {limit}, got {_got(value)}"
    if kind in _TYPE_WORDS:
        return f"must be {_TYPE_WORDS[kind]}, got {_got(value)}"
    if kind == "missing":
        return "required key is missing"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected', '?')}, got {_got(value)}"
    if kind == "union_tag_invalid":
        tags, tag = ctx.get("expected_tags"), ctx.get("tag")
        key = ctx.get("discriminator", "kind")
        key = _TAG_FUNCTIONS.get(key, key)  # a callable discriminator (user variants)
        return f"{key} must be one of {tags}, got {tag!r}"
    if kind == "string_pattern_mismatch" and ctx.get("pattern") == OBJECT_PATH:
        return f"must be package.module:function, got {_got(value)}"
    if kind in ("too_short", "too_long"):
        return str(error["msg"]).lower()
    if kind == "value_error":
        return str(error["msg"]).removeprefix("Value error, ")
    msg = str(error["msg"])
    return f"{msg[:1].lower()}{msg[1:]}, got {_got(value)}"
