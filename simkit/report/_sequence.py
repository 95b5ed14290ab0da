"""The report's sequence diagram: one round, the server and a few chosen clients, as SVG.

Drawn here, in Python, as plain SVG: no JavaScript library, no network, no
browser needed; the page works offline, in a notebook, printed to PDF. (A
bundled Mermaid would add megabytes of JavaScript to every report and still
need a browser to draw.) The same diagram is also written as Mermaid text
(``sequence.mmd``) for those who want to restyle it.

Compact by default: the server plus ``k`` clients chosen to show what
happened (one that crashed or was declared gone, one that missed the
deadline, then ones that replied), participants in a fixed order (server,
then clients by name), heartbeats folded into a count and each handshake
(Join, Accept) into one note. A serverless protocol's diagram shows peers
only: one chosen the same way and those it exchanged most messages with.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from simkit.protocol import RoundRecord
from simkit.trace import HEARTBEAT_TYPES, Event, format_bytes
from simkit.trace._render import _escape, _mermaid_ids, message_items

__all__ = [
    "Diagram",
    "Step",
    "choose_clients",
    "choose_peers",
    "round_diagram",
    "run_diagram",
    "to_mermaid_text",
    "to_svg",
]

SERVER: Final = "server"
_HANDSHAKE_TYPES: Final = frozenset({"Join", "Accept", "Reject"})
_QUIET_KINDS: Final = frozenset({"log", "peer_up", "join", "accept", "actor_exit"})
_FAULTS: Final = frozenset({"crash", "actor_error", "peer_down", "partition", "lost"})


@dataclass(frozen=True, slots=True)
class Step:
    """One row: a message (``message``, ``lost``, ``sent``) or a ``note``.

    A note with ``dst == ""`` spans the diagram; otherwise it covers src..dst.
    """

    t: float
    kind: str
    src: str
    dst: str
    label: str
    tone: str = ""


@dataclass(slots=True)
class Diagram:
    """Participants (left to right), rows (top to bottom) and a caption."""

    title: str
    participants: list[str]
    steps: list[Step] = field(default_factory=list)
    caption: str = ""


def choose_clients(
    record: RoundRecord, drops: Sequence[tuple[float, str]], k: int = 3
) -> list[str]:
    """Up to ``k`` clients of the round that show what happened, sorted by name.

    One that crashed or was declared gone during the round, one that failed
    to answer, then ones that replied, then other sampled ones.
    """
    involved = set(record.sampled) | set(record.replied)
    down = sorted({n for t, n in drops if n in involved and record.t_start <= t <= record.t_end})
    groups = [down, sorted(set(record.failed) - set(down)), list(record.replied)]
    groups.append(sorted(set(record.sampled) - set(record.replied) - set(record.failed)))
    chosen: list[str] = []
    for group in groups:  # one of each kind first
        chosen += [n for n in group[:1] if n not in chosen]
    for group in groups:
        chosen += [n for n in group if n not in chosen][: max(0, k - len(chosen))]
    return sorted(chosen[:k])


def choose_peers(
    events: Sequence[Event], record: RoundRecord, drops: Sequence[tuple[float, str]], k: int = 4
) -> list[str]:
    """Serverless: one peer chosen as :func:`choose_clients` does, then the
    peers it exchanged most messages with during the round (sorted by name)."""
    first = choose_clients(record, drops, k=1)
    if not first:
        return []
    me, counts = first[0], dict[str, int]()
    for e in _window(events, record):
        if e.kind == "deliver" and e.type not in HEARTBEAT_TYPES and me in (e.src, e.dst):
            other = e.dst if e.src == me else e.src
            counts[other] = counts.get(other, 0) + 1
    ranked = sorted(counts, key=lambda n: (-counts[n], n))
    return sorted([me, *ranked[: k - 1]])


def run_diagram(
    events: Sequence[Event],
    record: RoundRecord,
    drops: Sequence[tuple[float, str]],
    server: str | None = SERVER,
) -> Diagram:
    """The report's diagram of ``record``: the server and chosen clients, or chosen peers."""
    if server is None:
        return round_diagram(events, record, choose_peers(events, record, drops), server=None)
    return round_diagram(events, record, choose_clients(record, drops), server=server)


