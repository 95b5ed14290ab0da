"""Actors, their context, connections and mailboxes.

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
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from collections.abc import Set as AbstractSet
from typing import TYPE_CHECKING, Any

import anyio
import numpy as np

from simkit._connection import Connection, Rejected
from simkit._mailbox import Mailbox
from simkit._session import JoinPolicy, Session, SessionState
from simkit.channels import BrokenChannel, Channel, ChannelClosed, Listener
from simkit.heartbeat import HeartbeatConfig
from simkit.messages import (
    PROTOCOL_VERSION,
    Join,
    Message,
    SerializedMessage,
    encode_message,
)
from simkit.rng import PathPart, SeedTree
from simkit.runtime import VirtualEventLoop

if TYPE_CHECKING:
    from simkit.simulation import Simulation

__all__ = [
    "Actor",
    "Context",
    "PeerGone",
    "Received",
    "Rejected",
    "TypeFilter",
]

TypeFilter = str | type[Message] | Iterable[str | type[Message]] | None

#: Default per-peer mailbox limits: messages from one peer waiting unread.
PEER_QUEUE_MESSAGES = 1024
PEER_QUEUE_BYTES = 256 << 20


class PeerGone(Exception):
    """The peer is not (or no longer) connected.

    Attributes:
        peer: The peer's name.
        reason: Why it went away.
    """

    def __init__(self, peer: str, reason: str = "not connected") -> None:
        super().__init__(f"peer {peer!r} is gone: {reason}")
        self.peer = peer
        self.reason = reason


class Received:
    """A message in a mailbox: who sent it, its type, and its lazy payload."""

    __slots__ = ("message", "src", "t")

    def __init__(self, src: str, message: SerializedMessage, t: float) -> None:
        self.src = src
        self.message = message
        self.t = t

    @property
    def type(self) -> str:
        """The message's registered type name, known without decoding."""
        return self.message.type

    def decode(self) -> Message:
        """Decode the payload into its registered :class:`Message` type.

        Raises:
            DecodeError: The payload does not decode into its type.
        """
        return self.message.decode()

    def __repr__(self) -> str:
        return f"<Received {self.type} from {self.src} at t={self.t:g}>"


class Actor:
    """Base class of actors: implement :meth:`run`.

    Attributes:
        name: Unique name of the actor in its simulation.
    """

    name: str = ""

    async def run(self, ctx: Context) -> None:
        """The actor's life. Returning ends it normally."""
        raise NotImplementedError


# ----------------------------------------------------------------------------- waiting

_TIMEOUT = object()


class _PeerDown:
    __slots__ = ("peer", "reason")

    def __init__(self, peer: str, reason: str) -> None:
        self.peer = peer
        self.reason = reason


class _Waiter:
    """A task waiting for a message matching (types, sources)."""

    __slots__ = ("future", "sources", "types")

    def __init__(
        self,
        future: asyncio.Future[Any],
        types: frozenset[str] | None,
        sources: AbstractSet[str] | None,
    ) -> None:
        self.future = future
        self.types = types
        self.sources = sources

    def wants(self, src: str, type_name: str) -> bool:
        return (self.types is None or type_name in self.types) and (
            self.sources is None or src in self.sources
        )


def _type_names(types: TypeFilter) -> frozenset[str] | None:
    if types is None:
        return None
    if isinstance(types, (str, type)):
        types = (types,)
    names = []
    for item in types:
        if isinstance(item, str):
            names.append(item)
        elif isinstance(item, type) and issubclass(item, Message):
            names.append(item.typename)
        else:
            raise TypeError(f"message types must be names or Message classes, got {item!r}")
    return frozenset(names)


# ----------------------------------------------------------------------------- context


