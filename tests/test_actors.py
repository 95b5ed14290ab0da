"""Actors on the in-memory network: joins, mailboxes, heartbeats, faults."""

from __future__ import annotations

from dataclasses import dataclass

import anyio
import pytest

from simkit.actors import Actor, Context, PeerGone, Rejected
from simkit.channels import Constant, LinkModel, NetworkModel
from simkit.faults import Crash, FaultSchedule, Restart, Trigger
from simkit.heartbeat import HeartbeatConfig
from simkit.messages import Message
from simkit.runtime import SimulationDeadlock
from simkit.simulation import ActorFailed, Simulation


@dataclass(frozen=True, slots=True)
class Note(Message):
    n: int


@dataclass(frozen=True, slots=True)
class Ack(Message):
    n: int


class Echo(Actor):
    """Listens; answers every Note with an Ack until told to stop (n < 0)."""

    def __init__(self, name: str = "server", token: str = "") -> None:
        self.name = name
        self.token = token
        self.seen: list[tuple[str, int]] = []

    async def run(self, ctx: Context) -> None:
        ctx.listen(token=self.token)
        while True:
            got = await ctx.recv(Note)
            note = got.decode()
            assert isinstance(note, Note)
            if note.n < 0:
                return
            self.seen.append((got.src, note.n))
            await ctx.send(got.src, Ack(note.n))


class Pinger(Actor):
    def __init__(self, name: str, count: int, gap: float = 1.0, stop: bool = False) -> None:
        self.name = name
        self.count = count
        self.gap = gap
        self.stop = stop
        self.acks: list[int] = []
        self.error: str = ""

    async def run(self, ctx: Context) -> None:
        await ctx.connect("server")
        try:
            for i in range(self.count):
                reply = await ctx.request("server", Note(i), Ack, timeout=30)
                ack = reply.decode()
                assert isinstance(ack, Ack)
                self.acks.append(ack.n)
                await ctx.sleep(self.gap)
            if self.stop:
                await ctx.send("server", Note(-1))
        except (PeerGone, TimeoutError) as exc:
            self.error = type(exc).__name__


def two_party(**kwargs: object) -> Simulation:
    sim = Simulation(seed=1, **kwargs)  # type: ignore[arg-type]
    sim.add(Echo())
    return sim


def test_request_reply_and_normal_end() -> None:
    sim = two_party(network=NetworkModel(LinkModel(latency=Constant(0.1))))
    sim.add(Pinger("c1", 3, stop=True), daemon=True)
    result = sim.run()
    pinger = result.actors["c1"]
    assert isinstance(pinger, Pinger)
    assert pinger.acks == [0, 1, 2]
    # Join/Accept and 3 request round trips of 0.2 s, 3 gaps of 1 s, the last note 0.1 s.
    assert result.end_time == pytest.approx(3.9)
    kinds = [e.kind for e in result.trace.events]
    assert kinds.count("peer_up") == 2
    assert "actor_exit" in kinds


def test_same_seed_same_digest_other_seed_other_digest() -> None:
    def once(seed: int) -> str:
        net = NetworkModel(LinkModel(latency={"kind": "uniform", "low": 0.01, "high": 0.2}))  # type: ignore[arg-type]
        sim = Simulation(seed=seed, network=net)
        sim.add(Echo(), daemon=True)
        for i in range(4):
            sim.add(Pinger(f"c{i}", 5))
        return sim.run().digest

    assert once(5) == once(5)
    assert once(5) != once(6)


def test_version_and_token_mismatch_are_rejected() -> None:
    class BadClient(Actor):
        name = "bad"
        outcome = ""

        async def run(self, ctx: Context) -> None:
            try:
                await ctx.connect("server", token="wrong")
            except Rejected as exc:
                BadClient.outcome = exc.flag

    sim = Simulation(seed=1)
    sim.add(Echo(token="s3cret"), daemon=True)
    sim.add(BadClient())
    sim.run()
    assert BadClient.outcome == "auth"


