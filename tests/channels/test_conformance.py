"""One conformance suite for every Channel transport (in-memory and TCP).

A transport fixture gives a :class:`Kind`: how to make the transport, in
which mode to run and whether it applies backpressure. Each test runs in its
own loop: the in-memory transport in virtual time (deterministically), TCP in
real time on loopback. Waits poll a condition rather than sleeping a fixed
time, so both modes run fast.

Delivery is pushed (``Channel.start``), so trio's "receive" cases become:
what ``on_message``/``on_close`` see, and what a close does to messages in
flight. There is no scripted transport: the TCP cases that need a peer
misbehaving at the byte level use a raw socket (``conformance_helpers``,
``test_tcp_hostile``).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

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
from simkit.codec import FrameTooLarge
from simkit.messages import (
    Drop,
    Join,
    Message,
    Ping,
    Send,
    body_size,
    encode_action,
    encode_action_bytes,
)
from simkit.runtime import Mode, run

from .conformance_helpers import Inbox, gated_peer
from .tcp_helpers import wait_until


@dataclass(frozen=True, slots=True)
class ConformanceHello(Message):
    n: int


@dataclass(frozen=True, slots=True)
class ConformanceBlob(Message):
    sender: int
    seq: int
    data: bytes


@dataclass(frozen=True)
class Kind:
    make: Callable[..., Transport]
    mode: Mode
    backpressure: bool  # ``await send`` waits for a slow receiver


def _tcp(**options: Any) -> Transport:
    return TcpTransport(close_timeout=0.5, **options)


TransportFactory = Kind
TRANSPORTS: dict[str, Kind] = {
    "memory": Kind(MemoryNetwork, "virtual", backpressure=False),
    "tcp": Kind(_tcp, "real", backpressure=True),
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


def run_with(kind: Kind, body: Callable[[Transport], Awaitable[None]], **options: Any) -> None:
    async def main() -> None:
        transport = kind.make(**options)
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


# ----------------------------------------------------------------------------- breadth


def blob(sender: int, seq: int, size: int = 0) -> Send:
    return Send("ConformanceBlob", ConformanceBlob(sender, seq, bytes(size)))


def blobs(inbox: Inbox) -> list[ConformanceBlob]:
    out = []
    for msg in inbox.messages:
        if isinstance(msg, Send) and msg.type == "ConformanceBlob":
            payload = msg.payload.decode()  # type: ignore[union-attr]
            assert isinstance(payload, ConformanceBlob)
            out.append(payload)
    return out


def test_round_trips_both_ways(make_transport: TransportFactory) -> None:
    async def body(t: Transport) -> None:
        client, server, cin, sin = await pair(t)
        for i in range(5):
            client.send_nowait(blob(0, i, 10))
            assert await client.send(blob(0, 100 + i)) > 0
        await wait_until(lambda: len(sin.messages) == 10)
        for m in sin.messages[::-1]:  # answer in reverse, with both send flavours
            seq = m.payload.decode().seq  # type: ignore[union-attr]
            await server.send(blob(1, seq))
        server.send_nowait(Ping(9))
        await wait_until(lambda: len(cin.messages) == 11)
        assert [b.seq for b in blobs(sin)] == [i + k for i in range(5) for k in (0, 100)]
        assert [b.seq for b in blobs(cin)] == [b.seq for b in blobs(sin)][::-1]
        assert cin.messages[-1] == Ping(9)
        assert cin.closed == sin.closed == []

    run_with(make_transport, body)


def test_every_send_flavour_names_the_closed_end(make_transport: TransportFactory) -> None:
    """Sent on an end closed here: ChannelClosed; on an end the peer closed: BrokenChannel."""

    async def body(t: Transport) -> None:
        client, server, cin, _sin = await pair(t)
        raw = encode_action_bytes(Ping(1))
        client.close("here")
        server_closed = wait_until(lambda: server.closed)
        await server_closed
        for end, error in ((client, ChannelClosed), (server, BrokenChannel)):
            with pytest.raises(error):
                end.send_nowait(Ping(1))
            with pytest.raises(error):
                await end.send(Ping(1))
            with pytest.raises(error):
                end.send_encoded(raw, "Ping")
            with pytest.raises(error):
                await end.send_body(raw, "Ping")
        await settle()
        assert cin.closed == []  # a close made here is not reported here

    run_with(make_transport, body)


def test_peer_close_is_reported_once_after_its_data(make_transport: TransportFactory) -> None:
    async def body(t: Transport) -> None:
        client, server, cin, _sin = await pair(t)
        for i in range(3):
            await server.send(blob(0, i, 1000))
        server.close("leaving")
        server.close("again")
        await wait_until(lambda: cin.closed)
        await settle()
        assert [b.seq for b in blobs(cin)] == [0, 1, 2]
        assert cin.closed == ["leaving"]
        assert client.closed

    run_with(make_transport, body)


def test_close_while_messages_are_in_flight_to_this_end(make_transport: TransportFactory) -> None:
    """Closing drops what has not been pushed yet; ``on_close`` stays silent here."""

    async def body(t: Transport) -> None:
        client, server, cin, sin = await pair(t)
        for i in range(3):
            server.send_nowait(blob(0, i))
        client.close("bye")
        await wait_until(lambda: sin.closed)
        await settle()
        assert cin.messages == []
        assert cin.closed == []
        assert sin.closed == ["bye"]
        with pytest.raises(BrokenChannel):
            server.send_nowait(Ping(1))

    run_with(make_transport, body)


def test_cancelled_send_is_whole_or_nothing(make_transport: TransportFactory) -> None:
    """A send in a cancelled scope sends its message whole or not at all; the channel goes on."""

    async def body(t: Transport) -> None:
        client, _server, _cin, sin = await pair(t)
        cancelled = 0
        for i in range(10):
            with anyio.CancelScope() as scope:
                scope.cancel()
                await client.send(blob(0, i, 100))
            cancelled += scope.cancelled_caught
        await client.send(blob(0, 99))
        await wait_until(lambda: blobs(sin) and blobs(sin)[-1].seq == 99)
        seqs = [b.seq for b in blobs(sin)]
        assert seqs == sorted(set(seqs))
        assert seqs[-1] == 99
        assert len(seqs) - 1 == 10 - cancelled or make_transport.backpressure
        assert not client.closed

    run_with(make_transport, body)


LIMIT = 1 << 21  # 2 MiB: TCP's zero-copy path (bodies from 1 MiB) is in range


def blob_encoding_to(size: int) -> Send:
    """A blob whose body is exactly ``size`` bytes."""
    n = size - 256
    n += size - body_size(encode_action(blob(0, 0, n), 2 * size))
    msg = blob(0, 0, n)
    assert body_size(encode_action(msg, 2 * size)) == size
    return msg


def test_frames_at_the_limit_pass_and_over_it_are_refused(
    make_transport: TransportFactory,
) -> None:
    async def body(t: Transport) -> None:
        client, _server, cin, sin = await pair(t)
        client.send_nowait(Ping(1))  # a TCP peer's first frame must be small
        at_limit = blob_encoding_to(LIMIT)
        assert await client.send(at_limit) == LIMIT
        over = blob_encoding_to(LIMIT + 1)
        raw = b"".join(encode_action(over, 2 * LIMIT))
        with pytest.raises(FrameTooLarge, match="above the limit"):
            client.send_nowait(over)
        with pytest.raises(FrameTooLarge, match="above the limit"):
            await client.send(over)
        with pytest.raises(FrameTooLarge, match="above the limit"):
            client.send_encoded(raw, "ConformanceBlob")
        with pytest.raises(FrameTooLarge, match="above the limit"):
            await client.send_body(raw, "ConformanceBlob")
        client.send_nowait(Ping(2))
        await wait_until(lambda: len(sin.messages) == 3)
        await settle()
        assert sin.messages[0] == Ping(1)
        assert sin.messages[2] == Ping(2)
        assert len(blobs(sin)[0].data) == len(at_limit.payload.data)  # type: ignore[union-attr]
        assert not client.closed
        assert sin.closed == cin.closed == []

    run_with(make_transport, body, max_body=LIMIT)


def test_concurrent_senders_keep_their_order(make_transport: TransportFactory) -> None:
    """Eight tasks share one channel (TCP: a 16 KiB send buffer makes them wait)."""
    senders, each = 8, 40

    async def body(t: Transport) -> None:
        client, _server, _cin, sin = await pair(t)

        async def sender(k: int) -> None:
            for i in range(each):
                await client.send(blob(k, i, 1500))
                if i % 7 == k % 7:
                    client.send_nowait(blob(k, -i))

        async with anyio.create_task_group() as tg:
            for k in range(senders):
                tg.start_soon(sender, k)
        extra = sum(1 for k in range(senders) for i in range(each) if i % 7 == k % 7)
        await wait_until(lambda: len(sin.messages) == senders * each + extra)
        got = blobs(sin)
        for k in range(senders):
            mine = [abs(b.seq) for b in got if b.sender == k]
            assert mine == sorted(mine)
            assert sorted({b.seq for b in got if b.sender == k and b.seq >= 0}) == list(range(each))
        if make_transport.backpressure:  # the senders really interleaved
            assert len({b.sender for b in got[: senders * 2]}) > 1

    run_with(
        make_transport, body, **({"send_buffer": 16 * 1024} if make_transport.backpressure else {})
    )


def test_slow_receiver_blocks_send_not_send_nowait(make_transport: TransportFactory) -> None:
    """TCP: ``await send`` waits for a receiver that does not read; cancelled, it sent nothing.

    The in-memory transport applies no backpressure: its sends never wait.
    """

    async def body(t: Transport) -> None:
        if not make_transport.backpressure:
            client, _server, _cin, _sin = await pair(t)
            start = anyio.current_time()
            for i in range(200):
                await client.send(blob(0, i, 60_000))
            assert anyio.current_time() == start
            return
        assert isinstance(t, TcpTransport)
        async with gated_peer(t.max_body) as (peer, address):
            client = await t.connect("client", address)
            client.start(Inbox().on_message, Inbox().on_close)
            sent = 0
            with anyio.move_on_after(0.3) as scope:
                for i in range(2000):  # 120 MB if nothing pushed back
                    await client.send(blob(0, i, 60_000))
                    sent += 1
            assert scope.cancelled_caught
            assert 0 < sent < 400
            client.send_nowait(blob(0, -1))  # never waits, even now
            assert not client.closed
            peer.open()
            await client.send(blob(0, 10_000))
            await wait_until(
                lambda: peer.received and peer.received[-1].payload.decode().seq == 10_000
            )  # type: ignore[union-attr]
            seqs = [m.payload.decode().seq for m in peer.received]  # type: ignore[union-attr]
            # The cancelled send sent nothing (waiting for room) or all (cancelled just after).
            assert len(seqs) - 2 in (sent, sent + 1)
            assert seqs == [*range(len(seqs) - 2), -1, 10_000]

    run_with(
        make_transport, body, **({"send_buffer": 256 * 1024} if make_transport.backpressure else {})
    )


def test_cancelled_large_send_is_still_written_whole(make_transport: TransportFactory) -> None:
    """TCP: a 24 MiB ``send`` cancelled after queuing (zero-copy) still reaches the peer whole."""
    if not make_transport.backpressure:
        pytest.skip("in-memory sends never wait (see test_cancelled_send_is_whole_or_nothing)")

    async def body(t: Transport) -> None:
        assert isinstance(t, TcpTransport)
        async with gated_peer(t.max_body) as (peer, address):
            client = await t.connect("client", address)
            client.start(Inbox().on_message, Inbox().on_close)
            client.send_nowait(Ping(1))  # the first frame must be small
            await wait_until(lambda: client.queued == 0)  # so the big one waits for no room
            big_blob = blob(0, 1, 3 << 23)
            with anyio.move_on_after(0.1) as scope:
                await client.send(big_blob)
            assert scope.cancelled_caught  # waiting for the write, not for room
            assert client.queued > 0  # the frame stays queued
            client.send_nowait(blob(0, 2))  # never waits, even behind 24 MiB
            peer.open()
            await wait_until(lambda: len(peer.received) == 3)
            big = peer.received[1].payload.decode()  # type: ignore[union-attr]
            assert (big.seq, len(big.data)) == (1, 3 << 23)
            assert peer.received[2].payload.decode().seq == 2  # type: ignore[union-attr]
            assert not client.closed

    run_with(make_transport, body)
