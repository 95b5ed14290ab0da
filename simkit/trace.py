"""The trace: the witness of a run.

Every send, delivery, loss, fault, actor lifecycle event and protocol mark is
one :class:`Event` ``(t, seq, kind, src, dst, type, nbytes, digest, info)``.
A :class:`Trace` records them and keeps a running SHA-256 digest over their
canonical msgpack encoding, so that the same scenario and seed give the same
digest on any machine (DESIGN.md, determinism contract, rule 6).

Canonical encoding: each event is ``msgpack.packb([t, seq, kind, src, dst,
type, nbytes, digest, info], use_bin_type=True)`` with ``t`` a float64; the
trace digest is the SHA-256 of the concatenation of these encodings, in record
order. Concatenation makes the digest independent of how events are batched
before hashing, which lets :meth:`Trace.record` defer the hashing work.

Nothing here reads the wall clock. Besides recording, the module exports and
reads traces as JSON lines, finds the first divergence between two traces and
renders them as a text timeline or a Mermaid sequence diagram.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import IO, Any, Final, TypeAlias

import msgpack

__all__ = [
    "FAULT_KINDS",
    "HEARTBEAT_TYPES",
    "Event",
    "EventTuple",
    "Listener",
    "Trace",
    "TraceFormatError",
    "events_digest",
    "filter_events",
    "first_divergence",
    "format_bytes",
    "format_divergence",
    "format_event",
    "read_jsonl",
    "timeline_text",
    "to_mermaid",
    "write_jsonl",
]

HEARTBEAT_TYPES: Final = frozenset({"Ping", "Pong"})
"""Message types of the liveness protocol; hidden from views by default."""

FAULT_KINDS: Final = frozenset(
    {
        "lost",
        "crash",
        "partition",
        "degrade",
        "slowdown",
        "reject",
        "peer_down",
        "actor_error",
        "decode_error",
    }
)
"""Event kinds that mark something going wrong (``!!`` in the timeline)."""

_RECOVERY_KINDS: Final = frozenset({"restart", "heal", "join", "accept"})
_MESSAGE_KINDS: Final = frozenset({"send", "deliver", "lost"})

EventTuple: TypeAlias = tuple[float, int, str, str, str, str, int, str, str]
"""An event as a plain tuple, in canonical field order."""

Listener: TypeAlias = Callable[[float, str, str, str, str, int], None]
"""A record hook, called with ``(t, kind, src, dst, type, nbytes)``."""

_FIELDS: Final = ("t", "seq", "kind", "src", "dst", "type", "nbytes", "digest", "info")
_STR_FIELDS: Final = ("kind", "src", "dst", "type", "digest", "info")
_BATCH: Final = 4096  # events hashed per msgpack call; any value gives the same digest
_JSONL_HEADER_KEY: Final = "simkit_trace"
_JSONL_VERSION: Final = 1


class TraceFormatError(ValueError):
    """A trace file (JSON lines) is malformed; the message names file:line."""


@dataclass(frozen=True, slots=True)
class Event:
    """One recorded event.

    Attributes:
        t: Virtual (or, in real mode, loop) time in seconds.
        seq: Global sequence number, 0, 1, 2, ... in record order.
        kind: What happened: ``"send"``, ``"deliver"``, ``"lost"``,
            ``"crash"``, ``"mark"``, ... (an open set).
        src: The acting or sending actor, or ``""``.
        dst: The receiving or affected actor, or ``""``.
        type: A message type name (``"TrainRequest"``) or a label.
        nbytes: Payload size in bytes.
        digest: Payload digest (hex), or ``""``.
        info: Free-text detail (a loss reason, an error text, a crash mode).
    """

    t: float
    seq: int
    kind: str
    src: str = ""
    dst: str = ""
    type: str = ""
    nbytes: int = 0
    digest: str = ""
    info: str = ""

    def is_heartbeat(self) -> bool:
        """Whether this event concerns a heartbeat message (Ping/Pong)."""
        return self.type in HEARTBEAT_TYPES

    def as_tuple(self) -> EventTuple:
        """The event's fields in canonical order."""
        return (
            self.t,
            self.seq,
            self.kind,
            self.src,
            self.dst,
            self.type,
            self.nbytes,
            self.digest,
            self.info,
        )

    def as_dict(self) -> dict[str, Any]:
        """The event as a JSON-ready mapping, keys in canonical order."""
        return dict(zip(_FIELDS, self.as_tuple(), strict=True))


