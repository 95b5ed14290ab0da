"""Connections and sending: the peer half of an actor's context.

:class:`Peers` holds an actor's connections (the joining ones and the open
ones by peer name), makes them (``listen``, ``connect``), numbers sessions,
drops peers, and sends. Each connection is a
:class:`~simkit._connection.Connection` driving a pure
:class:`~simkit._session.Session`; this class only keeps the registry.

Sends are anyio-style pairs: ``send_nowait`` holds the logic and never
blocks; ``send`` and ``broadcast`` are cancellation points (they raise when
the task's cancel scope is cancelled, and then send nothing) and go through
the channel's async send, so a transport with backpressure (TCP) makes the
sender wait while the peer does not read. They do not otherwise yield to
other tasks: a yield at every send would reorder the events of one virtual
instant (a client's reply recorded after another actor's exit) and so move
the trace digest of every shipped scenario.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel

from simkit._connection import Connection
from simkit._host import Host
from simkit._inbox import PeerGone
from simkit._mailbox import Mailbox
from simkit._session import JoinPolicy, Session, SessionState
from simkit._waiting import TIMEOUT, Wake
from simkit.channels import BrokenChannel, Channel, ChannelClosed, Listener
from simkit.heartbeat import HeartbeatConfig
from simkit.messages import (
    PROTOCOL_VERSION,
    Join,
    Message,
    Send,
    SerializedMessage,
    encode_message,
)

__all__ = ["Peers"]


class Peers:
    """The connections and sends of an actor's context (a mixin of ``Context``)."""

    name: str
    waiting_on: str
    _host: Host
    _heartbeat: HeartbeatConfig
    _peers: dict[str, Connection]
    _pending: dict[Connection, None]  # joining connections, in arrival order
    _mailbox: Mailbox
    _now: Callable[[], float]  # the current time (the loop's clock)
    _join_wakes: list[Wake]
    _listener: Listener | None
    _policy: JoinPolicy
    _alive: bool
    _session_seq: int

    if TYPE_CHECKING:  # provided by Context and its other half

        def _call_at(self, when: float, callback: Callable[[], object]) -> asyncio.TimerHandle: ...

        def _deliver(self, src: str, message: SerializedMessage) -> None: ...

        def _record(self, kind: str, dst: str = "", type: str = "", info: str = "") -> None: ...

        def _wake_watchers(self, peer: str, reason: str) -> None: ...

        def _wake_joins(self) -> None: ...

    # -- making connections ----------------------------------------------------------------

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
        self._listener = self._host.transport.listen(self.name, self.name)
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
        channel = await self._host.transport.connect(self.name, server)
        session = Session(
            SessionState.CONNECTING, name or channel.remote, self._heartbeat, self._now()
        )
        conn = Connection(self, channel, session)
        conn.joined = wake = Wake()
        conn.start()
        conn.send(Join(self.name, PROTOCOL_VERSION, token))
        self.waiting_on = f"connect({server})"
        try:
            outcome = await wake.wait(timeout)
        finally:
            self.waiting_on = "running"
        if outcome is TIMEOUT:
            conn.close("join timed out")
            raise TimeoutError(f"{self.name}: no answer to Join from {server} in {timeout:g} s")
        if isinstance(outcome, BaseException):
            raise outcome

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

    # -- the registry ------------------------------------------------------------------------

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
                    wake = Wake()
                    self._join_wakes.append(wake)
                    await wake.wait(None)
        except TimeoutError:
            raise TimeoutError(
                f"{self.name}: {len(self._peers)} of {n} peers after {timeout:g} s"
            ) from None
        finally:
            self.waiting_on = "running"
        return self.peers()

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
        self._wake_joins()

    def _lost_peer(self, conn: Connection, reason: str, *, word: bool = False) -> None:
        if self._peers.get(conn.peer) is not conn:
            conn.close(reason, word=word)
            return
        del self._peers[conn.peer]
        conn.close(reason, word=word)
        self._mailbox.peer_left(conn.peer)
        self._record("peer_down", conn.peer, info=reason)
        self._wake_watchers(conn.peer, reason)

    # -- sending -------------------------------------------------------------------------------

    def _conn(self, dst: str) -> Connection:
        conn = self._peers.get(dst)
        if conn is None:
            raise PeerGone(dst)
        return conn

    async def send(self, dst: str, msg: Message) -> int:
        """Send ``msg`` to peer ``dst``; return the encoded size in bytes.

        A cancellation point: raises the cancellation if the task's cancel
        scope is cancelled (then nothing is sent). Waits while the transport's send
        buffer to ``dst`` is full (TCP backpressure).

        Raises:
            PeerGone: ``dst`` is not connected (or the connection just broke).
        """
        await anyio.lowlevel.checkpoint_if_cancelled()
        if not self._alive:
            return 0
        conn = self._conn(dst)
        try:
            nbytes = await conn.channel.send(Send(msg.typename, msg))
        except (ChannelClosed, BrokenChannel) as exc:
            self._lost_peer(conn, str(exc))
            raise PeerGone(dst, str(exc)) from None
        conn.session.sent(self._now())
        return nbytes

    def send_nowait(self, dst: str, msg: Message) -> int:
        """Send ``msg`` to ``dst`` at once (never raises a cancellation, never waits).

        Raises:
            PeerGone: ``dst`` is not connected (or the connection just broke).
        """
        if not self._alive:
            return 0
        conn = self._peers.get(dst)
        if conn is None:
            raise PeerGone(dst)
        try:
            return conn.send_encoded(encode_message(msg, self._host.max_body), msg.typename)
        except (ChannelClosed, BrokenChannel) as exc:
            self._lost_peer(conn, str(exc))
            raise PeerGone(dst, str(exc)) from None

    async def broadcast(self, dsts: Sequence[str], msg: Message) -> list[str]:
        """Send one message to several peers, encoding it once (cancellable, as :meth:`send`).

        Returns:
            The peers that could not be reached (sorted).
        """
        await anyio.lowlevel.checkpoint_if_cancelled()
        if not self._alive:
            return sorted(dsts)
        body = encode_message(msg, self._host.max_body)
        failed = []
        for dst in sorted(dsts):
            conn = self._peers.get(dst)
            if conn is None or not self._alive:
                failed.append(dst)
                continue
            try:
                await conn.channel.send_body(body, msg.typename)
            except (ChannelClosed, BrokenChannel) as exc:
                self._lost_peer(conn, str(exc))
                failed.append(dst)
            else:
                conn.session.sent(self._now())
        return failed

    # -- lifecycle -------------------------------------------------------------------------------

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
