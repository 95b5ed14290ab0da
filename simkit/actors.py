"""Actors and their context.

An :class:`Actor` is an object with an ``async run(ctx)`` method. The
:class:`Context` it receives is its whole view of the world: its name, the
time, its random streams, and its peers, to which it sends application
:class:`~simkit.messages.Message` objects and from which it receives them.

Under the context sit connections. A client actor ``connect``\\ s to a
listening actor: it sends ``Join(name, version, token)`` and gets ``Accept``
or ``Reject``. Once joined, both sides keep the connection alive with
heartbeats (``Ping``/``Pong``, never shown to actors) and declare the other
gone after too long a silence (see :mod:`simkit.heartbeat`), or at once when
the connection closes. Application messages travel as ``Send`` and land in the
receiver's mailbox as :class:`Received` items whose payload is decoded only
when asked.

The context is a facade over small parts, each in its own module:

=========================  ==================================================
:mod:`simkit._session`     the handshake and liveness, a pure state machine
:mod:`simkit._connection`  the driver between a channel and its session
:mod:`simkit._peers`       the registry of connections, ``listen``/``connect``, sends
:mod:`simkit._inbox`       deliveries, selective receive, request/reply
:mod:`simkit._mailbox`     the mailbox, bounded per peer
:mod:`simkit._waiting`     wake-ups over anyio memory object streams
=========================  ==================================================

A context depends on a small :class:`Host` (what runs it: a
:class:`~simkit.simulation.Simulation`), never on the simulation itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import anyio
import numpy as np

from simkit._connection import Connection, Rejected
from simkit._host import Host
from simkit._inbox import Inbox, PeerGone, Received
from simkit._mailbox import Mailbox
from simkit._peers import Peers
from simkit._session import JoinPolicy
from simkit._waiting import TypeFilter, Waiter, Wake
from simkit.channels import Listener
from simkit.clock import Clock
from simkit.heartbeat import HeartbeatConfig
from simkit.rng import PathPart, SeedTree

__all__ = [
    "PEER_QUEUE_BYTES",
    "PEER_QUEUE_MESSAGES",
    "Actor",
    "Context",
    "Host",
    "PeerGone",
    "Received",
    "Rejected",
    "TypeFilter",
]

#: Default per-peer mailbox limits: messages (and payload bytes) of one peer unread.
PEER_QUEUE_MESSAGES = 1024
PEER_QUEUE_BYTES = 256 << 20


class Actor:
    """Base class of actors: implement :meth:`run`.

    Attributes:
        name: Unique name of the actor in its simulation.
    """

    name: str = ""

    async def run(self, ctx: Context) -> None:
        """The actor's life. Returning ends it normally."""
        raise NotImplementedError


class Context(Peers, Inbox):
    """An actor's view of the world (one per actor incarnation).

    Attributes:
        name: The actor's name.
        incarnation: 0 for the first life, +1 at every restart.
        seeds: The actor's node of the seed tree, ``("actor", name)``.
        speed: Modelled compute is slowed by this factor (a ``Slowdown`` fault).
        waiting_on: What the actor waits for now (deadlock reports).
    """

    def __init__(self, host: Host, name: str, incarnation: int) -> None:
        self.name = name
        self.incarnation = incarnation
        self.seeds: SeedTree = host.seeds.child("actor", name)
        self._host = host
        self._loop = asyncio.get_running_loop()
        self._now = self._loop.time
        self._clock = Clock(self._loop)
        self._heartbeat: HeartbeatConfig = host.heartbeat
        self._peers: dict[str, Connection] = {}
        self._pending: dict[Connection, None] = {}
        self._mailbox = Mailbox(host.peer_queue_messages, host.peer_queue_bytes)
        self._waiters: list[Waiter] = []
        self._join_wakes: list[Wake] = []
        self._listener: Listener | None = None
        self._policy = JoinPolicy()
        self._alive = True
        self._session_seq = 0  # numbers sessions: a restarted client gets a new one
        self.waiting_on = "starting"
        self.speed = 1.0

    def __repr__(self) -> str:
        return f"<Context {self.name}#{self.incarnation}>"

    # -- time, randomness, records ---------------------------------------------------------

    def now(self) -> float:
        """The current time in seconds since the run started."""
        return self._host.now()

    @property
    def virtual(self) -> bool:
        """Whether the run is in virtual time (modelled compute must be slept)."""
        return self._clock.virtual

    async def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` (virtual seconds in virtual mode)."""
        self.waiting_on = f"sleep({seconds:g})"
        await anyio.sleep(seconds)
        self.waiting_on = "running"

    async def compute(self, seconds: float) -> None:
        """Spend ``seconds`` of modelled compute time, scaled by slowdowns."""
        self.waiting_on = f"compute({seconds:g})"
        await anyio.sleep(seconds * self.speed)
        self.waiting_on = "running"

    def rng(self, *path: PathPart) -> np.random.Generator:
        """A fresh generator for ``("actor", name, *path)`` in the seed tree."""
        return self.seeds.numpy(*path)

    def log(self, text: str) -> None:
        """Record a free-text line in the trace."""
        self._record("log", info=text)

    def mark(self, label: str, info: str = "") -> None:
        """Record a protocol milestone (a round start, a stage) in the trace."""
        self._record("mark", type=label, info=info)

    def _record(self, kind: str, dst: str = "", type: str = "", info: str = "") -> None:
        self._host.trace.record(self._loop.time(), kind, self.name, dst, type, 0, "", info)

    def _call_at(self, when: float, callback: Callable[[], object]) -> asyncio.TimerHandle:
        return self._loop.call_at(when, callback)


ActorFactory = Callable[[], Actor]