# ----------------------------------------------------------------------------- hashing


def _pack_rows(rows: Sequence[EventTuple]) -> bytes:
    """Concatenated canonical encodings of ``rows``, in one msgpack call.

    ``packb(list)`` is an array header followed by each element's encoding;
    stripping the header leaves exactly the concatenation we hash.
    """
    try:
        packed: bytes = msgpack.packb(rows, use_bin_type=True)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"cannot encode trace event: {_find_bad_row(rows)}") from exc
    header = msgpack.Packer().pack_array_header(len(rows))
    return packed[len(header) :]


def _find_bad_row(rows: Sequence[EventTuple]) -> str:
    for row in rows:
        for name, value in zip(_FIELDS, row, strict=True):
            expected: type = float if name == "t" else int if name in ("seq", "nbytes") else str
            if type(value) is not expected:
                return f"field {name!r} must be {expected.__name__}, got {value!r} in {row!r}"
    return "unencodable value"


def events_digest(events: Iterable[Event]) -> str:
    """SHA-256 hex digest of ``events``, by the same algorithm as :meth:`Trace.digest`.

    Args:
        events: Events in record order (e.g. read back with :func:`read_jsonl`).

    Returns:
        The 64-character hex digest.
    """
    sha = hashlib.sha256()
    batch: list[EventTuple] = []
    for event in events:
        batch.append(event.as_tuple())
        if len(batch) >= _BATCH:
            sha.update(_pack_rows(batch))
            batch.clear()
    if batch:
        sha.update(_pack_rows(batch))
    return sha.hexdigest()


# ----------------------------------------------------------------------------- recorder


