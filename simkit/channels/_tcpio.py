"""Byte I/O under the TCP channel: a raw non-blocking socket, or any anyio stream.

Plain TCP goes through :class:`SocketIO`: ``recv_into`` fills the caller's
buffer and ``sendmsg`` writes a body's parts (header, payload, array bytes)
without joining them, so a 100 MB array is copied once, by the kernel, on
each side. Waiting uses anyio's ``wait_readable``/``wait_writable``. TLS goes
through :class:`StreamIO` over an anyio :class:`~anyio.streams.tls.TLSStream`
(the TLS layer copies anyway, so nothing is saved by avoiding copies there).

Both raise :class:`LinkBroken` for every failure of the connection (reset,
timeout, TLS error), with a reason fit for a log line.
"""

from __future__ import annotations

import abc
import errno
import socket
import ssl
from collections import deque
from collections.abc import Sequence

import anyio
import anyio.abc

__all__ = ["LinkBroken", "SocketIO", "StreamIO", "TransportIO"]

_IOV_MAX = 512  # well under Linux's 1024; a body has a handful of parts
_TLS_SLICE = 1 << 20  # TLS writes in 1 MiB slices (each becomes a bounded BIO)


class LinkBroken(Exception):
    """The connection failed (reset, timeout, TLS error); the message says how."""


def _flat(part: bytes | bytearray | memoryview) -> memoryview:
    view = memoryview(part)
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")


class TransportIO(abc.ABC):
    """What the channel needs of a connection: fill, write, half-close, close."""

    @abc.abstractmethod
    async def recv_into(self, view: memoryview, timeout: float | None) -> int:
        """Read at most ``len(view)`` bytes into ``view``; 0 at end of stream.

        Raises:
            LinkBroken: The connection failed, or nothing came for ``timeout`` s.
        """

    @abc.abstractmethod
    async def send_parts(self, parts: Sequence[bytes | memoryview], timeout: float) -> None:
        """Write every part, in order; each wait for room is bounded by ``timeout``.

        Raises:
            LinkBroken: The connection failed or made no progress in ``timeout`` s.
        """

    @abc.abstractmethod
    async def send_eof(self) -> None:
        """Tell the peer nothing more will be written (where the transport can)."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Close at once (idempotent)."""

    @abc.abstractmethod
    def peer(self) -> str:
        """The peer's address as ``host:port``."""


def format_address(sockaddr: object) -> str:
    """``host:port`` (``[host]:port`` for IPv6) of a socket address."""
    if isinstance(sockaddr, tuple) and len(sockaddr) >= 2:
        host, port = str(sockaddr[0]), sockaddr[1]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return str(sockaddr)


class SocketIO(TransportIO):
    """A non-blocking stream socket driven with anyio's readiness waits."""

    __slots__ = ("_closed", "_peer", "sock")

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock = sock
        self._closed = False
        try:
            self._peer = format_address(sock.getpeername())
        except OSError:
            self._peer = "?"

    def peer(self) -> str:
        return self._peer

    async def recv_into(self, view: memoryview, timeout: float | None) -> int:
        sock = self.sock
        while True:
            try:
                return sock.recv_into(view)
            except (BlockingIOError, InterruptedError):
                pass
            except OSError as exc:
                raise LinkBroken(_os_reason(exc)) from None
            await self._wait(anyio.wait_readable, timeout, "read")

    async def send_parts(self, parts: Sequence[bytes | memoryview], timeout: float) -> None:
        views = deque(v for v in map(_flat, parts) if v.nbytes)
        sock = self.sock
        while views:
            try:
                sent = (
                    sock.sendmsg(list(views)[:_IOV_MAX]) if len(views) > 1 else sock.send(views[0])
                )
            except (BlockingIOError, InterruptedError):
                await self._wait(anyio.wait_writable, timeout, "write")
                continue
            except OSError as exc:
                raise LinkBroken(_os_reason(exc)) from None
            while sent:
                first = views[0]
                if sent >= first.nbytes:
                    sent -= first.nbytes
                    views.popleft()
                else:
                    views[0] = first[sent:]
                    sent = 0

    async def _wait(self, waiter: object, timeout: float | None, what: str) -> None:
        assert callable(waiter)
        try:
            with anyio.fail_after(timeout):
                await waiter(self.sock)
        except TimeoutError:
            raise LinkBroken(f"no {what} progress for {timeout:g} s") from None
        except anyio.ClosedResourceError:
            raise LinkBroken("socket closed locally") from None

    async def send_eof(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    async def aclose(self) -> None:
        self.close()

    def close(self) -> None:
        """Close at once, waking any task waiting on the socket."""
        if not self._closed:
            self._closed = True
            anyio.notify_closing(self.sock)
            self.sock.close()


class StreamIO(TransportIO):
    """Any anyio byte stream (TLS): copies through the stream's own buffers."""

    __slots__ = ("_closed", "_peer", "stream")

    def __init__(self, stream: anyio.abc.ByteStream, peer: str) -> None:
        self.stream = stream
        self._peer = peer
        self._closed = False

    def peer(self) -> str:
        return self._peer

    async def recv_into(self, view: memoryview, timeout: float | None) -> int:
        try:
            with anyio.fail_after(timeout):
                chunk = await self.stream.receive(view.nbytes)
        except anyio.EndOfStream:
            return 0
        except TimeoutError:
            raise LinkBroken(f"no read progress for {timeout:g} s") from None
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError, ssl.SSLError) as exc:
            raise LinkBroken(_stream_reason(exc)) from None
        n = len(chunk)
        view[:n] = chunk
        return n

    async def send_parts(self, parts: Sequence[bytes | memoryview], timeout: float) -> None:
        try:
            for part in parts:
                view = _flat(part)
                for start in range(0, view.nbytes, _TLS_SLICE):
                    with anyio.fail_after(timeout):
                        await self.stream.send(view[start : start + _TLS_SLICE])  # type: ignore[arg-type]
        except TimeoutError:
            raise LinkBroken(f"no write progress for {timeout:g} s") from None
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError, ssl.SSLError) as exc:
            raise LinkBroken(_stream_reason(exc)) from None

    async def send_eof(self) -> None:
        pass  # TLS has no half-close; the close notice says enough

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await anyio.aclose_forcefully(self.stream)


def _os_reason(exc: OSError) -> str:
    if exc.errno in (errno.ECONNRESET, errno.EPIPE):
        return "connection reset by peer"
    return f"socket error: {exc.strerror or exc}"


def _stream_reason(exc: BaseException) -> str:
    cause = exc.__cause__ or exc.__context__
    detail = cause if cause is not None else exc
    return f"connection broken: {type(detail).__name__}: {detail}".rstrip(": ")
