"""Receiving: deliveries into the mailbox, and selective receive with timeouts.

:class:`Inbox` is the receiving half of :class:`~simkit.actors.Context`:
deliveries land in the :class:`~simkit._mailbox.Mailbox` (or go straight to
a task waiting for them, see :mod:`simkit._waiting`), and ``recv``,
``request``, ``wait_for_replies`` and ``wait_any`` take from it, selectively
by type and sender. Timeouts are cancel scopes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from simkit._mailbox import Mailbox, Received
from simkit._waiting import TIMEOUT, PeerDown, TypeFilter, Waiter, Wake, describe, type_names
from simkit.messages import Message, SerializedMessage

if TYPE_CHECKING:
    from simkit._connection import Connection

__all__ = ["Inbox", "PeerGone", "Received"]


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


class Inbox:
    """The receiving half of an actor's context (a mixin of ``Context``)."""

    name: str
    waiting_on: str
    _peers: dict[str, Connection]
    _mailbox: Mailbox
    _now: Callable[[], float]  # the current time (the loop's clock)
    _waiters: list[Waiter]
    _join_wakes: list[Wake]

    if TYPE_CHECKING:  # provided by Context and its other half

        def _lost_peer(self, conn: Connection, reason: str, *, word: bool = False) -> None: ...

        def send_nowait(self, dst: str, msg: Message) -> int: ...

    # -- arrivals ------------------------------------------------------------------------

    def _deliver(self, src: str, message: SerializedMessage) -> None:
        item = Received(src, message, self._now())
        type_name = message.type
        for i, waiter in enumerate(self._waiters):
            if waiter.wants(src, type_name) and waiter.wake.open:
                del self._waiters[i]
                waiter.wake.fire(item)
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

    def _wake_watchers(self, peer: str, reason: str) -> None:
        """``peer`` went away: end the waits that watch it."""
        down = PeerDown(peer, reason)
        for waiter in list(self._waiters):
            if waiter.sources is not None and peer in waiter.sources:
                self._waiters.remove(waiter)
                if waiter.wake.open:
                    waiter.wake.fire(down)

    def _wake_joins(self) -> None:
        """A peer joined: end the waits for joins."""
        wakes, self._join_wakes = self._join_wakes, []
        for wake in wakes:
            if wake.open:
                wake.fire(None)

    async def _wait(self, waiters: list[Waiter], timeout: float | None, label: str) -> object:
        """Register ``waiters`` (sharing one wake) and wait; return the wake's result."""
        self._waiters.extend(waiters)
        self.waiting_on = label
        try:
            return await waiters[0].wake.wait(timeout)
        finally:
            self.waiting_on = "running"
            for waiter in waiters:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)

    # -- taking --------------------------------------------------------------------------

    def take(self, types: TypeFilter = None, *, src: str | None = None) -> Received | None:
        """Take the oldest message matching ``types`` (and ``src``) now, or ``None``."""
        return self._mailbox.take(type_names(types), None if src is None else frozenset((src,)))

    def pending(self, types: TypeFilter = None) -> int:
        """How many received messages (of ``types``) wait in the mailbox."""
        return self._mailbox.count(type_names(types))

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
        names = type_names(types)
        sources = frozenset((src,)) if src is not None else None
        item = self._mailbox.take(names, sources)
        if item is not None:
            return item
        if src is not None and src not in self._peers:
            raise PeerGone(src)
        waiter = Waiter(Wake(), names, sources)
        result = await self._wait([waiter], timeout, f"recv({describe(names, src)})")
        if result is TIMEOUT:
            raise TimeoutError(f"{self.name}: no {describe(names, src)} within {timeout:g} s")
        if isinstance(result, PeerDown):
            raise PeerGone(result.peer, result.reason)
        assert isinstance(result, Received)
        return result

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
        names = type_names(types)
        replies: dict[str, Received] = {}
        failed: list[str] = []
        waiting = self._ask_mailbox(peers, names, replies, failed)
        deadline = None if timeout is None else self._now() + timeout
        while waiting:
            if self._settle_waiting(waiting, names, replies, failed):
                continue
            left = None if deadline is None else max(0.0, deadline - self._now())
            label = f"wait_for_replies({len(waiting)} left, {describe(names, None)})"
            result = await self._wait([Waiter(Wake(), names, waiting)], left, label)
            if result is TIMEOUT:
                break
            if isinstance(result, PeerDown):
                waiting.discard(result.peer)
                failed.append(result.peer)
            else:
                assert isinstance(result, Received)
                waiting.discard(result.src)
                replies[result.src] = result
        failed.extend(waiting)
        return dict(sorted(replies.items())), sorted(failed)

    def _ask_mailbox(
        self,
        peers: Iterable[str],
        names: frozenset[str] | None,
        replies: dict[str, Received],
        failed: list[str],
    ) -> set[str]:
        """Take the replies already here; return the peers still to wait for."""
        waiting: set[str] = set()  # the waiter watches this live set
        for peer in sorted(set(peers)):
            item = self._mailbox.take(names, frozenset((peer,)))
            if item is not None:
                replies[peer] = item
            elif peer in self._peers:
                waiting.add(peer)
            else:
                failed.append(peer)
        return waiting

    def _settle_waiting(
        self,
        waiting: set[str],
        names: frozenset[str] | None,
        replies: dict[str, Received],
        failed: list[str],
    ) -> bool:
        """Book one queued reply, or the peers gone together; ``False`` if neither."""
        item = self._mailbox.take(names, waiting)
        if item is not None:  # replies that arrived together queue up
            waiting.discard(item.src)
            replies[item.src] = item
            return True
        gone = [peer for peer in sorted(waiting) if peer not in self._peers]
        waiting.difference_update(gone)  # peers that went down together: one woke us
        failed.extend(gone)
        return bool(gone)

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
        names = type_names(types)
        item = self._mailbox.take(names, None)
        if item is not None:
            return item
        watched = frozenset(watch)
        if any(peer not in self._peers for peer in watched):
            return None
        wake = Wake()  # fired by the first of: a message, a watched peer down, a join
        waiters = [Waiter(wake, names, None)]
        if watched:
            waiters.append(Waiter(wake, frozenset(), watched))  # wants no message
        if joins:
            self._join_wakes.append(wake)
        try:
            result = await self._wait(waiters, timeout, f"wait_any({describe(names, None)})")
        finally:
            if wake in self._join_wakes:
                self._join_wakes.remove(wake)
        return result if isinstance(result, Received) else None