class Trace:
    """Records events, their running digest and counters.

    :meth:`record` is the hot path (about a million calls in a large run): it
    appends one tuple and nothing more; hashing and counting happen in batches,
    and :class:`Event` objects are built only when :attr:`events` is read.

    Args:
        keep: Keep the events. With ``keep=False`` only the digest and the
            counters survive, in constant memory.
        heartbeats: Record heartbeat events (Ping/Pong). With ``False`` they
            are neither kept, digested nor counted (listeners still see them).
    """

    __slots__ = (
        "_counts",
        "_events",
        "_flush_at",
        "_hashed",
        "_keep",
        "_listeners",
        "_rows",
        "_seq",
        "_sha",
        "_skip_heartbeats",
        "app_bytes_sent",
        "bytes_sent",
    )

    def __init__(self, *, keep: bool = True, heartbeats: bool = True) -> None:
        self._keep = keep
        self._skip_heartbeats = not heartbeats
        self._rows: list[EventTuple] = []
        self._hashed = 0  # rows[:_hashed] are digested and counted
        self._flush_at = _BATCH
        self._seq = 0
        self._sha = hashlib.sha256()
        self._counts: Counter[str] = Counter()
        self._events: list[Event] = []  # cache of rows[:len(_events)] as Events
        self._listeners: list[Listener] = []
        self.bytes_sent = 0
        """Total ``nbytes`` of ``send`` events (including heartbeats)."""
        self.app_bytes_sent = 0
        """Total ``nbytes`` of ``send`` events other than heartbeats."""

    def record(
        self,
        t: float,
        kind: str,
        src: str = "",
        dst: str = "",
        type: str = "",
        nbytes: int = 0,
        digest: str = "",
        info: str = "",
    ) -> None:
        """Record one event at time ``t`` (see :class:`Event` for the fields).

        Listeners are called after the event is recorded, with every event
        offered, recorded or not: whether heartbeats are traced must not change
        what a fault trigger sees, hence what the run does.
        """
        if not (self._skip_heartbeats and type in HEARTBEAT_TYPES):
            seq = self._seq
            self._seq = seq + 1
            rows = self._rows
            rows.append((float(t), seq, kind, src, dst, type, nbytes, digest, info))
            if len(rows) >= self._flush_at:
                self._flush()
        if self._listeners:
            for fn in self._listeners:
                fn(t, kind, src, dst, type, nbytes)

    def add_listener(self, fn: Listener) -> None:
        """Call ``fn(t, kind, src, dst, type, nbytes)`` on every record."""
        self._listeners.append(fn)

    def remove_listener(self, fn: Listener) -> None:
        """Stop calling ``fn``; raises ``ValueError`` if it is not registered."""
        self._listeners.remove(fn)

    def _flush(self) -> None:
        """Digest and count the rows recorded since the last flush."""
        rows = self._rows
        batch = rows[self._hashed :]
        if batch:
            self._sha.update(_pack_rows(batch))
            self._count(batch)
        if self._keep:
            self._hashed = len(rows)
        else:
            rows.clear()
            self._hashed = 0
        self._flush_at = self._hashed + _BATCH

    def _count(self, batch: list[EventTuple]) -> None:
        self._counts.update(map(itemgetter(2), batch))
        for row in batch:
            if row[2] == "send":
                self.bytes_sent += row[6]
                if row[5] not in HEARTBEAT_TYPES:
                    self.app_bytes_sent += row[6]

    @property
    def keep(self) -> bool:
        """Whether events are kept (see the constructor)."""
        return self._keep

    @property
    def heartbeats(self) -> bool:
        """Whether heartbeat events are recorded (see the constructor)."""
        return not self._skip_heartbeats

    @property
    def events(self) -> list[Event]:
        """The recorded events, in order (a new list on each access).

        Raises:
            ValueError: The trace was created with ``keep=False``.
        """
        if not self._keep:
            raise ValueError(
                "events are not kept: Trace(keep=False) records only digest and counts"
            )
        cache = self._events
        if len(cache) < len(self._rows):
            cache.extend(Event(*row) for row in self._rows[len(cache) :])
        return list(cache)

    def __len__(self) -> int:
        """Number of events recorded."""
        return self._seq

    def __iter__(self) -> Iterator[Event]:
        return iter(self.events)

    def digest(self) -> str:
        """SHA-256 hex digest over every recorded event, callable at any time."""
        self._flush()
        return self._sha.hexdigest()

    def count(self, kind: str) -> int:
        """Number of recorded events of ``kind``."""
        self._flush()
        return self._counts[kind]

    def counts(self) -> dict[str, int]:
        """Number of recorded events per kind, sorted by kind."""
        self._flush()
        return dict(sorted(self._counts.items()))

    @property
    def message_count(self) -> int:
        """Number of ``send`` events (including heartbeats, if recorded)."""
        return self.count("send")

    @property
    def lost_count(self) -> int:
        """Number of ``lost`` events."""
        return self.count("lost")

    def stats(self) -> dict[str, int]:
        """Messages sent, bytes sent (all and application-only) and losses."""
        self._flush()
        return {
            "events": self._seq,
            "messages": self._counts["send"],
            "bytes": self.bytes_sent,
            "app_bytes": self.app_bytes_sent,
            "lost": self._counts["lost"],
        }

    def __repr__(self) -> str:
        return f"<Trace {self._seq} events keep={self._keep} heartbeats={self.heartbeats}>"


# ----------------------------------------------------------------------------- filters


