"""TCP channels: the same actors across processes and machines.

Each frame on the wire is a 4-byte big-endian length and one body (see
:mod:`simkit.channels._framing` and docs/wire-protocol.md). Every connection
(a :class:`TcpChannel`, in :mod:`simkit.channels._tcpchannel`) runs one task
holding a **reader**, which cuts frames, refuses a length above the limit
before allocating, decodes each body and pushes it to ``on_message``, and a
**writer**, which drains a bounded send queue with ``sendmsg`` (a body's
parts are never joined) and, on :meth:`TcpChannel.close`, flushes, sends a
close notice with the reason, half-closes and waits briefly for the peer's
end of stream.

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
raises :class:`RealTimeOnly` (DESIGN.md, determinism rule 1). It learns
the mode from a :class:`~simkit.clock.Clock` (the run's, given by
:meth:`TcpTransport.bind_clock`, or the running loop's).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import ssl
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

import anyio
import anyio.abc
from anyio.streams.tls import TLSStream

from simkit.channels._base import Channel, ConnectError, ConnectRefused, Listener, Transport
from simkit.channels._tcpchannel import TcpChannel
from simkit.channels._tcpio import SocketIO, StreamIO, TransportIO, format_address
from simkit.channels.memory import TraceSink
from simkit.clock import Clock
from simkit.wire import DEFAULT_MAX_BODY

__all__ = ["RealTimeOnly", "TcpChannel", "TcpListener", "TcpTransport", "parse_address"]

log = logging.getLogger("simkit.channels.tcp")


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


def _refuse_virtual(clock: Clock) -> None:
    if clock.virtual:
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
        self._bound: Clock | None = None

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

    def bind_clock(self, clock: Clock) -> None:
        """Use ``clock`` (the run's) for time and to refuse virtual time.

        Raises:
            RealTimeOnly: ``clock`` is virtual.
        """
        _refuse_virtual(clock)
        self._bound = clock

    def _clock(self) -> Clock:
        bound = self._bound
        if bound is not None and bound.loop is asyncio.get_running_loop():
            return bound
        return Clock.running()

    def listen(self, owner: str, address: str) -> TcpListener:
        """Listen for ``owner`` at ``address`` (a name, or ``host:port``).

        Raises:
            ConnectError: The address is in use or cannot be bound.
            RealTimeOnly: Called on the virtual-time loop.
        """
        _refuse_virtual(self._clock())
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
        _refuse_virtual(self._clock())
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
