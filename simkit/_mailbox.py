"""An actor's mailbox: received messages (:class:`Received`) waiting to be taken, bounded per peer.

Messages wait in arrival order and are taken selectively (by type and
sender). What one peer may leave unread is bounded (``max_messages`` and
``max_bytes``; one message always fits): :meth:`Mailbox.put` says when a peer
passes its share, and the actor then drops that peer, never itself.

A peer's unread messages outlive it: a reply sent just before leaving still
counts (its last words). But peers that left keep, all together, at most one
peer's share: beyond it their oldest messages are discarded. So a server
receiving from peers that come and go holds a bounded amount of their mail,
whatever they send.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Set as AbstractSet
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from simkit.messages import Message, SerializedMessage

__all__ = ["Mailbox", "Received"]


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


class _Share:
    """What one sender (or all departed senders) holds in the mailbox."""

    __slots__ = ("messages", "nbytes")

    def __init__(self) -> None:
        self.messages = 0
        self.nbytes = 0

    def add(self, nbytes: int, sign: int = 1) -> None:
        self.messages += sign
        self.nbytes += sign * nbytes

    def over(self, max_messages: int, max_bytes: int) -> bool:
        return self.messages > 1 and (self.messages > max_messages or self.nbytes > max_bytes)


class Mailbox:
    """Received messages of one actor, with per-peer limits.

    Args:
        max_messages: The most unread messages of one peer.
        max_bytes: The most unread payload bytes of one peer.
    """

    __slots__ = ("_departed", "_gone", "_held", "items", "max_bytes", "max_messages")

    def __init__(self, max_messages: int, max_bytes: int) -> None:
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.items: deque[Received] = deque()
        self._held: dict[str, _Share] = {}  # senders with unread messages
        self._gone: set[str] = set()  # senders that left, with unread messages
        self._departed = _Share()  # the sum of their shares

    def __len__(self) -> int:
        return len(self.items)

    def held(self, src: str) -> int:
        """How many unread messages of ``src`` wait."""
        share = self._held.get(src)
        return 0 if share is None else share.messages

    def put(self, item: Received) -> bool:
        """Add ``item``; return ``False`` when its sender now holds more than its share."""
        self.items.append(item)
        share = self._held.get(item.src)
        if share is None:
            share = self._held[item.src] = _Share()
        share.messages += 1
        share.nbytes += item.message.nbytes
        return share.messages <= 1 or (
            share.messages <= self.max_messages and share.nbytes <= self.max_bytes
        )

    def take(
        self, types: frozenset[str] | None, sources: AbstractSet[str] | None
    ) -> Received | None:
        """Remove and return the oldest item matching ``types`` and ``sources``."""
        if types is None and sources is None:
            if not self.items:
                return None
            item = self.items.popleft()
            self._forget(item)
            return item
        for i, item in enumerate(self.items):
            if (types is None or item.message.type in types) and (
                sources is None or item.src in sources
            ):
                del self.items[i]
                self._forget(item)
                return item
        return None

    def count(self, types: frozenset[str] | None) -> int:
        """How many items (of ``types``) wait."""
        return sum(1 for item in self.items if types is None or item.message.type in types)

    def peer_left(self, src: str) -> None:
        """``src`` left: its unread messages now share the departed peers' quota."""
        share = self._held.get(src)
        if share is None or src in self._gone:
            return
        self._gone.add(src)
        self._departed.messages += share.messages
        self._departed.nbytes += share.nbytes
        if self._departed.over(self.max_messages, self.max_bytes):
            self._trim_departed()

    def peer_joined(self, src: str) -> None:
        """``src`` is back: its old unread messages count as its own again."""
        if src in self._gone:
            self._gone.discard(src)
            share = self._held[src]
            self._departed.messages -= share.messages
            self._departed.nbytes -= share.nbytes

    def discard(self, src: str) -> None:
        """Drop every unread message of ``src`` at once."""
        share = self._held.pop(src, None)
        if share is None:
            return
        if src in self._gone:
            self._gone.discard(src)
            self._departed.messages -= share.messages
            self._departed.nbytes -= share.nbytes
        self.items = deque(item for item in self.items if item.src != src)

    def clear(self) -> None:
        """Drop everything."""
        self.items.clear()
        self._held.clear()
        self._gone.clear()
        self._departed = _Share()

    def _forget(self, item: Received) -> None:
        src = item.src
        share = self._held[src]
        share.messages -= 1
        share.nbytes -= item.message.nbytes
        if self._gone and src in self._gone:
            self._departed.add(item.message.nbytes, -1)
            if share.messages == 0:
                self._gone.discard(src)
        if share.messages == 0:
            del self._held[src]

    def _trim_departed(self) -> None:
        """Discard the oldest messages of departed peers until they fit one share."""
        kept: deque[Received] = deque()
        departed = self._departed
        for item in self.items:
            if item.src in self._gone and departed.over(self.max_messages, self.max_bytes):
                self._forget(item)
            else:
                kept.append(item)
        self.items = kept
