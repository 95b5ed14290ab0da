"""Helpers of the channel conformance suite: inboxes, a gated raw TCP peer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from simkit.channels._framing import PREFIX
from simkit.messages import ActionMessage, decode_action


class Inbox:
    """Collects what a channel pushes."""

    def __init__(self) -> None:
        self.messages: list[ActionMessage] = []
        self.closed: list[str] = []

    def on_message(self, msg: ActionMessage) -> None:
        self.messages.append(msg)

    def on_close(self, reason: str) -> None:
        self.closed.append(reason)


class GatedPeer:
    """A raw TCP peer that reads nothing until :meth:`open`, then reads every frame.

    It stands for a slow receiver: while shut, the sender's socket buffers
    and send queue fill. Each frame it reads must decode (a partial or
    corrupt frame fails the test), so it checks that a cancelled send left
    nothing half-written on the wire.
    """

    def __init__(self, max_body: int) -> None:
        self.max_body = max_body
        self.received: list[ActionMessage] = []
        self.closed = False
        self._gate = asyncio.Event()

    def open(self) -> None:
        self._gate.set()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._gate.wait()
        try:
            while True:
                (length,) = PREFIX.unpack(await reader.readexactly(PREFIX.size))
                if length == 0:  # the close notice
                    self.closed = True
                    return
                body = await reader.readexactly(length)
                self.received.append(decode_action(body, self.max_body))
        except asyncio.IncompleteReadError:
            self.closed = True
        finally:
            writer.close()


@asynccontextmanager
async def gated_peer(max_body: int) -> AsyncIterator[tuple[GatedPeer, str]]:
    """A :class:`GatedPeer` listening on loopback, and its ``host:port``."""
    peer = GatedPeer(max_body)
    server = await asyncio.start_server(peer.handle, "127.0.0.1", 0)
    try:
        yield peer, f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        peer.open()
        server.close()
