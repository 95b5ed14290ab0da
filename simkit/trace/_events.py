"""Trace events, the recorder and its digest, filters."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, Final, TypeAlias

import msgpack

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


TRACKED_KINDS = ("actor_error", "actor_exit", "crash", "peer_down")
"""Event kinds a :class:`Trace` indexes as it records (:meth:`Trace.events_of`):
at most a few per actor, read by the summary without scanning every event."""


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
        "_tracked",
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
        self._tracked: dict[str, list[EventTuple]] = {kind: [] for kind in TRACKED_KINDS}
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
        counts = self._counts
        tracked = [counts[kind] for kind in TRACKED_KINDS]
        counts.update(map(itemgetter(2), batch))
        for row in batch:
            if row[2] == "send":
                self.bytes_sent += row[6]
                if row[5] not in HEARTBEAT_TYPES:
                    self.app_bytes_sent += row[6]
        if tracked != [counts[kind] for kind in TRACKED_KINDS]:  # rare: ends, crashes
            index = self._tracked
            for row in batch:
                if row[2] in index:
                    index[row[2]].append(row)

    def sources(self, kind: str) -> set[str]:
        """The ``src`` of every recorded event of ``kind``, one of :data:`TRACKED_KINDS`.

        Raises:
            KeyError: ``kind`` is not tracked.
        """
        return {e.src for e in self.events_of(kind)}

    def events_of(self, *kinds: str) -> list[Event]:
        """The recorded events of ``kinds`` (each one of :data:`TRACKED_KINDS`), in order.

        Indexed as events are recorded, so asking costs nothing at any trace
        size, kept or not.

        Raises:
            KeyError: A kind is not tracked.
        """
        missing = [k for k in kinds if k not in self._tracked]
        if missing:
            raise KeyError(f"{missing[0]!r} events are not tracked (only {TRACKED_KINDS})")
        self._flush()
        rows = sorted((row for k in kinds for row in self._tracked[k]), key=itemgetter(1))
        return [Event(*row) for row in rows]

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
