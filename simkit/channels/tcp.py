"""TCP channels: the same actors across processes and machines.

Each frame on the wire is a 4-byte big-endian length and one body (see
:mod:`simkit.channels._framing` and docs/wire-protocol.md). Every connection
runs one task holding a **reader**, which cuts frames, refuses a length above
the limit before allocating, decodes each body and pushes it to
``on_message``, and a **writer**, which drains a bounded send queue with
``sendmsg`` (a body's parts are never joined) and, on :meth:`TcpChannel.close`,
flushes, sends a close notice with the reason, half-closes and waits briefly
for the peer's end of stream.

A peer that breaks the framing or sends an undecodable body gets a close
notice naming the problem, and only its connection is closed; the reason is
logged on the ``simkit.channels.tcp`` logger. A peer that stalls inside a
frame for ``read_timeout`` seconds is broken. Silence *between* frames is
left to the heartbeats of :mod:`simkit.actors`.

A transport may hold a shared **token** (``TcpTransport(token=...)``): a
``Join`` sent through it carries the token when the actor gave none, and a
``Join`` received by one of its listeners with another token is answered
``Reject("auth", "wrong token")`` and closed before the actor sees it. Every
process of a deployment (``simkit serve``, ``simkit client``) is given the
same token, whatever its protocol's actors do. Given a ``trace``, the
transport records a ``send`` event for each frame queued and a ``deliver``
event for each frame received (without payload digests: hashing every body
would slow a 100 MB transfer for nothing reproducible).

Addresses: actors address peers by name. A :class:`TcpTransport` keeps an
address book from names to ``host:port``; ``listen(owner, name)`` for a name
not in the book binds ``host:0`` and records the port the system chose, so
actors in one process find each other with no configuration. An address may
also be ``host:port`` (``[v6addr]:port``) directly.

TCP needs real time: a :class:`TcpTransport` used on the virtual-time loop
raises :class:`RealTimeOnly` (DESIGN.md, determinism rule 1).
"""

from __future__ import annotations

import asyncio
import errno
import hmac
import logging
import socket
import ssl
import sys
from collections import deque
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
from anyio.streams.tls import TLSStream

from simkit.channels._base import (
    BrokenChannel,
    Channel,
    ChannelClosed,
    ConnectError,
    ConnectRefused,
    Listener,
    OnClose,
    OnMessage,
    Transport,
)
from simkit.channels._framing import (
    PREFIX,
    CloseNotice,
    EndOfStream,
    FrameReader,
    FrameViolation,
    close_notice,
)
from simkit.channels._tcpio import LinkBroken, SocketIO, StreamIO, TransportIO, format_address
from simkit.channels.memory import TraceSink
from simkit.codec import DEFAULT_MAX_BODY, DecodeError
from simkit.messages import (
    ActionMessage,
    Join,
    Reject,
    Send,
    body_size,
    decode_action,
    encode_action,
)

__all__ = ["RealTimeOnly", "TcpChannel", "TcpListener", "TcpTransport", "parse_address"]

log = logging.getLogger("simkit.channels.tcp")

_SMALL = 64 * 1024  # frames below this are copied into one buffer with their prefix
_COALESCE = 256 * 1024  # queued small frames are written together up to this size
_ZERO_COPY = 1 << 20  # ``await send`` queues bodies from this size without copying


class RealTimeOnly(RuntimeError):
    """A real-time transport (TCP) was used on the virtual-time loop."""


