"""Traces as JSON lines."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from typing import IO, Any, Final

from simkit.trace._events import (
    _FIELDS,
    _JSONL_HEADER_KEY,
    _JSONL_VERSION,
    _STR_FIELDS,
    Event,
    TraceFormatError,
    events_digest,
)

# ----------------------------------------------------------------------------- JSON lines


def write_jsonl(events: Iterable[Event], path_or_file: str | os.PathLike[str] | IO[str]) -> None:
    """Write events as JSON lines, after a header line with the digest.

    The header is ``{"simkit_trace": 1, "events": N, "digest": "..."}``; each
    following line is one event object with the :class:`Event` field names.

    Args:
        events: Events to write.
        path_or_file: A path, or a text file open for writing.
    """
    items = list(events)
    if isinstance(path_or_file, (str, os.PathLike)):
        with open(path_or_file, "w", encoding="utf-8") as f:
            _write_lines(items, f)
    else:
        _write_lines(items, path_or_file)


def _write_lines(events: list[Event], f: IO[str]) -> None:
    header: dict[str, Any] = {_JSONL_HEADER_KEY: _JSONL_VERSION, "events": len(events)}
    header["digest"] = events_digest(events)
    f.write(json.dumps(header) + "\n")
    for e in events:
        f.write(json.dumps(e.as_dict(), ensure_ascii=False, separators=(",", ":")) + "\n")


def read_jsonl(path: str | os.PathLike[str], *, verify: bool = True) -> list[Event]:
    """Read events written by :func:`write_jsonl` (the header line is optional).

    Args:
        path: The trace file.
        verify: Check the header's event count and digest, when present.

    Returns:
        The events, in file order.

    Raises:
        TraceFormatError: A line is not a valid event (the message names
            ``file:line``), or the header disagrees with the events.
        OSError: The file cannot be read.
    """
    name = os.fspath(path)
    events: list[Event] = []
    header: dict[str, Any] | None = None
    with open(name, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            obj = _parse_line(name, lineno, line)
            if _JSONL_HEADER_KEY in obj:
                header = _check_header(name, lineno, obj, first=not events and header is None)
            else:
                events.append(_event_from_obj(name, lineno, obj))
    if verify and header is not None:
        _verify_header(name, header, events)
    return events


def _parse_line(name: str, lineno: int, line: str) -> dict[str, Any]:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise TraceFormatError(f"{name}:{lineno}: not valid JSON: {exc.msg}") from None
    if not isinstance(obj, dict):
        raise TraceFormatError(f"{name}:{lineno}: expected a JSON object, got {_kind_of(obj)}")
    return obj


def _check_header(name: str, lineno: int, obj: dict[str, Any], *, first: bool) -> dict[str, Any]:
    if not first:
        raise TraceFormatError(f"{name}:{lineno}: trace header must be the first line")
    if obj[_JSONL_HEADER_KEY] != _JSONL_VERSION:
        version = obj[_JSONL_HEADER_KEY]
        raise TraceFormatError(f"{name}:{lineno}: unsupported trace format version {version!r}")
    return obj


def _verify_header(name: str, header: dict[str, Any], events: list[Event]) -> None:
    count = header.get("events")
    if count is not None and count != len(events):
        raise TraceFormatError(f"{name}: header says {count} events, file has {len(events)}")
    expected = header.get("digest")
    if expected is not None and expected != events_digest(events):
        raise TraceFormatError(f"{name}: events do not match the header digest (file edited?)")


def _event_from_obj(name: str, lineno: int, obj: dict[str, Any]) -> Event:
    unknown = sorted(set(obj) - set(_FIELDS))
    if unknown:
        raise TraceFormatError(f"{name}:{lineno}: unknown event field(s) {', '.join(unknown)}")
    for required in ("t", "seq", "kind"):
        if required not in obj:
            raise TraceFormatError(f"{name}:{lineno}: event has no {required!r} field")
    t = obj["t"]
    if isinstance(t, bool) or not isinstance(t, (int, float)):
        raise TraceFormatError(f"{name}:{lineno}: 't' must be a number, got {_kind_of(t)}")
    for field in ("seq", "nbytes"):
        value = obj.get(field, 0)
        if isinstance(value, bool) or not isinstance(value, int):
            got = _kind_of(value)
            raise TraceFormatError(f"{name}:{lineno}: {field!r} must be an integer, got {got}")
    for field in _STR_FIELDS:
        if not isinstance(obj.get(field, ""), str):
            got = _kind_of(obj[field])
            raise TraceFormatError(f"{name}:{lineno}: {field!r} must be a string, got {got}")
    return Event(**{**obj, "t": float(t)})


_JSON_KINDS: Final[dict[type, str]] = {
    dict: "an object",
    list: "an array",
    str: "a string",
    bool: "a boolean",
    int: "an integer",
    float: "a number",
}


def _kind_of(value: object) -> str:
    """How a JSON value is called in an error message."""
    return "null" if value is None else _JSON_KINDS.get(type(value), type(value).__name__)
