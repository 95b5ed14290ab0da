"""Who dropped, and why: the split of a run's ``dropped`` clients by cause.

A lecturer needs to tell a client that crashed from one that was alive but
too slow. From the round records and the trace alone (any protocol):

- **crashed**: the client crashed or raised (a ``crash`` / ``actor_error``
  event), at any stage, including SecAgg stages after its masked input;
- **left**: it failed a round, and the server saw it go (a ``peer_down``
  event: a partition or a closed connection, say) or it ended its own run,
  without crashing;
- **timed_out**: it failed to answer a round in time while alive (a
  straggler past the deadline).

Each dropped client is in exactly one list, the first that applies in that
order, so the three lists partition ``RunResult.dropped``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

from simkit.protocol import RoundRecord
from simkit.trace import Event

__all__ = ["DROP_CAUSES", "drop_events", "dropped_by_cause", "dropped_in_round"]

DROP_CAUSES: Final = ("crashed", "left", "timed_out")
"""The keys of :func:`dropped_by_cause`, in priority order."""

_CRASH_KINDS: Final = frozenset({"crash", "actor_error"})


def _crashed(events: Iterable[Event], names: set[str]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for e in events:
        if e.kind in _CRASH_KINDS and e.src in names:
            out.setdefault(e.src, []).append(e.t)
    return out


def _left(events: Iterable[Event], names: set[str], last: float) -> dict[str, list[float]]:
    """Clients the server saw go, or that ended before the last round did."""
    out: dict[str, list[float]] = {}
    for e in events:
        if e.kind == "peer_down" and e.dst in names:
            out.setdefault(e.dst, []).append(e.t)
        elif e.kind == "actor_exit" and e.src in names and e.t < last:
            out.setdefault(e.src, []).append(e.t)
    return out


def dropped_by_cause(
    rounds: Sequence[RoundRecord], events: Sequence[Event], clients: Sequence[str]
) -> dict[str, list[str]]:
    """Split the dropped clients into ``crashed``, ``left`` and ``timed_out`` (sorted).

    Args:
        rounds: The run's round records.
        events: The trace (empty if it kept no events: then only round
            failures are known, all counted ``timed_out``).
        clients: The clients' names.
    """
    names = set(clients)
    last = rounds[-1].t_end if rounds else 0.0
    crashed = set(_crashed(events, names))
    failed = {n for r in rounds for n in r.failed if n in names}
    left = (set(_left(events, names, last)) & failed) - crashed
    return {
        "crashed": sorted(crashed),
        "left": sorted(left),
        "timed_out": sorted(failed - crashed - left),
    }


def drop_events(events: Iterable[Event]) -> list[tuple[float, str]]:
    """``(t, client)`` of every crash, error and ``peer_down`` in the trace, in order."""
    out: list[tuple[float, str]] = []
    for e in events:
        if e.kind in _CRASH_KINDS:
            out.append((e.t, e.src))
        elif e.kind == "peer_down":
            out.append((e.t, e.dst))
    return out


def dropped_in_round(record: RoundRecord, drops: Sequence[tuple[float, str]]) -> list[str]:
    """Clients of ``record`` that dropped during it: failed, crashed or seen gone.

    Under secure aggregation a client may crash after its masked input was
    used (it counts as replied); it is still a dropout of that round.

    Args:
        record: The round.
        drops: :func:`drop_events` of the trace.
    """
    taking_part = set(record.sampled) | set(record.replied)
    gone = set(record.failed)
    gone.update(n for t, n in drops if n in taking_part and record.t_start <= t <= record.t_end)
    return sorted(gone)
