"""Views of a trace: text timeline, Mermaid diagram, first divergence of two traces."""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Final

from simkit.trace._events import (
    _FIELDS,
    _MESSAGE_KINDS,
    _RECOVERY_KINDS,
    FAULT_KINDS,
    Event,
    filter_events,
)

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
    items = message_items(selected)
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


def message_items(events: Sequence[Event]) -> list[tuple[Event, str]]:
    """Pair sends with deliveries; return the events to draw with their style.

    Styles: ``deliver`` and ``lost`` (a message, drawn once, at its delivery or
    loss), ``send`` (a send never delivered nor lost in ``events``), ``note``
    (any other event).
    """
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