def parse_address(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of ``"host:port"`` or ``"[v6]:port"``; ``None`` if not that shape."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        return None
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        return None
    return host, int(port)


def _refuse_virtual_time() -> None:
    # simkit.runtime sits above the channels: look it up, never import it.
    runtime = sys.modules.get("simkit.runtime")
    loop = asyncio.get_running_loop()
    if runtime is not None and isinstance(loop, runtime.VirtualEventLoop):
        raise RealTimeOnly(
            "TCP channels need real time: run with mode='real' "
            "(virtual mode does no real I/O; DESIGN.md determinism rule 1)"
        )


# ----------------------------------------------------------------------------- transport


class TcpTransport(Transport):
    """Actors over TCP (optionally TLS), found by name through an address book.

    Args:
        addresses: Initial address book, ``{name: "host:port"}``.
        host: Where listeners for names missing from the book bind (port 0).
        max_body: The largest body sent or accepted, in bytes.
        max_first_body: The largest *first* body a peer may send on a
            connection (a ``Join`` or its answer): an unauthenticated peer
            cannot make the receiver allocate more.
        send_buffer: ``await send`` waits while more than this many bytes are
            queued on the channel (backpressure).
        max_queued: ``send_nowait``/``send_encoded`` never wait; when the
            queue would pass this many bytes the peer is deemed not to read:
            the channel breaks (``BrokenChannel``).
        read_timeout: Seconds a peer may stall inside a frame before the
            connection counts as broken.
        write_timeout: Seconds a write may make no progress before the
            connection counts as broken.
        connect_timeout: Seconds for the TCP (and TLS) handshake.
        close_timeout: Seconds a closing end waits for the peer's end of stream.
        ssl_server: TLS context of listeners (server certificate; set
            ``verify_mode = CERT_REQUIRED`` to demand client certificates).
        ssl_client: TLS context of connections (with the CA to trust and,
            optionally, a client certificate).
        server_hostname: The name to check the server certificate against
            (default: the host connected to).
        token: A shared secret every ``Join`` on this transport must carry
            (empty: none); see the module docstring.
        trace: Where to record ``send`` and ``deliver`` events (a
            :class:`~simkit.simulation.Simulation` sets its own when left ``None``).
    """

    def __init__(
        self,
        addresses: Mapping[str, str] | None = None,
        *,
        host: str = "127.0.0.1",
        max_body: int = DEFAULT_MAX_BODY,
        max_first_body: int = 64 * 1024,
        send_buffer: int = 8 << 20,
        max_queued: int = 1 << 31,
        read_timeout: float = 30.0,
        write_timeout: float = 30.0,
        connect_timeout: float = 10.0,
        close_timeout: float = 2.0,
        ssl_server: ssl.SSLContext | None = None,
        ssl_client: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        token: str = "",
        trace: TraceSink | None = None,
    ) -> None:
        self.host = host
        self.max_body = max_body
        self.max_first_body = min(max_first_body, max_body)
        self.send_buffer = send_buffer
        self.max_queued = max_queued
        self.read_timeout = read_timeout
        self.write_timeout = write_timeout
        self.connect_timeout = connect_timeout
        self.close_timeout = close_timeout
        self.ssl_server = ssl_server
        self.ssl_client = ssl_client
        self.server_hostname = server_hostname
        self.token = token
        self.trace = trace
        self._book: dict[str, str] = {}
        for name, address in (addresses or {}).items():
            self.register(name, address)
        self._listeners: dict[str, list[TcpListener]] = {}
        self._ends: dict[str, set[TcpChannel]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # -- addresses -----------------------------------------------------------------------

    def register(self, name: str, address: str) -> None:
        """Record that actor ``name`` listens at ``address`` (``host:port``).

        Raises:
            ValueError: ``address`` is not ``host:port``.
        """
        if parse_address(address) is None:
            raise ValueError(f"address of {name!r} must be 'host:port', got {address!r}")
        self._book[name] = address

    def address_of(self, name: str) -> str:
        """The ``host:port`` that ``name`` stands for (itself if already an address).

        Raises:
            KeyError: ``name`` is neither in the book nor an address.
        """
        if name in self._book:
            return self._book[name]
        if parse_address(name) is not None:
            return name
        raise KeyError(f"no address known for {name!r}")

    @property
    def addresses(self) -> dict[str, str]:
        """A copy of the address book."""
        return dict(self._book)

    def listening_at(self, owner: str) -> str | None:
        """The ``host:port`` where ``owner`` listens now (its first listener), or ``None``."""
        listeners = self._listeners.get(owner)
        return listeners[0].address if listeners else None

    # -- Transport -----------------------------------------------------------------------

    def listen(self, owner: str, address: str) -> TcpListener:
        """Listen for ``owner`` at ``address`` (a name, or ``host:port``).

        Raises:
            ConnectError: The address is in use or cannot be bound.
            RealTimeOnly: Called on the virtual-time loop.
        """
        _refuse_virtual_time()
        known = self._book.get(address, address)
        parsed = parse_address(known)
        host, port = parsed if parsed is not None else (self.host, 0)
        try:
            sock = socket.create_server(
                (host, port),
                family=socket.AF_INET6 if ":" in host else socket.AF_INET,
                backlog=1024,
            )
        except OSError as exc:
            raise ConnectError(f"{owner}: cannot listen at {host}:{port}: {exc.strerror}") from None
        sock.setblocking(False)
        bound = format_address(sock.getsockname())
        if parsed is None or port == 0:
            self._book[address] = bound
        listener = TcpListener(self, owner, bound, sock)
        self._listeners.setdefault(owner, []).append(listener)
        return listener

    async def connect(self, owner: str, address: str) -> TcpChannel:
        """Connect ``owner`` to the actor (or ``host:port``) at ``address``.

        Raises:
            ConnectRefused: Nothing listens there (or the name is unknown).
            ConnectError: Unreachable, timed out, or the TLS handshake failed.
            RealTimeOnly: Called on the virtual-time loop.
        """
        _refuse_virtual_time()
        try:
            target = self.address_of(address)
        except KeyError:
            raise ConnectRefused(f"{owner}: no address known for {address!r}") from None
        parsed = parse_address(target)
        assert parsed is not None
        try:
            with anyio.fail_after(self.connect_timeout):
                io = await self._open_io(*parsed)
        except TimeoutError:
            raise ConnectError(
                f"{owner}: connecting to {address} ({target}) timed out "
                f"after {self.connect_timeout:g} s"
            ) from None
        except ConnectRefused as exc:
            raise ConnectRefused(
                f"{owner}: nothing listens at {address!r} ({target}): {exc}"
            ) from None
        return self._open(owner, address, io)

    async def _open_io(self, host: str, port: int) -> TransportIO:
        sock = await _connect_socket(host, port)
        if self.ssl_client is None:
            return SocketIO(sock)
        try:
            stream = await anyio.abc.SocketStream.from_socket(sock)
        except BaseException:
            sock.close()
            raise
        try:
            tls = await TLSStream.wrap(
                stream,
                hostname=self.server_hostname or host,
                ssl_context=self.ssl_client,
                standard_compatible=False,
            )
        except BaseException as exc:
            await anyio.aclose_forcefully(stream)
            if isinstance(exc, Exception):
                raise ConnectError(f"TLS handshake with {host}:{port} failed: {exc}") from None
            raise
        return StreamIO(tls, f"{host}:{port}")

    # -- faults and shutdown ---------------------------------------------------------------

    def crash(self, owner: str, *, loud: bool) -> None:
        """Kill ``owner``'s listeners and connections, as a crashed process would.

        A loud crash closes the sockets without a close notice (peers see an
        end of stream at once); a silent one leaves them open and mute, like
        a hung process, until the transport closes: only heartbeats notice.
        """
        for listener in self._listeners.pop(owner, []):
            listener.close()
        for channel in list(self._ends.pop(owner, ())):
            channel._crash(loud=loud)

    async def aclose(self) -> None:
        """Close every listener and connection (flushing), then end their tasks."""
        for listeners in list(self._listeners.values()):
            for listener in listeners:
                listener.close()
        self._listeners.clear()
        for ends in list(self._ends.values()):
            for channel in list(ends):
                channel.close("transport closed")
        tasks = set(self._tasks)
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=self.close_timeout + 1.0)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)

    # -- internals -------------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("TCP task %s failed", task.get_name(), exc_info=task.exception())

    def _open(
        self, owner: str, remote: str, io: TransportIO, *, accepted: bool = False
    ) -> TcpChannel:
        channel = TcpChannel(self, owner, remote, io, accepted=accepted)
        self._ends.setdefault(owner, set()).add(channel)
        self._spawn(channel._serve(), f"tcp:{owner}<->{remote}")
        return channel

    def _forget(self, channel: TcpChannel) -> None:
        ends = self._ends.get(channel.local)
        if ends is not None:
            ends.discard(channel)
            if not ends:
                del self._ends[channel.local]

    def _forget_listener(self, listener: TcpListener) -> None:
        listeners = self._listeners.get(listener.owner)
        if listeners is not None and listener in listeners:
            listeners.remove(listener)


