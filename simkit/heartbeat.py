"""Heartbeats: configuration and a pure, sans-I/O failure detector.

Each side of a connection makes sure the other hears from it at least every
``interval`` seconds: when it has sent nothing else for ``interval``, it sends
a ``Ping``. A ``Ping`` is answered with a ``Pong`` (which gives the round-trip
time) unless the answering side has spoken within the last half interval: its
own next word is due soon anyway, and two sides ticking in step would
otherwise exchange four messages per interval instead of two. Anything
received counts as a sign of life.

A peer's next word is due within ``interval`` of its last one; each
interval that passes without a word is a missed heartbeat, and after
``misses`` of them the peer is declared gone: ``interval * misses`` after the
last message heard. A peer that crashes silently at time ``t`` had spoken at
most ``interval`` before ``t``, so it is declared gone between
``t + interval * (misses - 1)`` and ``t + interval * misses`` (shifted by the
link latency): within ``interval * misses`` of the crash. ``misses`` is at
least 2, since one late heartbeat is not a dead peer: the first missed
interval is the margin for latency. A loud crash (the connection closes) is
seen at once, without heartbeats.

:class:`LivenessMonitor` holds the decisions; the actor layer feeds it the
time and what was sent and heard, and sends what it says.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["HeartbeatConfig", "LivenessMonitor"]

_EPS = 1e-9


@dataclass(frozen=True, slots=True)
class HeartbeatConfig:
    """How often to show life, and how much silence means gone.

    Args:
        interval: Seconds between heartbeats (when nothing else is sent).
        misses: Missed heartbeats (intervals of silence) that declare a peer
            gone; at least 2.
        enabled: Off: no pings, and only a closed connection reveals a dropout.
    """

    interval: float = 1.0
    misses: int = 3
    enabled: bool = True

    def __post_init__(self) -> None:
        if not (isinstance(self.interval, (int, float)) and math.isfinite(self.interval)):
            raise ValueError(f"heartbeat interval must be a number, got {self.interval!r}")
        if self.interval <= 0:
            raise ValueError(f"heartbeat interval must be > 0 seconds, got {self.interval}")
        if isinstance(self.misses, bool) or not isinstance(self.misses, int) or self.misses < 2:
            raise ValueError(
                f"heartbeat misses must be an integer >= 2 (one late heartbeat is not a "
                f"dead peer), got {self.misses!r}"
            )

    @property
    def silence_limit(self) -> float:
        """Seconds of silence after which a peer is declared gone."""
        return self.interval * self.misses


class LivenessMonitor:
    """The failure detector for one peer.

    Args:
        config: The heartbeat settings.
        now: The time the connection was established.
    """

    __slots__ = ("_ping_at", "config", "last_heard", "last_sent", "rtt", "seq")

    def __init__(self, config: HeartbeatConfig, now: float) -> None:
        self.config = config
        self.last_heard = now
        self.last_sent = now
        self.seq = 0
        self.rtt: float | None = None
        self._ping_at = now

    def heard(self, now: float) -> None:
        """Anything arrived from the peer."""
        self.last_heard = now

    def sent(self, now: float) -> None:
        """Anything was sent to the peer."""
        self.last_sent = now

    def gone_at(self) -> float:
        """When the peer will be declared gone if nothing more is heard."""
        return self.last_heard + self.config.silence_limit

    def is_gone(self, now: float) -> bool:
        """Whether the peer has been silent for too long."""
        return self.config.enabled and now >= self.gone_at() - _EPS

    def ping_due(self, now: float) -> int | None:
        """The sequence number of a Ping to send now, or ``None``."""
        if not self.config.enabled or now < self.last_sent + self.config.interval - _EPS:
            return None
        self.seq += 1
        self.last_sent = self._ping_at = now
        return self.seq

    def pong_due(self, now: float) -> bool:
        """Whether to answer a Ping now (not when we spoke within half an interval)."""
        return now >= self.last_sent + self.config.interval / 2 - _EPS

    def pong(self, seq: int, now: float) -> None:
        """A Pong for ``seq`` arrived: measure the round-trip time."""
        if seq == self.seq:
            self.rtt = now - self._ping_at

    def next_check(self) -> float:
        """When the driver should next call :meth:`ping_due` / :meth:`is_gone`."""
        return min(self.last_sent + self.config.interval, self.gone_at())
