"""The seam between an actor's context and what runs it."""

from __future__ import annotations

from typing import Protocol

from simkit.channels import Transport
from simkit.channels.memory import TraceSink
from simkit.heartbeat import HeartbeatConfig
from simkit.rng import SeedTree

__all__ = ["Host"]


class Host(Protocol):
    """What a :class:`~simkit.actors.Context` needs of whatever runs its actor.

    :class:`~simkit.simulation.Simulation` is one; a test may bring its own.
    """

    @property
    def seeds(self) -> SeedTree:
        """The run's seed tree (a context takes its ``("actor", name)`` node)."""
        ...

    @property
    def heartbeat(self) -> HeartbeatConfig:
        """Heartbeat settings for every connection."""
        ...

    @property
    def transport(self) -> Transport:
        """Where actors listen and connect."""
        ...

    @property
    def trace(self) -> TraceSink:
        """Where events are recorded."""
        ...

    @property
    def max_body(self) -> int:
        """The frame size limit, in bytes."""
        ...

    @property
    def peer_queue_messages(self) -> int:
        """The most unread messages of one peer in a mailbox."""
        ...

    @property
    def peer_queue_bytes(self) -> int:
        """The most unread payload bytes of one peer in a mailbox."""
        ...

    def now(self) -> float:
        """Seconds since the run started."""
        ...