async def _connect_socket(host: str, port: int) -> socket.socket:
    try:
        infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise ConnectError(f"cannot resolve {host!r}: {exc}") from None
    refused: list[str] = []
    errors: list[str] = []
    for family, kind, proto, _name, sockaddr in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            err = sock.connect_ex(sockaddr)
            if err in (errno.EINPROGRESS, errno.EWOULDBLOCK):
                await anyio.wait_writable(sock)
                err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        except BaseException:
            sock.close()
            raise
        if err == 0:
            return sock
        sock.close()
        (refused if err == errno.ECONNREFUSED else errors).append(
            f"{format_address(sockaddr)}: {errno.errorcode.get(err, err)}"
        )
    if errors:
        raise ConnectError(f"cannot connect to {host}:{port}: {', '.join(errors + refused)}")
    raise ConnectRefused(", ".join(refused) or "no address")


def _type_name(msg: ActionMessage) -> str:
    return msg.type if isinstance(msg, Send) else type(msg).__name__


# ----------------------------------------------------------------------------- listener


class TcpListener(Listener):
    """Accepts TCP (or TLS) connections; ``address`` is the bound ``host:port``."""

    def __init__(
        self, transport: TcpTransport, owner: str, address: str, sock: socket.socket
    ) -> None:
        self._transport = transport
        self.owner = owner
        self.address = address
        self._sock = sock
        self._scope: anyio.CancelScope | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"<TcpListener {self.owner}@{self.address}{' closed' if self._closed else ''}>"

    def start(self, on_accept: Callable[[Channel], None]) -> None:
        if self._closed or self._scope is not None:
            return
        self._scope = anyio.CancelScope()
        self._transport._spawn(self._accept_loop(on_accept), f"tcp-accept:{self.owner}")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._transport._forget_listener(self)
        if self._scope is not None:
            self._scope.cancel()
        anyio.notify_closing(self._sock)
        self._sock.close()

    async def _accept_loop(self, on_accept: Callable[[Channel], None]) -> None:
        assert self._scope is not None
        try:
            with self._scope:
                await self._accept_all(on_accept)
        finally:
            self.close()  # the loop ends (or is cancelled): the socket goes with it

    async def _accept_all(self, on_accept: Callable[[Channel], None]) -> None:
        while not self._closed:
            try:
                await anyio.wait_readable(self._sock)
                sock, addr = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                continue
            except anyio.ClosedResourceError:
                return
            except OSError as exc:  # out of descriptors, ...: keep serving
                log.warning("%s: accept failed at %s: %s", self.owner, self.address, exc)
                await anyio.sleep(0.1)
                continue
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._transport.ssl_server is None:
                on_accept(
                    self._transport._open(
                        self.owner, format_address(addr), SocketIO(sock), accepted=True
                    )
                )
            else:
                self._transport._spawn(
                    self._tls_accept(sock, format_address(addr), on_accept),
                    f"tls-accept:{self.owner}",
                )

    async def _tls_accept(
        self, sock: socket.socket, peer: str, on_accept: Callable[[Channel], None]
    ) -> None:
        transport = self._transport
        assert transport.ssl_server is not None
        sock.setblocking(False)
        try:
            stream = await anyio.abc.SocketStream.from_socket(sock)
        except BaseException:
            sock.close()
            raise
        try:
            with anyio.fail_after(transport.connect_timeout):
                tls = await TLSStream.wrap(
                    stream,
                    server_side=True,
                    ssl_context=transport.ssl_server,
                    standard_compatible=False,
                )
        except Exception as exc:
            log.warning("%s: TLS handshake from %s failed: %r", self.owner, peer, exc)
            await anyio.aclose_forcefully(stream)
            return
        except BaseException:
            await anyio.aclose_forcefully(stream)
            raise
        if self._closed:
            await anyio.aclose_forcefully(tls)
            return
        on_accept(transport._open(self.owner, peer, StreamIO(tls, peer), accepted=True))


# ----------------------------------------------------------------------------- channel


class _Frame:
    __slots__ = ("done", "parts", "size")

    def __init__(
        self, parts: list[bytes | memoryview], size: int, done: asyncio.Future[None] | None
    ) -> None:
        self.parts = parts
        self.size = size
        self.done = done


class TcpChannel(Channel):
    """One end of a TCP connection (see the module docstring)."""

    def __init__(
        self,
        transport: TcpTransport,
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
        modify the arrays afterwards.

        Raises:
            ChannelClosed: This end was closed.
            BrokenChannel: The other end went away (also while waiting).
            FrameTooLarge: The message encodes to more than the frame limit.
        """
        msg = self._stamped(msg)
        parts = encode_action(msg, self.max_body)
        size = body_size(parts)
        limit = self._transport.send_buffer
        while not self._closed and self._queued and self._queued + size > limit:
            self._room.clear()
            await self._room.wait()
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
