"""What each client was doing over time, derived from the trace alone (any protocol).

The timeline's data. States, drawn as bars:

==============  ==============================================================
``idle``        alive and not taking part (not sampled, between rounds)
``training``    from the delivery of a training request (or the client's own
                ``ctx.mark("training")``: a peer of a serverless protocol
                trains unasked) to the client's next send
``secagg``      from the delivery of a SecAgg stage message to its answer
``sending``     from a client's send until that message is delivered or lost
``waiting``     its answer delivered, waiting for the server's next message
                within the same round
``dropped``     from a crash until its restart (or the end of the run)
==============  ==============================================================

and marks (zero-length spans): ``crash`` where it crashed, ``gone`` where the
server's heartbeat (or a closed connection) declared it gone.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from simkit.protocol import RoundRecord
from simkit.trace import HEARTBEAT_TYPES, Event

__all__ = [
    "MARKS",
    "STATES",
    "Span",
    "client_activity",
    "is_training_request",
    "replies",
    "reply_staleness",
]

STATES: Final = ("idle", "training", "secagg", "sending", "waiting", "dropped")
"""Bar states, in drawing order."""

MARKS: Final = ("crash", "gone")
"""Zero-length spans marking an instant."""

_DOWN_KINDS: Final = frozenset({"crash", "actor_error"})


@dataclass(frozen=True, slots=True)
class Span:
    """One bar of the timeline: ``state`` from ``start`` to ``end`` (virtual seconds)."""

    start: float
    end: float
    state: str


def is_training_request(message_type: str) -> bool:
    """``TrainRequest`` and its kin (``Train...Request``): a request to train locally."""
    return message_type.startswith("Train") and message_type.endswith("Request")


class _Client:
    """Bookkeeping of one client while scanning the trace."""

    __slots__ = ("alive_since", "busy", "down_since", "in_flight", "spans", "waiting_since")

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.alive_since: float | None = None
        self.down_since: float | None = None
        self.busy: tuple[str, float] | None = None
        self.waiting_since: float | None = None
        self.in_flight: dict[tuple[str, str], list[float]] = {}

    def close_busy(self, t: float) -> None:
        if self.busy is not None:
            self.spans.append(Span(self.busy[1], t, self.busy[0]))
            self.busy = None

    def close_waiting(self, t: float, round_end: Callable[[float], float]) -> None:
        if self.waiting_since is not None:
            start = self.waiting_since
            self.spans.append(Span(start, min(t, round_end(start)), "waiting"))
            self.waiting_since = None

    def stop(self, t: float, round_end: Callable[[float], float]) -> None:
        """The client stops (crash, error, exit): close what it was doing."""
        self.close_busy(t)
        self.close_waiting(t, round_end)
        if self.alive_since is not None:
            self.spans.append(Span(self.alive_since, t, "idle"))
            self.alive_since = None
        self.in_flight.clear()


def client_activity(
    events: Iterable[Event],
    clients: Sequence[str],
    end: float,
    rounds: Sequence[RoundRecord] = (),
    *,
    training_request: Callable[[str], bool] = is_training_request,
) -> dict[str, list[Span]]:
    """What each client was doing over time (the module docstring lists the states).

    Args:
        events: The trace events, in order.
        clients: The clients' names.
        end: The end of the run (virtual seconds).
        rounds: The round records: ``waiting`` ends at the end of its round.
        training_request: Which message types start ``training``.

    Returns:
        Name -> spans: the ``idle`` background first, then the other states
        and the marks in time order.
    """
    ends = sorted(r.t_end for r in rounds)

    def round_end(t: float) -> float:
        i = bisect.bisect_left(ends, t)
        return ends[i] if i < len(ends) else end

    state = {name: _Client() for name in clients}
    for e in events:
        if e.type in HEARTBEAT_TYPES:
            continue
        if e.src in state:
            _from_client(state[e.src], e, round_end)
        if e.dst in state:  # both, between peers of a serverless protocol
            _to_client(state[e.dst], e, round_end, training_request)
    return {name: _close(client, end, round_end) for name, client in state.items()}


def _from_client(client: _Client, e: Event, round_end: Callable[[float], float]) -> None:
    if e.kind == "actor_start":
        if client.down_since is not None:
            client.spans.append(Span(client.down_since, e.t, "dropped"))
            client.down_since = None
        client.alive_since = e.t
    elif e.kind in _DOWN_KINDS:
        client.stop(e.t, round_end)
        client.spans.append(Span(e.t, e.t, "crash"))
        client.down_since = e.t if client.down_since is None else client.down_since
    elif e.kind == "actor_exit":
        client.stop(e.t, round_end)
    elif e.kind == "mark" and e.type == "training":
        client.close_busy(e.t)
        client.close_waiting(e.t, round_end)
        client.busy = ("training", e.t)
    elif e.kind == "send":
        client.close_busy(e.t)
        client.close_waiting(e.t, round_end)
        client.in_flight.setdefault((e.dst, e.digest), []).append(e.t)
    elif e.kind in ("deliver", "lost"):
        sent = client.in_flight.get((e.dst, e.digest))
        if sent:
            client.spans.append(Span(sent.pop(0), e.t, "sending"))
            if e.kind == "deliver" and client.alive_since is not None and client.busy is None:
                client.waiting_since = e.t


def _to_client(
    client: _Client,
    e: Event,
    round_end: Callable[[float], float],
    training_request: Callable[[str], bool],
) -> None:
    if e.kind == "peer_down":
        client.spans.append(Span(e.t, e.t, "gone"))
        return
    if e.kind != "deliver" or client.alive_since is None:
        return
    client.close_waiting(e.t, round_end)
    if training_request(e.type):
        client.close_busy(e.t)
        client.busy = ("training", e.t)
    elif e.type.startswith("SecAgg") and client.busy is None:
        client.busy = ("secagg", e.t)


def _close(client: _Client, end: float, round_end: Callable[[float], float]) -> list[Span]:
    background: list[Span] = []
    client.stop(end, round_end)
    if client.down_since is not None:
        client.spans.append(Span(client.down_since, end, "dropped"))
    others: list[Span] = []
    for span in client.spans:
        (background if span.state == "idle" else others).append(span)
    return background + sorted(others, key=lambda s: (s.start, s.end))


def replies(
    events: Iterable[Event], rounds: Sequence[RoundRecord], server: str = "server"
) -> list[tuple[str, float, int]]:
    """``(client, t, staleness)`` of every training reply the server received, in order.

    A reply's staleness is the number of rounds (server updates) that ended
    between the server's sending the request it answers and the reply's
    arrival: 0 means the client trained from the current global model.
    FedBuff's buffer weighs updates by it (and discards the stalest: they
    are counted here too).
    """
    ends = [r.t_end for r in rounds]
    out: list[tuple[str, float, int]] = []
    asked: dict[str, float] = {}
    for e in events:
        if e.kind == "send" and e.src == server and is_training_request(e.type):
            asked[e.dst] = e.t
        elif e.kind == "deliver" and e.dst == server and e.src in asked:
            if e.type.startswith("Train"):
                since = asked.pop(e.src)
                stale = bisect.bisect_left(ends, e.t) - bisect.bisect_right(ends, since)
                out.append((e.src, e.t, max(0, stale)))
    return out


def reply_staleness(
    events: Iterable[Event], rounds: Sequence[RoundRecord], server: str = "server"
) -> list[list[int]]:
    """Per round, the staleness of each reply the server received during it (:func:`replies`).

    Returns:
        One list per round record (same order), of non-negative integers.
    """
    ends = [r.t_end for r in rounds]
    out: list[list[int]] = [[] for _ in rounds]
    for _, t, stale in replies(events, rounds, server) if rounds else []:
        out[min(bisect.bisect_left(ends, t), len(rounds) - 1)].append(stale)
    return out
