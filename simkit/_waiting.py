"""How an actor's tasks wait: one-shot wake-ups over anyio memory object streams.

A task that finds nothing it wants in the mailbox registers one or more
:class:`Waiter` entries (what it wants: message types, senders, a peer
leaving, a join) sharing one :class:`Wake`, and blocks receiving from the
wake's memory object stream. Whoever has what a waiter wants (a delivery, a
departure, a join) *fires* the wake: the result is kept on the wake, and a
token is sent on its stream, which ends the wait. A wake fires at most once;
the waiter entries are removed when the task stops waiting.

Timeouts are cancel scopes only: the waiting task blocks inside
``anyio.move_on_after(timeout)``. A wake whose scope has been cancelled
(the deadline passed) no longer takes anything, so what arrives after the
deadline stays in the mailbox; what arrived before it is returned even if
the task resumes after the deadline.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from collections.abc import Set as AbstractSet

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from simkit.messages import Message

__all__ = ["TIMEOUT", "PeerDown", "TypeFilter", "Waiter", "Wake", "describe", "type_names"]

TypeFilter = str | type[Message] | Iterable[str | type[Message]] | None

#: What a wait returns when its timeout passed first.
TIMEOUT = object()


class PeerDown:
    """A wait's result: ``peer`` went away for ``reason``."""

    __slots__ = ("peer", "reason")

    def __init__(self, peer: str, reason: str) -> None:
        self.peer = peer
        self.reason = reason


class Wake:
    """A one-shot wake-up: a result and a memory object stream that carries the news."""

    __slots__ = ("_receive", "_send", "fired", "result", "scope")

    def __init__(self) -> None:
        self._send: MemoryObjectSendStream[None]
        self._receive: MemoryObjectReceiveStream[None]
        self._send, self._receive = anyio.create_memory_object_stream[None](1)
        self.fired = False
        self.result: object = TIMEOUT
        self.scope: anyio.CancelScope | None = None

    @property
    def open(self) -> bool:
        """Whether the wake can still be fired (not fired, deadline not passed)."""
        return not self.fired and not (self.scope is not None and self.scope.cancel_called)

    def fire(self, result: object) -> None:
        """End the wait with ``result`` (only while :attr:`open`)."""
        self.fired = True
        self.result = result
        self._send.send_nowait(None)

    async def wait(self, timeout: float | None) -> object:
        """Block until fired or ``timeout`` seconds passed; return the result or :data:`TIMEOUT`.

        A wake is waited on once.
        """
        try:
            with anyio.move_on_after(math.inf if timeout is None else timeout) as scope:
                self.scope = scope
                if not self.fired:
                    await self._receive.receive()
        finally:
            self.fired = True  # nothing more can end this wait
            self._send.close()
            self._receive.close()
        return self.result


class Waiter:
    """One thing a waiting task wants: a message of ``types`` from ``sources``.

    ``types`` empty means no message at all (the entry only watches
    ``sources`` leaving); ``None`` means any.
    """

    __slots__ = ("sources", "types", "wake")

    def __init__(
        self, wake: Wake, types: frozenset[str] | None, sources: AbstractSet[str] | None
    ) -> None:
        self.wake = wake
        self.types = types
        self.sources = sources

    def wants(self, src: str, type_name: str) -> bool:
        """Whether a message of ``type_name`` from ``src`` ends this wait."""
        return (self.types is None or type_name in self.types) and (
            self.sources is None or src in self.sources
        )


def type_names(types: TypeFilter) -> frozenset[str] | None:
    """The registered type names a filter stands for (``None``: any).

    Raises:
        TypeError: An item is neither a name nor a Message class.
    """
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


def describe(names: frozenset[str] | None, src: str | None) -> str:
    """``"A|B from c1"``: what a wait is for, in messages."""
    what = "|".join(sorted(names)) if names else "message"
    return f"{what} from {src}" if src else what