class Context:
    """An actor's view of the world (one per actor incarnation).

    Attributes:
        name: The actor's name.
        incarnation: 0 for the first life, +1 at every restart.
        seeds: The actor's node of the seed tree, ``("actor", name)``.
    """

    def __init__(self, sim: Simulation, name: str, incarnation: int) -> None:
        self.name = name
        self.incarnation = incarnation
        self.seeds: SeedTree = sim.seeds.child("actor", name)
        self._sim = sim
        self._loop = asyncio.get_running_loop()
        self._heartbeat: HeartbeatConfig = sim.heartbeat
        self._peers: dict[str, Connection] = {}
        # joining connections, in arrival order (a dict: O(1) removal)
        self._pending: dict[Connection, None] = {}
        self._mailbox = Mailbox(sim.peer_queue_messages, sim.peer_queue_bytes)
        self._waiters: list[_Waiter] = []
        self._peer_watchers: list[asyncio.Future[None]] = []
        self._listener: Listener | None = None
        self._policy = JoinPolicy()
        self._alive = True
        self.waiting_on = "starting"
        self.speed = 1.0
        self._session_seq = 0  # numbers sessions: a restarted client gets a new one

    def __repr__(self) -> str:
        return f"<Context {self.name}#{self.incarnation}>"

    # -- time, randomness, records ---------------------------------------------------------

    def now(self) -> float:
        """The current time in seconds since the run started."""
        return self._sim.now()

    @property
    def virtual(self) -> bool:
        """Whether the run is in virtual time (modelled compute must be slept)."""
        return isinstance(self._loop, VirtualEventLoop)

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
        self._sim.trace.record(self._loop.time(), kind, self.name, dst, type, 0, "", info)

    def _now(self) -> float:
        return self._loop.time()

    def _call_at(self, when: float, callback: Callable[[], object]) -> asyncio.TimerHandle:
        return self._loop.call_at(when, callback)

    # -- connections ---------------------------------------------------------------------------

    def listen(self, *, token: str = "", admit: Iterable[str] | None = None) -> None:
        """Accept joins at this actor's name.

        Args:
            token: Joins must carry this token (empty: any token).
            admit: The only peer names accepted (``None``: any valid name); a
                ``Join`` under another name is answered ``Reject("name", ...)``.
        """
        if self._listener is not None:
            return
        self._policy = JoinPolicy(token, None if admit is None else frozenset(admit))
        self._listener = self._sim.transport.listen(self.name, self.name)
        self._listener.start(self._on_accept)

    async def connect(
        self, server: str, *, token: str = "", timeout: float = 10.0, name: str | None = None
    ) -> None:
        """Join the actor listening at ``server``.

        Raises:
            ConnectRefused: Nothing listens there.
            ConnectError: The connection closed during the handshake.
            Rejected: The server refused the join (version, token, name).
            TimeoutError: No answer within ``timeout`` seconds.
        """
        channel = await self._sim.transport.connect(self.name, server)
        session = Session(
            SessionState.CONNECTING, name or channel.remote, self._heartbeat, self._now()
        )
        conn = Connection(self, channel, session)
        conn.joined = self._loop.create_future()
        conn.start()
        conn.send(Join(self.name, PROTOCOL_VERSION, token))
        self.waiting_on = f"connect({server})"
        try:
            with anyio.fail_after(timeout):
                outcome = await conn.joined
        except TimeoutError:
            conn.close("join timed out")
            raise TimeoutError(
                f"{self.name}: no answer to Join from {server} in {timeout:g} s"
            ) from None
        finally:
            self.waiting_on = "running"
        if outcome is not None:
            raise outcome

    def peers(self) -> list[str]:
        """The names of the connected peers, sorted."""
        return sorted(self._peers)

    def is_connected(self, peer: str) -> bool:
        """Whether ``peer`` is currently connected."""
        return peer in self._peers

    def session(self, peer: str) -> int:
        """The number of ``peer``'s current session (0: not connected).

        Every join starts a session with a number larger than any before it in
        this context. A peer that reconnects (a restarted client) starts a new
        session: state kept about the old one (which weights it holds) no
        longer applies. Nothing about a peer is kept after it leaves.
        """
        conn = self._peers.get(peer)
        return 0 if conn is None else conn.number

    async def wait_for_peers(self, n: int, timeout: float | None = None) -> list[str]:
        """Wait until at least ``n`` peers are connected; return them sorted.

        Raises:
            TimeoutError: Fewer than ``n`` after ``timeout`` seconds.
        """
        self.waiting_on = f"wait_for_peers({n})"
        try:
            with anyio.fail_after(timeout):
                while len(self._peers) < n:
                    fut: asyncio.Future[None] = self._loop.create_future()
                    self._peer_watchers.append(fut)
                    await fut
        except TimeoutError:
            raise TimeoutError(
                f"{self.name}: {len(self._peers)} of {n} peers after {timeout:g} s"
            ) from None
        finally:
            self.waiting_on = "running"
        return self.peers()

    def _on_accept(self, channel: Channel) -> None:
        if not self._alive:
            channel.close("actor is down")
            return
        session = Session(
            SessionState.JOINING, channel.remote, self._heartbeat, self._now(), self._policy
        )
        conn = Connection(self, channel, session)
        self._pending[conn] = None
        conn.start()
        if session.state is SessionState.JOINING:
            conn.arm_join_expiry()

    def _drop_pending(self, conn: Connection) -> None:
        self._pending.pop(conn, None)

    def _add_peer(self, conn: Connection) -> None:
        self._drop_pending(conn)
        old = self._peers.get(conn.peer)
        if old is not None and old is not conn:
            self._lost_peer(old, "replaced by a new connection")
        self._peers[conn.peer] = conn
        self._session_seq += 1
        conn.number = self._session_seq
        self._mailbox.peer_joined(conn.peer)
        self._record("peer_up", conn.peer)
        conn.start_heartbeats()
        watchers, self._peer_watchers = self._peer_watchers, []
        for fut in watchers:
            if not fut.done():
                fut.set_result(None)

    def _lost_peer(self, conn: Connection, reason: str, *, word: bool = False) -> None:
        if self._peers.get(conn.peer) is not conn:
            conn.close(reason, word=word)
            return
        del self._peers[conn.peer]
        conn.close(reason, word=word)
        self._mailbox.peer_left(conn.peer)
        self._record("peer_down", conn.peer, info=reason)
        down = _PeerDown(conn.peer, reason)
        for waiter in list(self._waiters):
            if waiter.sources is not None and conn.peer in waiter.sources:
                self._waiters.remove(waiter)
                if not waiter.future.done():
                    waiter.future.set_result(down)

    # -- sending ---------------------------------------------------------------------------------

    def _conn(self, dst: str) -> Connection:
        conn = self._peers.get(dst)
        if conn is None:
            raise PeerGone(dst)
        return conn

    async def send(self, dst: str, msg: Message) -> int:
        """Send ``msg`` to peer ``dst``; return the encoded size in bytes.

        Raises:
            PeerGone: ``dst`` is not connected (or the connection just broke).
        """
        return self.send_nowait(dst, msg)

    def send_nowait(self, dst: str, msg: Message) -> int:
        """Like :meth:`send`, without a checkpoint."""
        if not self._alive:
            return 0
        conn = self._conn(dst)
        try:
            return conn.send_encoded(encode_message(msg, self._sim.max_body), msg.typename)
        except (ChannelClosed, BrokenChannel) as exc:
            self._lost_peer(conn, str(exc))
            raise PeerGone(dst, str(exc)) from None

    async def broadcast(self, dsts: Sequence[str], msg: Message) -> list[str]:
        """Send one message to several peers, encoding it once.

        Returns:
            The peers that could not be reached (sorted).
        """
        if not self._alive:
            return sorted(dsts)
        body = encode_message(msg, self._sim.max_body)
        assert isinstance(body, bytes)
        failed = []
        for dst in sorted(dsts):
            conn = self._peers.get(dst)
            if conn is None:
                failed.append(dst)
                continue
            try:
                conn.send_encoded(body, msg.typename)
            except (ChannelClosed, BrokenChannel) as exc:
                self._lost_peer(conn, str(exc))
                failed.append(dst)
        return failed

    # -- receiving -------------------------------------------------------------------------------

    def _deliver(self, src: str, message: SerializedMessage) -> None:
        item = Received(src, message, self._loop.time())
        type_name = message.type
        for i, waiter in enumerate(self._waiters):
            if waiter.wants(src, type_name) and not waiter.future.done():
                del self._waiters[i]
                waiter.future.set_result(item)
                return
        if not self._mailbox.put(item):
            self._overflow(src)

    def _overflow(self, src: str) -> None:
        """``src`` left more unread messages than its share: drop it (not the actor)."""
        mailbox = self._mailbox
        reason = (
            f"mailbox full: {mailbox.held(src)} messages from {src} unread "
            f"(limit {mailbox.max_messages} messages or {mailbox.max_bytes} bytes)"
        )
        mailbox.discard(src)
        conn = self._peers.get(src)
        if conn is not None:
            self._lost_peer(conn, reason, word=True)

    def _take(
        self, types: frozenset[str] | None, sources: AbstractSet[str] | None
    ) -> Received | None:
        return self._mailbox.take(types, sources)

    def take(self, types: TypeFilter = None, *, src: str | None = None) -> Received | None:
        """Take the oldest message matching ``types`` (and ``src``) now, or ``None``."""
        return self._take(_type_names(types), frozenset((src,)) if src is not None else None)

    def pending(self, types: TypeFilter = None) -> int:
        """How many received messages (of ``types``) wait in the mailbox."""
        names = _type_names(types)
        return self._mailbox.count(names)

    async def recv(
        self, types: TypeFilter = None, *, src: str | None = None, timeout: float | None = None
    ) -> Received:
        """Take the oldest message matching ``types`` (and ``src``) from the mailbox.

        Args:
            types: Type names or Message classes to accept; ``None`` for any.
            src: Only from this peer.
            timeout: Seconds to wait at most.

        Raises:
            TimeoutError: Nothing matching arrived within ``timeout``.
            PeerGone: ``src`` is (or went) away and sent nothing matching.
        """
        names = _type_names(types)
        sources = frozenset((src,)) if src is not None else None
        item = self._take(names, sources)
        if item is not None:
            return item
        if src is not None and src not in self._peers:
            raise PeerGone(src)
        result = await self._wait(names, sources, timeout, f"recv({_describe(names, src)})")
        if result is _TIMEOUT:
            raise TimeoutError(f"{self.name}: no {_describe(names, src)} within {timeout:g} s")
        if isinstance(result, _PeerDown):
            raise PeerGone(result.peer, result.reason)
        assert isinstance(result, Received)
        return result

    async def _wait(
        self,
        names: frozenset[str] | None,
        sources: AbstractSet[str] | None,
        timeout: float | None,
        label: str,
    ) -> object:
        waiter = _Waiter(self._loop.create_future(), names, sources)
        self._waiters.append(waiter)
        timer = None
        if timeout is not None:
            timer = self._loop.call_at(self._loop.time() + timeout, _expire, waiter.future)
        self.waiting_on = label
        try:
            return await waiter.future
        finally:
            self.waiting_on = "running"
            if timer is not None:
                timer.cancel()
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    async def request(
        self, dst: str, msg: Message, reply: TypeFilter = None, *, timeout: float | None = None
    ) -> Received:
        """Send ``msg`` to ``dst`` and wait for its next message of type ``reply``.

        Raises:
            PeerGone: ``dst`` is or went away before replying.
            TimeoutError: No reply within ``timeout`` seconds.
        """
        self.send_nowait(dst, msg)
        return await self.recv(reply, src=dst, timeout=timeout)

    async def wait_for_replies(
        self, peers: Iterable[str], types: TypeFilter = None, *, timeout: float | None = None
    ) -> tuple[dict[str, Received], list[str]]:
        """Collect one message (of ``types``) from each of ``peers``.

        Returns early once every peer has replied or gone; otherwise waits up
        to ``timeout`` seconds.

        Returns:
            ``(replies, failed)``: the first matching message of each peer that
            answered, and the sorted names of those that did not (gone, or
            silent until the deadline).
        """
        names = _type_names(types)
        waiting: set[str] = set()  # the waiter watches this live set
        replies: dict[str, Received] = {}
        failed: list[str] = []
        for peer in sorted(set(peers)):
            item = self._take(names, frozenset((peer,)))
            if item is not None:
                replies[peer] = item
            elif peer in self._peers:
                waiting.add(peer)
            else:
                failed.append(peer)
        deadline = None if timeout is None else self._loop.time() + timeout
        while waiting:
            # Replies that arrived together queue up while we handle the first one.
            item = self._take(names, waiting)
            if item is not None:
                waiting.discard(item.src)
                replies[item.src] = item
                continue
            # Peers that went down together: only the first woke us.
            gone = [peer for peer in sorted(waiting) if peer not in self._peers]
            if gone:
                waiting.difference_update(gone)
                failed.extend(gone)
                continue
            left = None if deadline is None else max(0.0, deadline - self._loop.time())
            label = f"wait_for_replies({len(waiting)} left, {_describe(names, None)})"
            result = await self._wait(names, waiting, left, label)
            if result is _TIMEOUT:
                break
            if isinstance(result, _PeerDown):
                waiting.discard(result.peer)
                failed.append(result.peer)
            else:
                assert isinstance(result, Received)
                waiting.discard(result.src)
                replies[result.src] = result
        failed.extend(waiting)
        return dict(sorted(replies.items())), sorted(failed)

    async def wait_any(
        self,
        types: TypeFilter = None,
        *,
        watch: Iterable[str] = (),
        joins: bool = False,
        timeout: float | None = None,
    ) -> Received | None:
        """Wait for whatever happens first: a message, a watched peer leaving, a join.

        The loop of an asynchronous protocol (a server that keeps every client
        busy and reacts to each arrival) needs this rather than
        :meth:`wait_for_replies`, which waits for a whole set of replies.

        Args:
            types: Message types to take, from any peer.
            watch: Peers whose going away (or being away already) ends the wait.
            joins: A peer joining (or rejoining) ends the wait.
            timeout: Seconds to wait at most.

        Returns:
            The oldest matching message, taken from the mailbox; or ``None``
            when a watched peer is or went away, a peer joined, or the timeout
            passed (:meth:`peers`, :meth:`session` and :meth:`now` tell which).
        """
        names = _type_names(types)
        item = self._take(names, None)
        if item is not None:
            return item
        watched = frozenset(watch)
        if any(peer not in self._peers for peer in watched):
            return None
        # One future, woken by the first of: a message, a watched peer down, a join.
        future: asyncio.Future[Any] = self._loop.create_future()
        waiters = [_Waiter(future, names, None)]
        if watched:
            waiters.append(_Waiter(future, frozenset(), watched))  # wants no message
        self._waiters.extend(waiters)
        if joins:
            self._peer_watchers.append(future)
        timer = None
        if timeout is not None:
            timer = self._loop.call_at(self._loop.time() + timeout, _expire, future)
        self.waiting_on = f"wait_any({_describe(names, None)})"
        try:
            result = await future
        finally:
            self.waiting_on = "running"
            if timer is not None:
                timer.cancel()
            for waiter in waiters:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
            if future in self._peer_watchers:
                self._peer_watchers.remove(future)
        return result if isinstance(result, Received) else None

    # -- lifecycle ---------------------------------------------------------------------------------

    def _shutdown(self, reason: str) -> None:
        """The actor ended normally: say goodbye to every peer and close."""
        if not self._alive:
            return
        self._alive = False
        if self._listener is not None:
            self._listener.close()
        for conn in [*self._pending, *(self._peers[name] for name in sorted(self._peers))]:
            conn.close(reason, word=True)
        self._peers.clear()
        self._pending.clear()
        self._mailbox.clear()

    def _kill(self) -> None:
        """The actor crashed: stop everything without a word (the network was told)."""
        self._alive = False
        for conn in [*self._pending, *self._peers.values()]:
            conn.close("crashed")
        self._peers.clear()
        self._pending.clear()
        self._mailbox.clear()


def _expire(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_result(_TIMEOUT)


def _describe(names: frozenset[str] | None, src: str | None) -> str:
    what = "|".join(sorted(names)) if names else "message"
    return f"{what} from {src}" if src else what


ActorFactory = Callable[[], Actor]