def round_diagram(
    events: Sequence[Event],
    record: RoundRecord,
    clients: Sequence[str],
    *,
    server: str | None = SERVER,
    max_steps: int = 150,
) -> Diagram:
    """The diagram of one round between ``server`` and ``clients`` (in that order).

    ``server=None``: a serverless protocol, peers only.
    """
    lanes = [*([server] if server else []), *sorted(clients)]
    shown = set(lanes)
    window = _window(events, record)
    diagram = Diagram(f"round {record.round}", lanes)
    heartbeats = others = 0
    joined: set[str] = set()
    for e, style in message_items(window):
        if e.type in HEARTBEAT_TYPES:
            heartbeats += 1
            continue
        actors = [a for a in (e.src, e.dst) if a]
        if any(a not in shown for a in actors):
            others += style != "note"
            continue
        step = _step(e, style, joined)
        if step is not None:
            diagram.steps.append(step)
    if len(diagram.steps) > max_steps:
        cut = len(diagram.steps) - max_steps
        diagram.steps[max_steps:] = [Step(record.t_end, "note", "", "", f"... {cut} more rows")]
    total = len(set(record.sampled) | set(record.replied))
    who = f"the server and {len(lanes) - 1}" if server else f"{len(lanes)}"
    kind = "clients" if server else "peers"
    diagram.caption = (
        f"round {record.round}, {record.t_start:.3f} s to {record.t_end:.3f} s: {who} of the "
        f"round's {total} {kind}; {others} messages of other {kind} and {heartbeats} heartbeat "
        "messages not drawn; handshakes folded"
    )
    return diagram


def _window(events: Sequence[Event], record: RoundRecord) -> list[Event]:
    """The round's events: from its start to its end, up to the next round's mark."""
    out: list[Event] = []
    marks = 0
    for e in events:
        if e.t < record.t_start:
            continue
        if e.t > record.t_end:
            break
        if e.kind == "mark" and e.type == "round":
            marks += 1
            if marks > 1 or (e.t == record.t_end and e.t > record.t_start):
                break
        out.append(e)
    return out


def _step(e: Event, style: str, joined: set[str]) -> Step | None:
    if e.type in _HANDSHAKE_TYPES or e.kind == "peer_up":
        client = e.src if e.src != SERVER else e.dst
        if client in joined or (style == "note" and e.kind != "peer_up"):
            return None
        joined.add(client)
        return Step(e.t, "note", client, "", "joins (Join, Accept folded)", "fold")
    if style == "deliver":
        return Step(e.t, "message", e.src, e.dst, f"{e.type} ({format_bytes(e.nbytes)})")
    if style == "lost":
        return Step(e.t, "lost", e.src, e.dst, f"{e.type} lost ({e.info or 'unknown'})", "fault")
    if style == "send":
        return Step(e.t, "sent", e.src, e.dst, f"{e.type} ({format_bytes(e.nbytes)}) in flight")
    return _note(e)


def _note(e: Event) -> Step | None:
    if e.kind in _QUIET_KINDS or (e.kind == "actor_start" and e.info in ("", "incarnation 0")):
        return None
    if e.kind == "actor_start":
        return Step(e.t, "note", e.src, "", f"restarts ({e.info})", "mark")
    if e.kind == "mark":  # the server's marks span the diagram; a peer's sit over it
        over = "" if e.src == SERVER else e.src
        return Step(e.t, "note", over, "", e.info or e.type, "mark")
    if e.kind == "peer_down":
        text = f"{e.dst} declared gone: {e.info}" if e.info else f"{e.dst} declared gone"
        return Step(e.t, "note", e.src, e.dst, text, "fault")
    text = f"{e.kind} ({e.info})" if e.info else e.kind
    return Step(e.t, "note", e.src or e.dst, "", text, "fault" if e.kind in _FAULTS else "")


# ----------------------------------------------------------------------------- svg

_XMLNS: Final = ' xmlns="http://www.w3.org/2000/svg"'
_LEFT: Final = 78
_LANE: Final = 190
_ROW: Final = 26
_TOP: Final = 56
_TONES: Final = {
    "": ("#f7f7f7", "#999"),
    "mark": ("#e8f0fa", "#4c78a8"),
    "fault": ("#fde8e8", "#c0392b"),
    "fold": ("#f1f1f1", "#bbb"),
}


