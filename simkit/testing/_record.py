"""What a replay file records about the failure, in a header ``simkit run`` ignores.

A replay file is a scenario file. Its failure record lives in comment lines
that start with ``#:``; with that prefix removed they are a TOML document
with one ``[replay]`` table::

    #: [replay]
    #: failure = "InvariantViolation: round 2 asked ['c000'], already gone"
    #: check = "test_poll:check_poll"
    #: check_determinism = false
    #: trace_digest = "0b7527680f..."
    #: weights_digest = "6f46a1a1c2..."

so the scenario schema stays closed (``simkit run`` accepts the file as it
is) and ``simkit replay`` knows what to re-check and what the failing run was.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

__all__ = ["ReplayFileError", "ReplayRecord", "check_path", "parse_record", "record_lines"]

_PREFIX = "#:"


class ReplayFileError(ValueError):
    """A file ``simkit replay`` cannot use; the message is one line naming it."""


@dataclass(frozen=True, slots=True)
class ReplayRecord:
    """The failure a replay file reproduces.

    Attributes:
        failure: The failure, one line (``InvariantViolation: round 2 ...``),
            or ``None`` when the kit did not see it (a check made outside it).
        check: The property re-checked on the replayed run, as
            ``package.module:function`` taking the ``RunResult``.
        check_determinism: Whether the run was run twice and compared.
        trace_digest: The failing run's trace digest.
        weights_digest: The failing run's weights digest.
    """

    failure: str | None = None
    check: str | None = None
    check_determinism: bool = False
    trace_digest: str | None = None
    weights_digest: str | None = None


def check_path(check: Callable[..., Any] | None) -> str | None:
    """``module:qualname`` of a check function, or ``None`` if it cannot be imported by name."""
    if check is None:
        return None
    module = getattr(check, "__module__", None)
    qualname = getattr(check, "__qualname__", None)
    if not module or not qualname or "<" in qualname or module == "__main__":
        return None
    return f"{module}:{qualname}"


def record_lines(record: ReplayRecord) -> list[str]:
    """The record as ``#:`` comment lines (``None`` values left out)."""
    lines = [f"{_PREFIX} [replay]"]
    for f in fields(record):
        value = getattr(record, f.name)
        if isinstance(value, bool):
            lines.append(f"{_PREFIX} {f.name} = {'true' if value else 'false'}")
        elif value is not None:  # a JSON string is a valid TOML basic string
            lines.append(f"{_PREFIX} {f.name} = {json.dumps(value)}")
    return lines


def parse_record(text: str, source: str) -> ReplayRecord:
    """The record in a replay file's ``#:`` lines.

    Raises:
        ReplayFileError: No record, or one that is not valid.
    """
    lines = [line[len(_PREFIX) :].strip() for line in text.splitlines() if line.startswith(_PREFIX)]
    if not lines:
        raise ReplayFileError(
            f"{source}: not a replay file: no '#: [replay]' record "
            "(a plain scenario file runs with 'simkit run')"
        )
    try:
        data = tomllib.loads("\n".join(lines))
    except tomllib.TOMLDecodeError as exc:
        raise ReplayFileError(
            f"{source}: the '#:' replay record is not valid TOML: {exc}"
        ) from None
    table = data.get("replay")
    if set(data) != {"replay"} or not isinstance(table, dict):
        raise ReplayFileError(f"{source}: the '#:' lines must hold one [replay] table")
    return _record(table, source)


def _record(table: dict[str, Any], source: str) -> ReplayRecord:
    known = {f.name for f in fields(ReplayRecord)}
    unknown = sorted(set(table) - known)
    if unknown:
        raise ReplayFileError(f"{source}: replay: unknown key {unknown[0]!r}")
    for key, value in table.items():
        wanted = bool if key == "check_determinism" else str
        if not isinstance(value, wanted):
            raise ReplayFileError(
                f"{source}: replay.{key}: expected a {wanted.__name__}, got {value!r}"
            )
    check = table.get("check")
    if check is not None and not _is_object_path(check):
        raise ReplayFileError(
            f"{source}: replay.check: expected 'package.module:function', got {check!r}"
        )
    return ReplayRecord(**table)


def _is_object_path(text: str) -> bool:
    module, sep, name = text.partition(":")
    return bool(sep and module and name)
