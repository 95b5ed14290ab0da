"""TcpTransport options the runner relies on: a shared token, trace events, listening_at."""

from __future__ import annotations

from simkit.actors import Actor, Context, Rejected
from simkit.channels import TcpTransport
from simkit.heartbeat import HeartbeatConfig
from simkit.messages import Reject
from simkit.runtime import current_run
from simkit.simulation import Simulation

from .tcp_helpers import Echo, Pinger, attack, join_frame, live_server

HB = HeartbeatConfig(interval=0.2, misses=2)


def sim_on(transport: TcpTransport) -> Simulation:
    return Simulation(seed=1, transport=transport, heartbeat=HB)


def test_transport_token_is_carried_by_joins_the_actors_left_empty() -> None:
    sim = sim_on(TcpTransport(token="s3cret"))
    sim.add(Echo())  # listens without a token of its own
    sim.add(Pinger("c1", 2, stop=True), start_at=0.05)  # joins without one
    result = sim.run(mode="real")
    assert not result.errors
    pinger = result.actors["c1"]
    assert isinstance(pinger, Pinger)
    assert pinger.acks == [0, 1]


def test_wrong_transport_token_is_rejected_before_the_actor_sees_the_join() -> None:
    outcome: list[str] = []

    class Intruder(Actor):
        name = "intruder"

        async def run(self, ctx: Context) -> None:
            try:
                await ctx.connect("server", token="guess")
            except Rejected as exc:
                outcome.append(f"{exc.flag}: {exc.detail}")

    sim = sim_on(TcpTransport(token="s3cret"))
    sim.add(Echo(), daemon=True)
    sim.add(Intruder(), start_at=0.05)
    result = sim.run(mode="real")
    assert outcome == ["auth: wrong token"]
    rejects = [e for e in result.trace.events if e.kind == "reject"]
    assert [(e.src, e.dst, e.info) for e in rejects] == [
        ("server", "intruder", "auth: wrong token")
    ]
    assert not [e for e in result.trace.events if e.kind == "peer_up"]


def test_transport_token_refusal_on_the_wire_is_the_actors_own() -> None:
    with live_server("s3cret", token="s3cret") as server:
        reply = attack(server.address, join_frame("x", "wrong"))
        assert reply.messages == [Reject("auth", "wrong token")]
        assert reply.notice == "rejected: auth"


def test_sends_and_deliveries_are_traced_with_actor_names() -> None:
    sim = sim_on(TcpTransport())
    sim.add(Echo())
    sim.add(Pinger("c1", 3, stop=True), start_at=0.05)
    result = sim.run(mode="real")
    events = [e for e in result.trace.events if e.kind in ("send", "deliver")]
    notes = [(e.kind, e.src, e.dst) for e in events if e.type == "TcpNote"]
    assert notes.count(("send", "c1", "server")) == 4  # three requests and the stop
    assert notes.count(("deliver", "c1", "server")) == 4
    acks = [e for e in events if e.type == "TcpAck" and e.kind == "deliver"]
    assert {(e.src, e.dst) for e in acks} == {("server", "c1")}
    assert all(e.nbytes > 0 for e in events)
    stats = result.trace.stats()
    assert stats["messages"] == sum(1 for e in events if e.kind == "send")
    # The real-time clock counts from the run's start, as the virtual one does.
    assert 0.0 <= events[0].t < 5.0


def test_listening_at_names_the_bound_address() -> None:
    transport = TcpTransport({"server": "127.0.0.1:0"})
    seen: list[str | None] = []

    class Probe(Actor):
        name = "server"

        async def run(self, ctx: Context) -> None:
            seen.append(transport.listening_at("server"))
            ctx.listen()
            seen.append(transport.listening_at("server"))
            assert current_run().now() < 5.0

    sim = sim_on(transport)
    sim.add(Probe())
    sim.run(mode="real")
    assert seen[0] is None
    assert seen[1] is not None
    assert seen[1].startswith("127.0.0.1:")
    assert not seen[1].endswith(":0")