def to_svg(diagram: Diagram, ident: str = "seq", *, standalone: bool = True) -> str:
    """The diagram as an SVG element (ids prefixed by ``ident``).

    ``standalone=False`` leaves out the XML namespace, which HTML does not need
    (the page then holds no URL at all).
    """
    x = {name: _LEFT + _LANE * (i + 0.5) for i, name in enumerate(diagram.participants)}
    width = int(_LEFT + _LANE * len(diagram.participants) + 10)
    bottom = _TOP + _ROW * (len(diagram.steps) + 1)
    parts = [
        f'<svg{_XMLNS if standalone else ""} class="sequence" width="{width}" '
        f'height="{bottom + 40}" viewBox="0 0 {width} {bottom + 40}" '
        f'font-family="system-ui, sans-serif" font-size="12">',
        f"<title>{html.escape(diagram.title)}</title>",
        "<defs>",
        f'<marker id="{ident}-arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        'fill="#333"/></marker>',
        "</defs>",
    ]
    for name, cx in x.items():
        parts.append(
            f'<line x1="{cx}" y1="{_TOP - 14}" x2="{cx}" y2="{bottom}" stroke="#bbb" '
            'stroke-dasharray="4 3"/>'
        )
        for y in (12, bottom):
            parts.append(
                f'<rect x="{cx - 60}" y="{y}" width="120" height="26" rx="4" fill="#eef2f7" '
                f'stroke="#4c78a8"/><text x="{cx}" y="{y + 17}" text-anchor="middle" '
                f'font-weight="bold">{html.escape(name)}</text>'
            )
    for i, step in enumerate(diagram.steps):
        parts.append(_svg_step(step, _TOP + _ROW * i + 16, x, ident))
    parts.append("</svg>")
    return "\n".join(parts)


def _svg_step(step: Step, y: float, x: dict[str, float], ident: str) -> str:
    time = f'<text x="4" y="{y + 4}" fill="#888" font-size="10">{step.t:.3f} s</text>'
    label = html.escape(step.label)
    if step.kind == "note":
        return time + _svg_note(step, y, x, label)
    x1, x2 = x[step.src], x[step.dst]
    colour = "#c0392b" if step.kind == "lost" else "#333"
    dash = ' stroke-dasharray="5 3"' if step.kind in ("lost", "sent") else ""
    head = "" if step.kind == "lost" else f' marker-end="url(#{ident}-arrow)"'
    end = x2 if step.kind != "lost" else (x1 + x2) / 2
    cross = (
        f'<text x="{end}" y="{y + 5}" text-anchor="middle" fill="{colour}" '
        'font-size="14">&#215;</text>'
        if step.kind == "lost"
        else ""
    )
    return (
        f'{time}<line x1="{x1}" y1="{y}" x2="{end}" y2="{y}" stroke="{colour}"{dash}{head}/>'
        f'{cross}<text x="{(x1 + x2) / 2}" y="{y - 4}" text-anchor="middle" '
        f'fill="{colour}">{label}</text>'
    )


def _svg_note(step: Step, y: float, x: dict[str, float], label: str) -> str:
    fill, stroke = _TONES.get(step.tone, _TONES[""])
    if step.src and step.src in x:
        ends = [x[step.src], x.get(step.dst, x[step.src])]
        left, right = min(ends) - 80, max(ends) + 80
    else:
        left, right = min(x.values()) - 80, max(x.values()) + 80
    return (
        f'<rect x="{left}" y="{y - 11}" width="{right - left}" height="20" fill="{fill}" '
        f'stroke="{stroke}" rx="3"/><text x="{(left + right) / 2}" y="{y + 3}" '
        f'text-anchor="middle" fill="#222">{label}</text>'
    )


# ----------------------------------------------------------------------------- mermaid


def to_mermaid_text(diagram: Diagram) -> str:
    """The diagram as Mermaid ``sequenceDiagram`` source (participants in order)."""
    ids = _mermaid_ids(diagram.participants)
    lines = ["sequenceDiagram"]
    for name in diagram.participants:
        ident = ids[name]
        lines.append(
            f"    participant {name}" if ident == name else f"    participant {ident} as {name}"
        )
    arrows = {"message": "->>", "lost": "-x", "sent": "-)"}
    first, last = ids[diagram.participants[0]], ids[diagram.participants[-1]]
    for step in diagram.steps:
        text = _escape(f"{step.label} @{step.t:.3f}s")
        if step.kind in arrows:
            lines.append(f"    {ids[step.src]}{arrows[step.kind]}{ids[step.dst]}: {text}")
        elif step.src in ids:
            over = ",".join(dict.fromkeys(ids[a] for a in (step.src, step.dst) if a in ids))
            lines.append(f"    Note over {over}: {text}")
        else:
            lines.append(f"    Note over {first},{last}: {text}")
    return "\n".join(lines)