def filter_events(
    events: Iterable[Event],
    *,
    kinds: Iterable[str] | None = None,
    actors: Iterable[str] | None = None,
    hide_heartbeats: bool = True,
    t_from: float | None = None,
    t_to: float | None = None,
) -> list[Event]:
    """Select events.

    Args:
        events: Events to filter.
        kinds: Keep only these kinds (all when ``None``).
        actors: Keep events whose ``src`` or ``dst`` is one of these, and the
            events that name no actor at all (a global partition, say).
        hide_heartbeats: Drop Ping/Pong events.
        t_from: Keep events at or after this time.
        t_to: Keep events at or before this time.

    Returns:
        The selected events, in their original order.
    """
    kind_set = None if kinds is None else frozenset(kinds)
    actor_set = None if actors is None else frozenset(actors)

    def keep(e: Event) -> bool:
        return not (
            (hide_heartbeats and e.type in HEARTBEAT_TYPES)
            or (kind_set is not None and e.kind not in kind_set)
            or (actor_set is not None and not _involves(e, actor_set))
            or (t_from is not None and e.t < t_from)
            or (t_to is not None and e.t > t_to)
        )

    return [e for e in events if keep(e)]


def _involves(e: Event, actors: frozenset[str]) -> bool:
    return e.src in actors or e.dst in actors or not (e.src or e.dst)


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


# ----------------------------------------------------------------------------- divergence


def first_divergence(
    a: Sequence[Event], b: Sequence[Event]
) -> tuple[int, Event | None, Event | None] | None:
    """Find the first index at which two traces differ.

    Args:
        a: The first trace's events.
        b: The second trace's events.

    Returns:
        ``None`` when the traces are equal, else ``(index, a[index], b[index])``
        where a missing event (one trace is a prefix of the other) is ``None``.
    """
    for i, (ea, eb) in enumerate(zip(a, b, strict=False)):
        if ea != eb:
            return i, ea, eb
    if len(a) == len(b):
        return None
    i = min(len(a), len(b))
    return i, a[i] if i < len(a) else None, b[i] if i < len(b) else None


def format_divergence(
    a: Sequence[Event],
    b: Sequence[Event],
    *,
    context: int = 3,
    names: tuple[str, str] = ("A", "B"),
) -> str:
    """Describe where two traces diverge, for humans.

    Args:
        a: The first trace's events.
        b: The second trace's events.
        context: How many common events to show before the divergence.
        names: Labels of the two traces.

    Returns:
        Several lines: the index, the common context, both events and which of
        their fields differ; or one line when the traces are identical.
    """
    found = first_divergence(a, b)
    if found is None:
        return f"traces are identical ({len(a)} events)"
    i, ea, eb = found
    na, nb = names
    lines = [f"traces diverge at event #{i} ({na}: {len(a)} events, {nb}: {len(b)} events)"]
    if i > 0:
        lines.append("  common context:")
        lines += [f"    {format_event(e, details=True)}" for e in a[max(0, i - context) : i]]
    width = max(len(na), len(nb))
    lines.append(f"  {na:<{width}}: {_describe(ea)}")
    lines.append(f"  {nb:<{width}}: {_describe(eb)}")
    if ea is not None and eb is not None:
        fields = [
            f for f, x, y in zip(_FIELDS, ea.as_tuple(), eb.as_tuple(), strict=True) if x != y
        ]
        lines.append(f"  differing fields: {', '.join(fields)}")
    return "\n".join(lines)


def _describe(e: Event | None) -> str:
    return "<end of trace>" if e is None else format_event(e, details=True)


# ----------------------------------------------------------------------------- text


def format_bytes(n: int) -> str:
    """Human-readable size with SI units: ``512 B``, ``1.2 kB``, ``3.4 MB``."""
    if abs(n) < 1000:
        return f"{n} B"
    value = float(n)
    for unit in ("kB", "MB", "GB", "TB"):
        value /= 1000.0
        if abs(round(value, 1)) < 1000 or unit == "TB":
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")


