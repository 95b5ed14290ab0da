"""TCP framing: a 4-byte big-endian length, then one body; length 0 is a close notice.

::

    frame        := u32be length | body            (0 < length <= limit)
    close notice := u32be 0 | u16be n | n bytes    (UTF-8 reason, then EOF)

A valid body is at least 5 bytes long, so a length of 0 is free to mark the
close notice. :class:`FrameReader` cuts frames out of a byte stream with one
read buffer: small bodies are copied out of it, a large body gets its own
buffer of exactly its length, allocated only after the length passed the
limit, and filled in place by ``recv_into``.
"""

from __future__ import annotations

import struct
from typing import Final

import numpy as np

from simkit.channels._tcpio import TransportIO

__all__ = [
    "PREFIX",
    "CloseNotice",
    "EndOfStream",
    "FrameReader",
    "FrameViolation",
    "close_notice",
]

PREFIX: Final = struct.Struct(">I")
_REASON_LEN: Final = struct.Struct(">H")
MAX_REASON: Final = 1024  # bytes of reason we send; any u16 length is accepted
_BUFFER: Final = 256 * 1024  # the read buffer (asyncio's own read size)
_OWN_BUFFER: Final = 64 * 1024  # bodies from this size up are read into their own buffer


class CloseNotice:
    """The peer announced its close, with a reason."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


class EndOfStream(Exception):
    """The peer closed; ``inside`` says how many bytes of a frame it left unsent."""

    def __init__(self, got: int, expected: int) -> None:
        super().__init__(
            f"connection closed inside a frame ({got} of {expected} bytes)"
            if got
            else "connection closed by peer without notice"
        )
        self.truncated = got > 0


class FrameViolation(Exception):
    """The peer broke the framing rules (the message says which)."""


def close_notice(reason: str) -> bytes:
    """The bytes of a close notice carrying ``reason`` (cut to 1024 bytes of UTF-8)."""
    raw = reason.encode("utf-8", "replace")[:MAX_REASON].decode("utf-8", "ignore").encode()
    return PREFIX.pack(0) + _REASON_LEN.pack(len(raw)) + raw


class FrameReader:
    """Reads frames from a :class:`TransportIO`.

    Args:
        io: Where bytes come from.
        read_timeout: Seconds a peer may stall inside a frame (``None``: forever).
            Silence *between* frames is the heartbeats' business.
    """

    __slots__ = ("_buf", "_end", "_io", "_start", "_timeout", "_view")

    def __init__(self, io: TransportIO, read_timeout: float | None) -> None:
        self._io = io
        self._timeout = read_timeout
        self._buf = bytearray(_BUFFER)
        self._view = memoryview(self._buf)
        self._start = 0
        self._end = 0

    async def next(self, limit: int) -> bytes | memoryview | CloseNotice:
        """The next body (or close notice).

        Args:
            limit: The largest body accepted, checked before anything is allocated.

        Raises:
            EndOfStream: The peer closed (between frames, or inside one).
            FrameViolation: A length above ``limit``.
            LinkBroken: The connection failed or stalled inside a frame.
        """
        await self._fill(4, 0, 4)
        (length,) = PREFIX.unpack_from(self._buf, self._start)
        self._start += 4
        if length == 0:
            return await self._notice()
        if length > limit:
            raise FrameViolation(f"frame of {length} bytes is above the limit of {limit}")
        if self._end - self._start >= length or length < _OWN_BUFFER:
            await self._fill(length, 4, 4 + length)
            start = self._start
            self._start += length
            return bytes(self._view[start : start + length])
        return await self._read_large(length)

    async def _notice(self) -> CloseNotice:
        await self._fill(2, 4, 6)
        (n,) = _REASON_LEN.unpack_from(self._buf, self._start)
        self._start += 2
        await self._fill(n, 6, 6 + n)
        raw = bytes(self._view[self._start : self._start + n])
        self._start += n
        return CloseNotice(raw.decode("utf-8", "replace"))

    async def _read_large(self, length: int) -> memoryview:
        # np.empty leaves the pages untouched: memory is committed as bytes arrive.
        body = memoryview(np.empty(length, dtype=np.uint8).data).cast("B")
        have = self._end - self._start
        body[:have] = self._view[self._start : self._end]
        self._start = self._end = 0
        while have < length:
            n = await self._io.recv_into(body[have:], self._timeout)
            if n == 0:
                raise EndOfStream(4 + have, 4 + length)
            have += n
        return body

    async def _fill(self, need: int, done: int, expected: int) -> None:
        """Make ``need`` bytes available from ``_start`` (``done`` of the frame are read)."""
        while self._end - self._start < need:
            if self._start == self._end:
                self._start = self._end = 0
            elif self._start + need > _BUFFER:
                avail = self._end - self._start
                self._buf[:avail] = self._view[self._start : self._end]
                self._start, self._end = 0, avail
            inside = done or self._end > self._start
            n = await self._io.recv_into(self._view[self._end :], self._timeout if inside else None)
            if n == 0:
                raise EndOfStream(done + self._end - self._start, expected)
            self._end += n