def test_silent_crash_is_seen_by_heartbeat_within_bounds() -> None:
    hb = HeartbeatConfig(interval=1.0, misses=3)
    faults = FaultSchedule((Crash(at=10.0, actor="c1", mode="silent"),))
    sim = two_party(heartbeat=hb, faults=faults)
    sim.add(Pinger("c1", 1000, gap=0.25), daemon=True)
    result = sim.run(until=30.0)
    downs = [e for e in result.trace.events if e.kind == "peer_down" and e.src == "server"]
    assert len(downs) == 1
    assert 10.0 + 2.0 <= downs[0].t <= 10.0 + 3.0  # [interval*(misses-1), interval*misses]
    assert "heartbeat" in downs[0].info


def test_loud_crash_is_seen_at_once() -> None:
    faults = FaultSchedule((Crash(at=10.0, actor="c1", mode="loud"),))
    sim = two_party(faults=faults)
    sim.add(Pinger("c1", 1000, gap=0.25), daemon=True)
    result = sim.run(until=30.0)
    downs = [e for e in result.trace.events if e.kind == "peer_down" and e.src == "server"]
    assert len(downs) == 1
    assert downs[0].t == pytest.approx(10.0)


def test_restart_rejoins_under_the_same_name() -> None:
    faults = FaultSchedule((Crash(at=5.0, actor="c1", mode="silent"), Restart(at=6.0, actor="c1")))
    sim = two_party(faults=faults)
    sim.add(lambda: Pinger("c1", 10, gap=1.0, stop=True), name="c1")
    result = sim.run()
    pinger = result.actors["c1"]
    assert isinstance(pinger, Pinger)
    assert pinger.acks == list(range(10))  # the restarted incarnation's
    downs = [e for e in result.trace.events if e.kind == "peer_down"]
    assert any("replaced" in e.info for e in downs)


def test_triggered_crash_loses_the_triggering_message() -> None:
    trigger = Trigger(kind="send", src="c1", type="Note", count=2)
    faults = FaultSchedule((Crash(on=trigger, actor="c1"),))
    sim = two_party(faults=faults)
    pinger = Pinger("c1", 5)
    sim.add(pinger, daemon=True)
    echo = Echo()
    sim = Simulation(seed=1, faults=faults)
    sim.add(echo, daemon=True)
    sim.add(pinger)
    result = sim.run()
    assert echo.seen == [("c1", 0)]
    lost = [e for e in result.trace.events if e.kind == "lost" and e.type == "Note"]
    assert len(lost) == 1
    assert lost[0].info == "sender crashed"


def test_wait_for_replies_reports_the_silent() -> None:
    class Boss(Actor):
        name = "boss"
        outcome: tuple[list[str], list[str]] = ([], [])

        async def run(self, ctx: Context) -> None:
            ctx.listen()
            peers = await ctx.wait_for_peers(3, timeout=5)
            await ctx.broadcast(peers, Note(1))
            replies, failed = await ctx.wait_for_replies(peers, Ack, timeout=10)
            Boss.outcome = (sorted(replies), failed)

    class Worker(Actor):
        def __init__(self, name: str, answers: bool) -> None:
            self.name = name
            self.answers = answers

        async def run(self, ctx: Context) -> None:
            await ctx.connect("boss")
            await ctx.recv(Note)
            if self.answers:
                await ctx.send("boss", Ack(1))
            await ctx.sleep(1000)

    faults = FaultSchedule((Crash(at=2.0, actor="w2", mode="loud"),))
    sim = Simulation(seed=3, faults=faults)
    sim.add(Boss())
    sim.add(Worker("w0", True), daemon=True)
    sim.add(Worker("w1", False), daemon=True)
    sim.add(Worker("w2", False), daemon=True)
    result = sim.run()
    assert Boss.outcome == (["w0"], ["w1", "w2"])
    assert result.end_time == pytest.approx(10.0)


