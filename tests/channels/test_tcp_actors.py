"""The same actors over TCP on loopback, in real time: joins, rejects, heartbeats, restarts."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import anyio
import pytest

from simkit.actors import Actor, Context, Rejected
from simkit.channels import RealTimeOnly, TcpTransport
from simkit.faults import Crash, FaultSchedule, Restart
from simkit.heartbeat import HeartbeatConfig
from simkit.messages import Accept, ActionMessage, Join, Message, Reject
from simkit.simulation import Simulation
from simkit.trace import Trace

from .tcp_helpers import Echo, Pinger, frame, wait_until

HB = HeartbeatConfig(interval=0.2, misses=2)  # silent peers are gone within 0.6 s


def tcp_sim(**kwargs: object) -> Simulation:
    return Simulation(seed=1, transport=TcpTransport(), heartbeat=HB, **kwargs)  # type: ignore[arg-type]


def events(trace: Trace, kind: str, src: str = "server") -> list[float]:
    return [e.t for e in trace.events if e.kind == kind and e.src == src]


def test_request_reply_over_tcp() -> None:
    sim = tcp_sim()
    sim.add(Echo())
    for name in ("c1", "c2", "c3"):
        sim.add(Pinger(name, 5, stop=name == "c3"), start_at=0.05, daemon=name != "c3")
    result = sim.run(mode="real")
    assert not result.errors
    for name in ("c1", "c2", "c3"):
        pinger = result.actors[name]
        assert isinstance(pinger, Pinger)
        assert pinger.acks == list(range(5))


def test_virtual_mode_is_refused_with_a_clear_error() -> None:
    sim = tcp_sim()
    sim.add(Echo())
    with pytest.raises(RealTimeOnly, match="mode='real'"):
        sim.run()


def test_wrong_token_is_rejected() -> None:
    outcome: list[str] = []

    class BadClient(Actor):
        name = "bad"

        async def run(self, ctx: Context) -> None:
            try:
                await ctx.connect("server", token="wrong")
            except Rejected as exc:
                outcome.append(exc.flag)

    sim = tcp_sim()
    sim.add(Echo(token="s3cret"), daemon=True)
    sim.add(BadClient(), start_at=0.05)
    sim.run(mode="real")
    assert outcome == ["auth"]


def test_version_mismatch_is_rejected_then_closed() -> None:
    transport = TcpTransport()
    got: list[ActionMessage] = []
    closed: list[str] = []

    class OldClient(Actor):
        name = "old"

        async def run(self, ctx: Context) -> None:
            channel = await transport.connect("old", "server")
            channel.start(got.append, closed.append)
            channel.send_nowait(Join("old", "2.0", ""))
            await wait_until(lambda: closed)

    sim = Simulation(seed=1, transport=transport, heartbeat=HB)
    sim.add(Echo(), daemon=True)
    sim.add(OldClient(), start_at=0.05)
    sim.run(mode="real")
    assert len(got) == 1
    assert isinstance(got[0], Reject)
    assert got[0].flag == "version"
    assert closed == ["rejected: version"]


def test_silent_crash_is_seen_by_heartbeat_within_interval_times_misses() -> None:
    faults = FaultSchedule((Crash(at=0.5, actor="c1", mode="silent"),))
    sim = tcp_sim(faults=faults)
    sim.add(Echo(), daemon=True)
    sim.add(Pinger("c1", 1000), start_at=0.05, daemon=True)
    result = sim.run(mode="real", until=2.0)
    (crash_t,) = [e.t for e in result.trace.events if e.kind == "crash"]
    (down_t,) = events(result.trace, "peer_down")
    assert HB.interval * (HB.misses - 1) - 0.05 <= down_t - crash_t <= HB.silence_limit + 0.15
    assert "heartbeat" in next(e.info for e in result.trace.events if e.kind == "peer_down")


def test_loud_crash_is_seen_at_once() -> None:
    faults = FaultSchedule((Crash(at=0.3, actor="c1", mode="loud"),))
    sim = tcp_sim(faults=faults)
    sim.add(Echo(), daemon=True)
    sim.add(Pinger("c1", 1000), start_at=0.05, daemon=True)
    result = sim.run(mode="real", until=1.0)
    (crash_t,) = [e.t for e in result.trace.events if e.kind == "crash"]
    (down_t,) = events(result.trace, "peer_down")
    assert down_t - crash_t < 0.1


def test_crashed_client_rejoins_under_its_name() -> None:
    faults = FaultSchedule((Crash(at=0.3, actor="c1", mode="loud"), Restart(at=0.5, actor="c1")))
    sim = tcp_sim(faults=faults)
    sim.add(Echo())
    sim.add(lambda: Pinger("c1", 5, stop=True), name="c1", start_at=0.05)
    result = sim.run(mode="real")
    pinger = result.actors["c1"]
    assert isinstance(pinger, Pinger)
    assert pinger.acks == list(range(5))  # the restarted incarnation's
    assert len(events(result.trace, "peer_up")) == 2


def test_silently_crashed_client_rejoins_and_replaces_its_old_connection() -> None:
    faults = FaultSchedule((Crash(at=0.3, actor="c1", mode="silent"), Restart(at=0.35, actor="c1")))
    sim = tcp_sim(faults=faults)
    sim.add(Echo())
    sim.add(lambda: Pinger("c1", 5, stop=True), name="c1", start_at=0.05)
    result = sim.run(mode="real")
    assert not result.errors
    downs = [e for e in result.trace.events if e.kind == "peer_down" and e.src == "server"]
    assert any("replaced" in e.info for e in downs)


def test_join_answer_is_accept_on_the_wire() -> None:
    transport = TcpTransport()
    got: list[ActionMessage] = []

    class RawClient(Actor):
        name = "raw"

        async def run(self, ctx: Context) -> None:
            channel = await transport.connect("raw", "server")
            channel.start(got.append, lambda reason: None)
            channel.send_nowait(Join("raw", "1.7", "t"))
            await wait_until(lambda: got)
            channel.close("done")

    sim = Simulation(seed=1, transport=transport, heartbeat=HB)
    sim.add(Echo(token="t"), daemon=True)
    sim.add(RawClient(), start_at=0.05)
    sim.run(mode="real")
    assert got[:1] == [Accept()]


@dataclass(frozen=True, slots=True)
class BackpressureBlob(Message):
    data: bytes


def test_tcp_backpressure_reaches_a_sender() -> None:
    """A peer that stops reading makes ``await ctx.send`` wait (the queue stays bounded)."""
    blob = BackpressureBlob(bytes(64 * 1024))
    transport = TcpTransport(send_buffer=256 * 1024)
    outcome: dict[str, object] = {}

    class Sender(Actor):
        name = "sender"

        async def run(self, ctx: Context) -> None:
            done = asyncio.Event()

            async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                await reader.read(4096)  # the Join, then never another byte
                writer.write(frame(Accept()))
                await writer.drain()
                await done.wait()
                writer.transport.abort()

            server = await asyncio.start_server(mute, "127.0.0.1", 0)
            transport.register("mute", f"127.0.0.1:{server.sockets[0].getsockname()[1]}")
            await ctx.connect("mute")
            sent = 0
            with anyio.move_on_after(1.0) as scope:
                for _ in range(2000):  # 125 MiB if nothing pushed back
                    await ctx.send("mute", blob)
                    sent += 1
            outcome.update(sent=sent, stopped=scope.cancelled_caught)
            done.set()
            server.close()
            await server.wait_closed()
            await asyncio.sleep(0.05)  # the handler aborts its connection

    sim = Simulation(seed=1, transport=transport, heartbeat=HeartbeatConfig(enabled=False))
    sim.add(Sender())
    result = sim.run(mode="real")
    assert result.errors == []
    assert outcome["stopped"] is True  # the sender was still waiting for room
    sent = outcome["sent"]
    assert isinstance(sent, int)
    assert 0 < sent < 400  # socket buffers and 256 KiB of queue, not 2000 x 64 KiB