def format_event(e: Event, *, details: bool = False) -> str:
    """One line describing ``e``: ``12.500s     send     c03 -> server  TrainReply  1.2 kB``.

    Args:
        e: The event.
        details: Also show the sequence number and the payload digest.
    """
    prefix = f"#{e.seq:<5}" if details else ""
    line = f"{prefix}{e.t:10.3f}s  {_marker(e.kind)}{_body(e)}"
    if details and e.digest:
        line += f"  [{e.digest[:16]}]"
    return line


def _marker(kind: str) -> str:
    if kind in FAULT_KINDS:
        return "!! "
    if kind in _RECOVERY_KINDS:
        return "++ "
    if kind == "mark":
        return "-- "
    return "   "


def _body(e: Event) -> str:
    if e.kind in _MESSAGE_KINDS:
        parts = [f"{e.src} -> {e.dst}", e.type, format_bytes(e.nbytes)]
    else:
        parts = [f"{e.src} -> {e.dst}" if e.src and e.dst else e.src or e.dst, e.type]
    text = "  ".join([f"{e.kind:<7}", *(p for p in parts if p)])
    return f"{text}  ({e.info})" if e.info else text


def timeline_text(
    events: Sequence[Event], *, hide_heartbeats: bool = True, width: int = 100
) -> str:
    """A compact text timeline, one line per event, after a summary header.

    Faults are marked ``!!``, recoveries ``++`` and protocol marks ``--``.

    Args:
        events: Events to show.
        hide_heartbeats: Leave out Ping/Pong events.
        width: Maximum line length; longer lines are cut with ``...``.

    Returns:
        The timeline, lines joined with newlines.
    """
    shown = filter_events(events, hide_heartbeats=hide_heartbeats)
    lines = [_clip(_timeline_header(events, shown), width)]
    lines += [_clip(format_event(e), width) for e in shown]
    return "\n".join(lines)


def _timeline_header(events: Sequence[Event], shown: list[Event]) -> str:
    hidden = len(events) - len(shown)
    if not events:
        return "trace: 0 events"
    start, end = events[0].t, events[-1].t
    text = f"trace: {len(events)} events, {start:.3f}s .. {end:.3f}s (duration {end - start:.3f}s)"
    return f"{text}, {hidden} heartbeat events hidden" if hidden else text


def _clip(line: str, width: int) -> str:
    return line if len(line) <= width else line[: max(0, width - 3)] + "..."


# ----------------------------------------------------------------------------- mermaid

_MERMAID_KEYWORDS: Final = frozenset(
    {"end", "participant", "actor", "loop", "alt", "else", "opt", "par", "and", "rect", "note"}
    | {"critical", "break", "box", "activate", "deactivate", "autonumber", "title", "over"}
)
_SAFE_ID: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_ESCAPES: Final = {"#": "#35;", ";": "#59;", "<": "#60;", ">": "#62;", "\n": " ", "\r": " "}


def to_mermaid(
    events: Sequence[Event],
    *,
    hide_heartbeats: bool = True,
    actors: Iterable[str] | None = None,
    max_events: int = 400,
    t_from: float | None = None,
    t_to: float | None = None,
) -> str:
    """Render events as a Mermaid ``sequenceDiagram``.

    A message is drawn once, at its **delivery** time (the order in which
    receivers saw messages is what a protocol reacts to): ``deliver`` gives
    ``src->>dst: Type (1.2 kB) @t``; ``lost`` gives ``src-xdst: Type lost
    (reason) @t``. A ``send`` without a later delivery or loss (still in
    flight at the end, or outside the window) is drawn at send time as an open
    arrow ``src-)dst: Type (1.2 kB) @t sent``. Other kinds become notes:
    ``mark`` events show their label, faults their kind and detail.
    Participants appear in order of first appearance.

    Args:
        events: Events to draw.
        hide_heartbeats: Leave out Ping/Pong events.
        actors: Draw only events involving these actors (see :func:`filter_events`).
        max_events: Draw at most this many arrows and notes, then a final note.
        t_from: Draw events at or after this time.
        t_to: Draw events at or before this time.

    Returns:
        The diagram source, lines joined with newlines.
    """
    selected = filter_events(
        events, actors=actors, hide_heartbeats=hide_heartbeats, t_from=t_from, t_to=t_to
    )
    items = _mermaid_items(selected)
    # A note needs a participant to hang on, even in a trace without actors.
    names = _participants(e for e, _ in items) or (["trace"] if items else [])
    ids = _mermaid_ids(names)
    lines = ["sequenceDiagram"]
    lines += [_participant_line(n, ids[n]) for n in names]
    lines += [_mermaid_line(e, style, ids, names) for e, style in items[:max_events]]
    if len(items) > max_events:
        note = f"... {len(items) - max_events} more events not shown (max_events={max_events})"
        lines.append(_note(names, [], note, ids))
    return "\n".join(lines)