def test_wait_for_replies_returns_when_peers_go_down_together() -> None:
    class Boss(Actor):
        name = "boss"
        outcome: tuple[list[str], list[str], float] = ([], [], 0.0)

        async def run(self, ctx: Context) -> None:
            ctx.listen()
            peers = await ctx.wait_for_peers(4, timeout=5)
            await ctx.broadcast(peers, Note(1))
            replies, failed = await ctx.wait_for_replies(peers, Ack, timeout=60)
            Boss.outcome = (sorted(replies), failed, ctx.now())

    class Worker(Actor):
        def __init__(self, name: str) -> None:
            self.name = name

        async def run(self, ctx: Context) -> None:
            await ctx.connect("boss")
            await ctx.recv(Note)
            if self.name == "w0":
                await ctx.send("boss", Ack(1))
            await ctx.sleep(1000)

    # three silent crashes at once: the heartbeat declares them in the same instant
    faults = FaultSchedule(tuple(Crash(at=0.5, actor=f"w{i}") for i in (1, 2, 3)))
    sim = Simulation(seed=3, faults=faults, heartbeat=HeartbeatConfig(interval=1.0, misses=2))
    sim.add(Boss())
    for i in range(4):
        sim.add(Worker(f"w{i}"), daemon=True)
    sim.run()
    replied, failed, t = Boss.outcome
    assert (replied, failed) == (["w0"], ["w1", "w2", "w3"])
    assert t < 5.0  # declared by the heartbeat, not the 60 s deadline


def test_actor_error_is_recorded_and_others_go_on() -> None:
    class Buggy(Actor):
        name = "buggy"

        async def run(self, ctx: Context) -> None:
            await ctx.sleep(1)
            raise ValueError("boom")

    sim = two_party()
    sim.add(Buggy(), daemon=True)
    sim.add(Pinger("c1", 2, stop=True), daemon=True)
    result = sim.run()
    [(actor, text)] = result.errors
    assert actor == "buggy"
    assert text.startswith("ValueError: boom (at tests.test_actors:")  # where it raised

    strict = Simulation(seed=1, fail_fast=True)
    strict.add(Buggy())
    with pytest.raises(ActorFailed, match="boom"):
        strict.run()


def test_deadlock_names_actors_and_what_they_wait_for() -> None:
    class Waiter(Actor):
        name = "lonely"

        async def run(self, ctx: Context) -> None:
            ctx.listen()
            await ctx.recv(Note)

    sim = Simulation(seed=1)
    sim.add(Waiter())
    with pytest.raises(SimulationDeadlock, match=r"lonely \(recv\(Note\)\)"):
        sim.run()


def test_recv_timeout_and_unknown_peer() -> None:
    class Impatient(Actor):
        name = "imp"
        errors: list[str] = []

        async def run(self, ctx: Context) -> None:
            try:
                await ctx.recv(Note, timeout=2.5)
            except TimeoutError as exc:
                Impatient.errors.append(str(exc))
            try:
                await ctx.send("ghost", Note(1))
            except PeerGone as exc:
                Impatient.errors.append(exc.peer)

    result = Simulation(seed=1).run_sync_helper() if False else None  # noqa: F841
    sim = Simulation(seed=1)
    sim.add(Impatient())
    res = sim.run()
    assert res.end_time == pytest.approx(2.5)
    assert "within 2.5 s" in Impatient.errors[0]
    assert Impatient.errors[1] == "ghost"


def test_every_daemon_needs_until() -> None:
    sim = Simulation(seed=1)
    sim.add(Echo(), daemon=True)
    with pytest.raises(ValueError, match="until"):
        sim.run()


def test_wait_for_replies_collects_replies_that_arrive_together() -> None:
    class Boss(Actor):
        name = "boss"
        got: tuple[int, list[str]] = (0, [])

        async def run(self, ctx: Context) -> None:
            ctx.listen()
            peers = await ctx.wait_for_peers(50, timeout=5)
            await ctx.broadcast(peers, Note(1))
            replies, failed = await ctx.wait_for_replies(peers, Ack, timeout=60)
            Boss.got = (len(replies), failed)

    class Worker(Actor):
        def __init__(self, name: str) -> None:
            self.name = name

        async def run(self, ctx: Context) -> None:
            await ctx.connect("boss")
            await ctx.recv(Note)
            await ctx.compute(1.0)  # every reply leaves at the same instant
            await ctx.send("boss", Ack(1))
            await ctx.sleep(1000)

    sim = Simulation(seed=1)
    sim.add(Boss())
    for i in range(50):
        sim.add(Worker(f"w{i:02d}"), daemon=True)
    result = sim.run()
    assert Boss.got == (50, [])
    assert result.end_time == pytest.approx(1.0)


