"""The channel interface every transport implements (in-memory and TCP).

A :class:`Channel` is one end of a connection between two actors. It carries
ActionMessages, really encoded to bytes and decoded again, so byte counts and
decoding errors are the same whatever the transport. Delivery is *pushed*: the
owner calls :meth:`Channel.start` with two callbacks, and the channel calls
``on_message`` for each message that arrives and ``on_close`` once, when the
connection ends. Pushing saves a task switch per message over a pull loop; a
transport that reads from a socket runs its own reader task and pushes too.
"""

from __future__ import annotations

import abc
from collections.abc import Callable

from simkit.clock import Clock
from simkit.codec import DEFAULT_MAX_BODY, FrameTooLarge
from simkit.messages import ActionMessage, Send, encode_action

__all__ = [
    "BrokenChannel",
    "Channel",
    "ChannelClosed",
    "ChannelError",
    "ConnectError",
    "ConnectRefused",
    "Listener",
    "OnClose",
    "OnMessage",
    "Transport",
]

OnMessage = Callable[[ActionMessage], None]
OnClose = Callable[[str], None]


class ChannelError(Exception):
    """Base class of channel errors."""


class ChannelClosed(ChannelError):
    """This end of the channel was closed; it can no longer send."""


class BrokenChannel(ChannelError):
    """The other end went away (closed, crashed or unreachable)."""


class ConnectError(ChannelError):
    """The connection could not be made or was closed during the handshake."""


class ConnectRefused(ConnectError):
    """Nothing listens at the address."""


def check_body_size(body: bytes, max_body: int, local: str) -> None:
    """Refuse an encoded body above the frame limit before it is queued.

    Raises:
        FrameTooLarge: ``len(body) > max_body``.
    """
    if len(body) > max_body:
        raise FrameTooLarge(
            f"{local}: a body of {len(body)} bytes is above the limit of {max_body}"
        )


class Channel(abc.ABC):
    """One end of a connection.

    Attributes:
        local: The name of the actor owning this end.
        remote: The name (or address) of the other end.
    """

    local: str
    remote: str

    @property
    @abc.abstractmethod
    def closed(self) -> bool:
        """Whether this end can no longer send (closed here or by the peer)."""

    @abc.abstractmethod
    def start(self, on_message: OnMessage, on_close: OnClose) -> None:
        """Begin pushing received messages to ``on_message``.

        Messages that arrived before ``start`` are pushed first, in order.
        ``on_close(reason)`` is called once when the connection ends for any
        reason other than :meth:`close` on this end.
        """

    @property
    def max_body(self) -> int:
        """The largest body this channel sends or accepts, in bytes."""
        return DEFAULT_MAX_BODY

    def send_nowait(self, msg: ActionMessage) -> int:
        """Encode and send ``msg`` without waiting; return the encoded size.

        Raises:
            ChannelClosed: This end was closed.
            BrokenChannel: The other end went away.
            FrameTooLarge: The message encodes to more than the frame limit.
        """
        parts = encode_action(msg, self.max_body)
        body = parts[0] if len(parts) == 1 and isinstance(parts[0], bytes) else b"".join(parts)
        type_name = msg.type if isinstance(msg, Send) else type(msg).__name__
        return self.send_encoded(body, type_name)

    @abc.abstractmethod
    def send_encoded(self, body: bytes, type_name: str) -> int:
        """Send an already encoded body (see :func:`~simkit.messages.encode_action`).

        A broadcast encodes a message once and sends the same body to many
        channels. ``type_name`` labels the message in the trace.

        Raises:
            ChannelClosed: This end was closed.
            BrokenChannel: The other end went away.
            FrameTooLarge: ``body`` is longer than :attr:`max_body` (nothing is sent).
        """

    async def send_body(self, body: bytes, type_name: str) -> int:
        """Like :meth:`send_encoded`, waiting for room where the transport applies backpressure.

        Raises:
            ChannelClosed: This end was closed.
            BrokenChannel: The other end went away.
            FrameTooLarge: ``body`` is longer than :attr:`max_body` (nothing is sent).
        """
        return self.send_encoded(body, type_name)

    async def send(self, msg: ActionMessage) -> int:
        """Send ``msg``, waiting for room where the transport applies backpressure.

        A message is sent whole or not at all: a ``send`` cancelled while it
        waits for room sent nothing, and the channel stays usable. (The
        in-memory transport applies no backpressure: its ``send`` never waits;
        the network model delays arrival instead.)

        Raises:
            ChannelClosed: This end was closed.
            BrokenChannel: The other end went away.
            FrameTooLarge: The message encodes to more than the frame limit.
        """
        return self.send_nowait(msg)

    @abc.abstractmethod
    def close(self, reason: str = "") -> None:
        """Close this end; the peer sees the close after data already sent.

        There is no half-close: messages still arriving here are dropped.
        Idempotent. ``on_close`` is not called for a close made here.
        """


class Listener(abc.ABC):
    """Accepts incoming connections at an address."""

    address: str

    @abc.abstractmethod
    def start(self, on_accept: Callable[[Channel], None]) -> None:
        """Call ``on_accept(channel)`` for each new connection."""

    @abc.abstractmethod
    def close(self) -> None:
        """Stop accepting. Idempotent; connections already made stay open."""


class Transport(abc.ABC):
    """A network: where actors listen and connect."""

    def bind_clock(self, clock: Clock) -> None:  # noqa: B027 (optional hook)
        """The run starts on ``clock``: a transport that needs real time refuses a virtual one.

        Raises:
            RealTimeOnly: (TCP) ``clock`` is virtual.
        """

    @abc.abstractmethod
    def listen(self, owner: str, address: str) -> Listener:
        """Listen at ``address`` on behalf of actor ``owner``.

        Raises:
            ConnectError: The address is already in use.
        """

    @abc.abstractmethod
    async def connect(self, owner: str, address: str) -> Channel:
        """Open a connection from actor ``owner`` to ``address``.

        Raises:
            ConnectRefused: Nothing listens at ``address``.
        """
