"""One end of a TCP connection: a reader and a writer task around a bounded send queue.

See :mod:`simkit.channels.tcp` for the whole picture; this module holds the
:class:`TcpChannel` a :class:`~simkit.channels.tcp.TcpTransport` opens for
each connection. It logs on the ``simkit.channels.tcp`` logger.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections import deque
from typing import Protocol

import anyio
import anyio.lowlevel

from simkit.channels._base import (
    BrokenChannel,
    Channel,
    ChannelClosed,
    OnClose,
    OnMessage,
    check_body_size,
)
from simkit.channels._framing import (
    PREFIX,
    CloseNotice,
    EndOfStream,
    FrameReader,
    FrameViolation,
    close_notice,
)
from simkit.channels._tcpio import LinkBroken, TransportIO
from simkit.channels.memory import TraceSink
from simkit.wire import (
    ActionMessage,
    DecodeError,
    Join,
    Reject,
    Send,
    body_size,
    decode_action,
    encode_action,
)

__all__ = ["TcpChannel"]

log = logging.getLogger("simkit.channels.tcp")

_SMALL = 64 * 1024  # frames below this are copied into one buffer with their prefix
_COALESCE = 256 * 1024  # queued small frames are written together up to this size
_ZERO_COPY = 1 << 20  # ``await send`` queues bodies from this size without copying


def _type_name(msg: ActionMessage) -> str:
    return msg.type if isinstance(msg, Send) else type(msg).__name__


class _Frame:
    __slots__ = ("done", "parts", "size")

    def __init__(
        self, parts: list[bytes | memoryview], size: int, done: asyncio.Future[None] | None
    ) -> None:
        self.parts = parts
        self.size = size
        self.done = done


class ChannelOwner(Protocol):
    """What a channel reads from the transport that opened it.

    That is a :class:`~simkit.channels.tcp.TcpTransport`; a protocol here keeps
    this module from importing that one (which imports this one).
    """

    max_body: int
    max_first_body: int
    send_buffer: int
    max_queued: int
    read_timeout: float
    write_timeout: float
    close_timeout: float
    token: str
    trace: TraceSink | None

    def _forget(self, channel: TcpChannel) -> None: ...


class TcpChannel(Channel):
    """One end of a TCP connection (see :mod:`simkit.channels.tcp`)."""

    def __init__(
        self,
        transport: ChannelOwner,
        local: str,
        remote: str,
        io: TransportIO,
        *,
        accepted: bool = False,
    ) -> None:
        self._transport = transport
        self.local = local
        self.remote = remote
        self._io = io
        self._awaiting_join = accepted  # a listener's end: the first frame must be a Join
        self._on_message: OnMessage | None = None
        self._on_close: OnClose | None = None
        self._backlog: list[ActionMessage] = []
        self._pending_close: str | None = None
        self._closed = False  # this end can no longer send
        self._remote_gone = False  # ... because the other end went away
        self._closing: str | None = None  # reason of a local close, for the notice
        self._frozen = False  # crashed silently: hold the socket, say nothing
        self._queue: deque[_Frame] = deque()
        self._queued = 0
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._reader_done = asyncio.Event()
        self._scope: anyio.CancelScope | None = None
        self._ended = False

    def __repr__(self) -> str:
        state = " closed" if self._closed else ""
        return f"<TcpChannel {self.local}->{self.remote} ({self._io.peer()}){state}>"

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def max_body(self) -> int:
        return self._transport.max_body

    @property
    def queued(self) -> int:
        """Bytes waiting in the send queue (frames, with their prefixes)."""
        return self._queued

    def start(self, on_message: OnMessage, on_close: OnClose) -> None:
        self._on_message, self._on_close = on_message, on_close
        backlog, self._backlog = self._backlog, []
        for msg in backlog:
            on_message(msg)
        if self._pending_close is not None:
            self._on_close = None
            on_close(self._pending_close)

    # -- sending -------------------------------------------------------------------------

    def send_nowait(self, msg: ActionMessage) -> int:
        return super().send_nowait(self._stamped(msg))

    def send_encoded(self, body: bytes, type_name: str) -> int:
        """Queue an encoded body (a large one by reference: it is immutable)."""
        self._check_open()
        check_body_size(body, self._transport.max_body, self.local)
        size = len(body)
        self._enqueue(self._frame([body], size, None))
        self._record("send", self.local, self.remote, type_name, size)
        return size

    def _stamped(self, msg: ActionMessage) -> ActionMessage:
        """``msg``, with the transport's token if it is a ``Join`` without one."""
        token = self._transport.token
        if token and isinstance(msg, Join) and not msg.token:
            return Join(msg.name, msg.version, token)
        return msg

    def _record(
        self, kind: str, src: str, dst: str, type_name: str, size: int, info: str = ""
    ) -> None:
        trace = self._transport.trace
        if trace is not None:
            now = asyncio.get_running_loop().time()
            trace.record(now, kind, src, dst, type_name, size, "", info)

    async def send(self, msg: ActionMessage) -> int:
        """Send ``msg``, waiting while more than ``send_buffer`` bytes are queued.

        A large body (1 MiB and up) is queued without copying its arrays, and
        this call returns once it is written to the socket, so the caller may
        modify the arrays afterwards. Cancelled while waiting for room, it
        sent nothing; cancelled once a large body is queued, the frame is
        still written whole (do not modify its arrays until the channel
        closes). Either way the channel stays usable.

        Raises:
            ChannelClosed: This end was closed.
            BrokenChannel: The other end went away (also while waiting).
            FrameTooLarge: The message encodes to more than the frame limit.
        """
        msg = self._stamped(msg)
        parts = encode_action(msg, self.max_body)
        size = body_size(parts)
        await self._wait_for_room(size)
        self._check_open()
        self._record("send", self.local, self.remote, _type_name(msg), size)
        if size < _ZERO_COPY:
            self._enqueue(self._frame([b"".join(parts)], size, None))
            await anyio.lowlevel.checkpoint()
            return size
        done = asyncio.get_running_loop().create_future()
        self._enqueue(self._frame(parts, size, done))
        await done
        return size

    async def send_body(self, body: bytes, type_name: str) -> int:
        """Queue an encoded body, waiting while more than ``send_buffer`` bytes are queued.

        Raises:
            ChannelClosed: This end was closed.
            BrokenChannel: The other end went away (also while waiting).
            FrameTooLarge: ``body`` is longer than ``max_body`` (nothing is sent).
        """
        check_body_size(body, self._transport.max_body, self.local)
        await self._wait_for_room(len(body))
        return self.send_encoded(body, type_name)

    async def _wait_for_room(self, size: int) -> None:
        limit = self._transport.send_buffer
        while not self._closed and self._queued and self._queued + size > limit:
            self._room.clear()
            await self._room.wait()

    def _frame(
        self, parts: list[bytes | memoryview], size: int, done: asyncio.Future[None] | None
    ) -> _Frame:
        prefix = PREFIX.pack(size)
        if size < _SMALL:
            return _Frame([prefix + b"".join(parts)], size + 4, done)
        return _Frame([prefix, *parts], size + 4, done)

    def _enqueue(self, frame: _Frame) -> None:
        if self._queued and self._queued + frame.size > self._transport.max_queued:
            reason = f"send queue overflow: {self._queued} bytes queued, the peer does not read"
            self._violation(reason)
            raise BrokenChannel(f"{self.local}: {self.remote}: {reason}")
        self._queue.append(frame)
        self._queued += frame.size
        self._wake.set()

    def _check_open(self) -> None:
        if self._closed:
            if self._remote_gone:
                raise BrokenChannel(f"{self.local}: connection to {self.remote} is broken")
            raise ChannelClosed(f"{self.local}: channel to {self.remote} is closed")

    def close(self, reason: str = "") -> None:
        if self._closed:
            return
        self._closed = True
        self._closing = reason or "closed by peer"
        self._on_message = None
        self._wake.set()

    # -- the connection task ---------------------------------------------------------------

    async def _serve(self) -> None:
        try:
            with anyio.CancelScope() as scope:
                self._scope = scope
                if self._ended:
                    scope.cancel()
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._read_loop)
                    tg.start_soon(self._write_loop)
            if self._frozen:
                await anyio.sleep_forever()
        finally:
            self._transport._forget(self)
            self._fail_waiters()
            with anyio.CancelScope(shield=True):
                await self._io.aclose()

    def _end(self) -> None:
        self._ended = True
        if self._scope is not None:
            self._scope.cancel()

    async def _read_loop(self) -> None:
        transport = self._transport
        reader = FrameReader(self._io, transport.read_timeout)
        limit = transport.max_first_body
        try:
            while True:
                item = await reader.next(limit)
                limit = transport.max_body
                if isinstance(item, CloseNotice):
                    self._remote_closed(item.reason or "closed by peer")
                    return
                if self._closed:
                    continue  # closing here: what still arrives is dropped
                try:
                    msg = decode_action(item, transport.max_body)
                except DecodeError as exc:
                    self._violation(f"undecodable frame: {exc}")
                    await self._drain(reader)
                    return
                self._push(msg, len(item))
        except EndOfStream as exc:
            if exc.truncated:
                log.warning("%s: %s: %s", self.local, self._io.peer(), exc)
            self._remote_closed(str(exc))
        except FrameViolation as exc:
            self._violation(str(exc))
        except LinkBroken as exc:
            log.info("%s: connection to %s broken: %s", self.local, self._io.peer(), exc)
            self._remote_closed(str(exc))
        finally:
            self._reader_done.set()

    async def _drain(self, reader: FrameReader) -> None:
        """After a violation: discard input until the peer closes (bounded by the writer)."""
        try:
            while True:
                await reader.next(self._transport.max_first_body)
        except (EndOfStream, FrameViolation, LinkBroken):
            pass

    def _push(self, msg: ActionMessage, size: int) -> None:
        self._record("deliver", self.remote, self.local, _type_name(msg), size)
        if self._awaiting_join:
            self._awaiting_join = False
            if isinstance(msg, Join) and not self._admit(msg):
                return
        on_message = self._on_message
        if on_message is None:
            self._backlog.append(msg)
            return
        try:
            on_message(msg)
        except Exception:  # a bug above must not kill the connection silently
            log.exception("%s: on_message failed for a message from %s", self.local, self.remote)
            self._violation("internal error while handling a message")

    def _admit(self, join: Join) -> bool:
        """Check a peer's ``Join`` against the transport's token; refuse it if wrong."""
        self.remote = join.name[:128] or self.remote  # name the peer in traces and logs
        token = self._transport.token
        if not token or hmac.compare_digest(join.token.encode(), token.encode()):
            return True
        self._record("reject", self.local, self.remote, "", 0, "auth: wrong token")
        try:
            self.send_nowait(Reject("auth", "wrong token"))
        except (ChannelClosed, BrokenChannel):
            pass
        self._violation("rejected: auth")  # the notice an actor's own check would send
        return False

    async def _write_loop(self) -> None:
        io = self._io
        timeout = self._transport.write_timeout
        try:
            while True:
                if not self._queue:
                    if self._closing is not None:
                        break
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                frames = self._take_batch()
                parts = (
                    frames[0].parts if len(frames) == 1 else [b"".join(f.parts[0] for f in frames)]
                )
                await io.send_parts(parts, timeout)
                for frame in frames:
                    self._queued = max(0, self._queued - frame.size)
                    if frame.done is not None and not frame.done.done():
                        frame.done.set_result(None)
                self._room.set()
            await io.send_parts([close_notice(self._closing)], timeout)
            await io.send_eof()
            with anyio.move_on_after(self._transport.close_timeout):
                await self._reader_done.wait()
        except LinkBroken as exc:
            log.info("%s: connection to %s broken: %s", self.local, self._io.peer(), exc)
            self._remote_closed(str(exc))
        self._end()

    def _take_batch(self) -> list[_Frame]:
        queue = self._queue
        first = queue.popleft()
        if first.size >= _SMALL:
            return [first]
        batch, total = [first], first.size
        while queue and queue[0].size < _SMALL and total < _COALESCE:
            frame = queue.popleft()
            batch.append(frame)
            total += frame.size
        return batch

    # -- endings ------------------------------------------------------------------------------

    def _remote_closed(self, reason: str) -> None:
        """The peer closed or the link broke: tell the owner (unless it closed first)."""
        if not self._closed:
            self._closed = True
            self._remote_gone = True
            self._notify_close(reason)
        self._end()

    def _violation(self, reason: str) -> None:
        """The peer broke the protocol: log, tell the owner, and close with a notice.

        Frames queued before (a ``Reject``, say) are still sent, then the notice.
        """
        log.warning("%s: closing connection from %s: %s", self.local, self._io.peer(), reason)
        if not self._closed:
            self._closed = True
            self._remote_gone = True
            self._closing = reason
            self._notify_close(reason)
        elif self._closing is None:
            self._closing = reason
        self._wake.set()  # the writer flushes what was queued before, then the notice

    def _notify_close(self, reason: str) -> None:
        self._on_message = None
        on_close, self._on_close = self._on_close, None
        if on_close is not None:
            on_close(reason)
        else:
            self._pending_close = reason

    def _fail_waiters(self) -> None:
        for frame in self._queue:
            if frame.done is not None and not frame.done.done():
                frame.done.set_exception(BrokenChannel(f"{self.local}: {self.remote} went away"))
        self._room.set()

    def _crash(self, *, loud: bool) -> None:
        self._closed = True
        self._on_message = None
        self._on_close = None
        self._frozen = not loud
        self._end()