def _mermaid_items(events: list[Event]) -> list[tuple[Event, str]]:
    """Pair sends with deliveries; return the events to draw with their style."""
    in_flight: dict[tuple[str, str, str, int, str], deque[int]] = {}
    drawn: list[tuple[Event, str] | None] = [None] * len(events)
    for i, e in enumerate(events):
        key = (e.src, e.dst, e.type, e.nbytes, e.digest)
        if e.kind == "send":
            in_flight.setdefault(key, deque()).append(i)
        elif e.kind in ("deliver", "lost"):
            pending = in_flight.get(key)
            if pending:
                pending.popleft()
            drawn[i] = (e, e.kind)
        else:
            drawn[i] = (e, "note")
    for pending in in_flight.values():
        for i in pending:
            drawn[i] = (events[i], "send")
    return [item for item in drawn if item is not None]


def _participants(events: Iterable[Event]) -> list[str]:
    seen: dict[str, None] = {}
    for e in events:
        for name in (e.src, e.dst):
            if name:
                seen.setdefault(name, None)
    return list(seen)


def _mermaid_ids(names: list[str]) -> dict[str, str]:
    ids: dict[str, str] = {}
    for i, name in enumerate(names):
        safe = _SAFE_ID.match(name) and name.lower() not in _MERMAID_KEYWORDS
        ids[name] = name if safe else f"p{i}_"
    return ids


def _participant_line(name: str, ident: str) -> str:
    if ident == name:
        return f"    participant {name}"
    return f"    participant {ident} as {_escape(name)}"


def _escape(text: str) -> str:
    return "".join(_ESCAPES.get(c, c) for c in text)


def _mermaid_line(e: Event, style: str, ids: dict[str, str], names: list[str]) -> str:
    at = f"@{e.t:.3f}s"
    if style == "deliver":
        label = f"{e.type} ({format_bytes(e.nbytes)}) {at}"
        return f"    {ids[e.src]}->>{ids[e.dst]}: {_escape(label)}"
    if style == "lost":
        label = f"{e.type} lost ({e.info or 'unknown'}) {at}"
        return f"    {ids[e.src]}-x{ids[e.dst]}: {_escape(label)}"
    if style == "send":
        label = f"{e.type} ({format_bytes(e.nbytes)}) {at} sent"
        return f"    {ids[e.src]}-){ids[e.dst]}: {_escape(label)}"
    return _note(names, [a for a in (e.src, e.dst) if a], f"{_note_text(e)} {at}", ids)


def _note_text(e: Event) -> str:
    if e.kind == "mark":
        text = e.type or "mark"
    else:
        text = f"{e.kind} {e.type}".strip()
    return f"{text} ({e.info})" if e.info else text


def _note(names: list[str], over: list[str], text: str, ids: dict[str, str]) -> str:
    """A note over ``over`` (one or two actors), or across the diagram if empty."""
    if not over:
        over = [names[0], names[-1]]
    span = ",".join(dict.fromkeys(ids[a] for a in over))
    return f"    Note over {span}: {_escape(text)}"