def test_wait_any_wakes_on_a_message_a_watched_peer_leaving_a_join_or_the_timeout() -> None:
    events: list[tuple[float, str]] = []

    class Boss(Actor):
        name = "boss"

        async def run(self, ctx: Context) -> None:
            ctx.listen()
            peers = await ctx.wait_for_peers(2, timeout=5)
            t0 = ctx.now()
            while ctx.now() - t0 < 20:
                watch = [p for p in ctx.peers() if p in peers]
                got = await ctx.wait_any(Ack, watch=watch, joins=True, timeout=6)
                if got is not None:
                    events.append((ctx.now(), f"ack from {got.src}"))
                else:
                    events.append((ctx.now(), f"peers {ctx.peers()}"))

    class Worker(Actor):
        def __init__(self, name: str, reply_at: float | None) -> None:
            self.name = name
            self.reply_at = reply_at

        async def run(self, ctx: Context) -> None:
            await ctx.connect("boss")
            if self.reply_at is not None:
                await ctx.sleep(self.reply_at - ctx.now())
                await ctx.send("boss", Ack(1))
            await ctx.sleep(1000)

    # w0 replies at 1; w1 crashes loudly at 2 and restarts at 3; then silence until 9
    faults = FaultSchedule((Crash(at=2.0, actor="w1", mode="loud"), Restart(at=3.0, actor="w1")))
    sim = Simulation(seed=1, faults=faults)
    sim.add(Boss())
    sim.add(Worker("w0", 1.0), daemon=True)
    sim.add(Worker("w1", None), daemon=True)
    sim.run()
    times = [round(t, 3) for t, _ in events]
    assert [what for _, what in events][:3] == [
        "ack from w0",
        "peers ['w0']",
        "peers ['w0', 'w1']",
    ]
    assert times[:3] == pytest.approx([1.0, 2.0, 3.0], abs=0.05)
    assert times[3] == pytest.approx(times[2] + 6, abs=1e-6)  # nothing then: the timeout


def test_send_and_broadcast_are_cancellation_points() -> None:
    counts: dict[str, object] = {}

    class Hasty(Actor):
        name = "hasty"

        async def run(self, ctx: Context) -> None:
            await ctx.connect("server")
            sent = 0
            with anyio.move_on_after(0) as scope:  # already expired
                for i in range(10_000):
                    await ctx.send("server", Note(i))
                    sent += 1
            counts["send"] = (sent, scope.cancelled_caught)
            with anyio.CancelScope() as scope:
                scope.cancel()
                await ctx.broadcast(["server"], Note(1))
                counts["broadcast"] = "sent"
            counts["broadcast_cancelled"] = scope.cancelled_caught
            counts["nowait"] = ctx.send_nowait("server", Note(-1)) > 0  # no checkpoint

    sim = two_party()
    sim.add(Hasty())
    result = sim.run()
    assert result.errors == []
    assert counts == {"send": (0, True), "broadcast_cancelled": True, "nowait": True}


def test_recv_timeout_is_a_cancel_scope_and_a_late_message_stays_queued() -> None:
    got: list[object] = []

    class Patient(Actor):
        name = "patient"

        async def run(self, ctx: Context) -> None:
            ctx.listen()
            await ctx.wait_for_peers(1)
            try:
                await ctx.recv(Note, timeout=1.0)
            except TimeoutError as exc:
                got.append(str(exc))
            await ctx.sleep(5.0)
            got.append(ctx.pending(Note))
            with anyio.move_on_after(1.0):  # an outer scope ends an untimed recv too
                await ctx.recv(Ack)
            got.append(ctx.now())

    class Late(Actor):
        name = "late"

        async def run(self, ctx: Context) -> None:
            await ctx.connect("patient")
            await ctx.sleep(2.0)
            await ctx.send("patient", Note(1))
            await ctx.sleep(10.0)

    sim = Simulation(seed=1)
    sim.add(Patient())
    sim.add(Late(), daemon=True)
    result = sim.run()
    assert result.errors == []
    assert got[0] == "patient: no Note within 1 s"
    assert got[1] == 1
    assert got[2] == pytest.approx(7.0, abs=0.05)  # joined ~0, timed out at ~1, slept 5, 1
