"""One conformance suite for every Channel transport (in-memory and TCP).

A transport fixture gives a :class:`Kind`: how to make the transport and in
which mode to run. Each test runs in its own loop: the in-memory transport in
virtual time (deterministically), TCP in real time on loopback. Waits poll a
condition rather than sleeping a fixed time, so both modes run fast.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio
import pytest

from simkit.channels import (
    BrokenChannel,
    Channel,
    ChannelClosed,
    ConnectRefused,
    MemoryNetwork,
    TcpTransport,
    Transport,
)
from simkit.messages import ActionMessage, Drop, Join, Message, Ping, Send
from simkit.runtime import Mode, run

from .tcp_helpers import wait_until


@dataclass(frozen=True, slots=True)
class ConformanceHello(Message):
    n: int


class Inbox:
    """Collects what a channel pushes."""

    def __init__(self) -> None:
        self.messages: list[ActionMessage] = []
        self.closed: list[str] = []

    def on_message(self, msg: ActionMessage) -> None:
        self.messages.append(msg)

    def on_close(self, reason: str) -> None:
        self.closed.append(reason)


@dataclass(frozen=True)
class Kind:
    make: Callable[[], Transport]
    mode: Mode


TransportFactory = Kind
TRANSPORTS: dict[str, Kind] = {
    "memory": Kind(MemoryNetwork, "virtual"),
    "tcp": Kind(lambda: TcpTransport(close_timeout=0.5), "real"),
}


@pytest.fixture(params=sorted(TRANSPORTS))
def make_transport(request: pytest.FixtureRequest) -> Kind:
    return TRANSPORTS[request.param]


async def settle() -> None:
    """Give stray deliveries a chance to show up (before asserting none did)."""
    await anyio.sleep(0.05)


async def pair(transport: Transport) -> tuple[Channel, Channel, Inbox, Inbox]:
    """A connected (client, server) channel pair with inboxes started."""
    accepted: list[Channel] = []
    listener = transport.listen("server", "server")
    listener.start(accepted.append)
    client = await transport.connect("client", "server")
    await wait_until(lambda: accepted)
    (server,) = accepted
    cin, sin = Inbox(), Inbox()
    client.start(cin.on_message, cin.on_close)
    server.start(sin.on_message, sin.on_close)
    return client, server, cin, sin


def run_with(kind: Kind, body: Callable[[Transport], Awaitable[None]]) -> None:
    async def main() -> None:
        transport = kind.make()
        try:
            await body(transport)
        finally:
            aclose = getattr(transport, "aclose", None)
            if aclose is not None and inspect.iscoroutinefunction(aclose):
                await aclose()

    run(main, mode=kind.mode)


def test_messages_arrive_in_order_and_decoded(make_transport: TransportFactory) -> None:
    async def body(t: Transport) -> None:
        client, _server, _cin, sin = await pair(t)
        for i in range(20):
            client.send_nowait(Send("ConformanceHello", ConformanceHello(i)))
        client.send_nowait(Ping(7))
        await wait_until(lambda: len(sin.messages) == 21)
        sends = [m for m in sin.messages if isinstance(m, Send)]
        assert [m.payload.decode() for m in sends] == [ConformanceHello(i) for i in range(20)]  # type: ignore[union-attr]
        assert sin.messages[-1] == Ping(7)

    run_with(make_transport, body)


def test_send_reports_the_encoded_size(make_transport: TransportFactory) -> None:
    async def body(t: Transport) -> None:
        client, _server, _cin, _sin = await pair(t)
        assert client.send_nowait(Join("c1", "1.0", "tok")) > 4

    run_with(make_transport, body)


def test_local_close_then_send_raises_channel_closed(make_transport: TransportFactory) -> None:
    async def body(t: Transport) -> None:
        client, _server, cin, sin = await pair(t)
        client.send_nowait(Drop("bye"))
        client.close("done")
        client.close("twice is fine")
        with pytest.raises(ChannelClosed):
            client.send_nowait(Ping(1))
        await wait_until(lambda: sin.closed)
        await settle()
        assert sin.messages == [Drop("bye")]  # data sent before the close arrives first
        assert sin.closed == ["done"]
        assert cin.closed == []

    run_with(make_transport, body)


def test_remote_close_then_send_raises_broken_channel(make_transport: TransportFactory) -> None:
    async def body(t: Transport) -> None:
        client, server, cin, _sin = await pair(t)
        server.close("server leaves")
        await wait_until(lambda: cin.closed)
        assert cin.closed == ["server leaves"]
        assert client.closed
        with pytest.raises(BrokenChannel):
            client.send_nowait(Ping(1))

    run_with(make_transport, body)


def test_messages_before_start_are_kept(make_transport: TransportFactory) -> None:
    async def body(t: Transport) -> None:
        accepted: list[Channel] = []
        t.listen("server", "server").start(accepted.append)
        client = await t.connect("client", "server")
        client.send_nowait(Ping(1))
        client.send_nowait(Ping(2))
        await wait_until(lambda: accepted)
        await settle()
        inbox = Inbox()
        accepted[0].start(inbox.on_message, inbox.on_close)
        assert inbox.messages == [Ping(1), Ping(2)]

    run_with(make_transport, body)


def test_connect_to_nothing_is_refused(make_transport: TransportFactory) -> None:
    async def body(t: Transport) -> None:
        with pytest.raises(ConnectRefused):
            await t.connect("client", "nobody")

    run_with(make_transport, body)


def test_closed_listener_accepts_no_more(make_transport: TransportFactory) -> None:
    async def body(t: Transport) -> None:
        listener = t.listen("server", "server")
        listener.start(lambda channel: None)
        listener.close()
        listener.close()
        with pytest.raises(ConnectRefused):
            await t.connect("client", "server")

    run_with(make_transport, body)
