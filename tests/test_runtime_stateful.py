"""A hypothesis state machine over the whole runtime.

Rules send messages, crash and restart actors, cut and heal the network and
advance virtual time. After every step the trace must show that:

- nothing is delivered to or from a crashed actor;
- each link delivers in the order it sent (no reordering configured);
- every sent message is delivered, lost, or still in flight (none at the end);
- virtual time never goes backwards;
- a silently crashed actor is declared gone by the hub within the heartbeat
  bounds.

Each example builds its own virtual loop (never a fixture loop) and steps it
with ``run_until_complete``, so the actors live across steps.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import anyio
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from simkit.actors import Actor, Context, PeerGone
from simkit.channels import LinkModel, NetworkModel, Uniform
from simkit.faults import Crash, Heal, Partition, Restart
from simkit.heartbeat import HeartbeatConfig
from simkit.messages import Message
from simkit.runtime import VirtualEventLoop
from simkit.simulation import Simulation
from simkit.trace import Event

NAMES = ["a0", "a1", "a2", "a3"]
HB = HeartbeatConfig(interval=1.0, misses=2)
LATENCY = (0.001, 0.05)


@dataclass(frozen=True, slots=True)
class Chat(Message):
    n: int


class Hub(Actor):
    name = "hub"

    async def run(self, ctx: Context) -> None:
        ctx.listen()
        while True:
            await ctx.recv(Chat)


class Spoke(Actor):
    def __init__(self, name: str) -> None:
        self.name = name

    async def run(self, ctx: Context) -> None:
        await ctx.connect("hub")
        while True:
            try:
                await ctx.recv(Chat, src="hub")
            except PeerGone:
                await ctx.sleep(1e9)


class RuntimeMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = VirtualEventLoop()
        asyncio.set_event_loop(None)
        net = NetworkModel(LinkModel(latency=Uniform(*LATENCY)))
        self.sim = Simulation(seed=11, network=net, heartbeat=HB)
        self.sim.add(Hub(), daemon=True)
        for name in NAMES:
            self.sim.add(lambda name=name: Spoke(name), name=name, daemon=True)
        self.main = self.loop.create_task(self.sim.run_async(until=1e9))
        self.counter = 0
        self.partitioned = False
        self.last_t = 0.0
        self.checked = 0
        self.checker = TraceChecker()
        self.advance(0.5)

    def teardown(self) -> None:
        if not self.main.done():
            self.drain_and_check()
        self.main.cancel()
        try:
            self.loop.run_until_complete(self.main)
        except BaseException:
            pass
        self.loop.close()

    # -- helpers --------------------------------------------------------------------

    def advance(self, dt: float) -> None:
        self.loop.run_until_complete(anyio.sleep(dt))

    def inside(self, fn: Callable[[], object]) -> None:
        """Call ``fn`` from inside the loop (as a fault timer or an actor would)."""

        async def call() -> None:
            fn()

        self.loop.run_until_complete(call())

    def ctx(self, name: str) -> Context | None:
        spec = self.sim._specs[name]
        return spec.ctx if spec.running else None

    # -- rules ------------------------------------------------------------------------

    @rule(name=st.sampled_from(NAMES), to_hub=st.booleans())
    def send(self, name: str, to_hub: bool) -> None:
        self.counter += 1
        src, dst = (name, "hub") if to_hub else ("hub", name)
        ctx = self.ctx(src)
        if ctx is not None and ctx.is_connected(dst):
            msg = Chat(self.counter)
            self.inside(lambda: ctx.send_nowait(dst, msg))

    @rule(name=st.sampled_from(NAMES), loud=st.booleans())
    def crash(self, name: str, loud: bool) -> None:
        if self.sim._specs[name].running:
            fault = Crash(at=0.0, actor=name, mode="loud" if loud else "silent")
            self.inside(lambda: self.sim.apply(fault))

    @rule(name=st.sampled_from(NAMES))
    def restart(self, name: str) -> None:
        if not self.sim._specs[name].running:
            self.inside(lambda: self.sim.apply(Restart(at=0.0, actor=name)))

    @rule(group=st.lists(st.sampled_from(NAMES), min_size=1, max_size=3, unique=True))
    def partition_or_heal(self, group: list[str]) -> None:
        if self.partitioned:
            self.inside(lambda: self.sim.apply(Heal(at=0.0)))
        else:
            fault = Partition(at=0.0, groups=(("hub",), tuple(sorted(group))))
            self.inside(lambda: self.sim.apply(fault))
        self.partitioned = not self.partitioned

    @rule(dt=st.sampled_from([0.01, 0.3, 1.0, 2.5, 7.0]))
    def wait(self, dt: float) -> None:
        self.advance(dt)

    # -- invariants ---------------------------------------------------------------------

    @invariant()
    def trace_obeys_the_rules(self) -> None:
        events = self.sim.trace.events
        new, self.checked = events[self.checked :], len(events)
        self.checker.feed(new)
        self.checker.check_pending_detections(self.loop.time())

    def drain_and_check(self) -> None:
        self.advance(LATENCY[1] * 4)
        self.trace_obeys_the_rules()
        self.checker.check_all_resolved(older_than=self.loop.time() - LATENCY[1])


class TraceChecker:
    """Checks the runtime's rules on a trace, one new batch of events at a time."""

    def __init__(self) -> None:
        self.last: Event | None = None
        self.down: set[str] = set()
        # per link: digests sent and not yet resolved, in order, with their send time
        self.in_flight: dict[tuple[str, str], list[tuple[str, float]]] = defaultdict(list)
        self.crashed_at: dict[str, float] = {}
        self.disturbed: set[str] = set()  # a partition may have silenced them earlier
        self.partitioned = False
        self.hub_peers: set[str] = set()
        self.healed_at = -1e9

    def feed(self, events: list[Event]) -> None:
        for e in events:
            self.check_time(e)
            self.check_crashes(e)
            self.check_link(e)
            self.check_detection(e)

    def check_time(self, e: Event) -> None:
        if self.last is not None:
            assert e.t >= self.last.t, f"time went back: {self.last} then {e}"
            assert e.seq == self.last.seq + 1
        self.last = e

    def check_crashes(self, e: Event) -> None:
        """Nothing is delivered to or from a crashed actor."""
        if e.kind == "crash":
            self.down.add(e.src)
        elif e.kind == "actor_start":
            self.down.discard(e.src)
        elif e.kind == "deliver":
            assert e.src not in self.down, f"delivered from crashed {e.src}: {e}"
            assert e.dst not in self.down, f"delivered to crashed {e.dst}: {e}"

    def check_link(self, e: Event) -> None:
        """FIFO per link, and every outcome matches an earlier send."""
        link = (e.src, e.dst)
        if e.kind == "send":
            self.in_flight[link].append((e.digest, e.t))
        elif e.kind in ("deliver", "lost"):
            queue = self.in_flight[link]
            digests = [d for d, _ in queue]
            assert e.digest in digests, f"{link}: {e.kind} without a send: {e}"
            i = digests.index(e.digest)
            if e.kind == "deliver":
                # FIFO: whatever was sent before it on this link must be resolved already
                # (a loss resolves at send time, so only deliveries are compared).
                assert i == 0, f"{link}: delivered out of order: {e}"
            del queue[i]

    def check_detection(self, e: Event) -> None:
        """A silent crash seen by the hub is declared within the heartbeat bounds."""
        if e.kind in ("peer_up", "peer_down") and e.src == "hub":
            (self.hub_peers.add if e.kind == "peer_up" else self.hub_peers.discard)(e.dst)
        if (
            e.kind == "crash"
            and e.info == "silent"
            and e.src in self.hub_peers
            and e.src not in self.crashed_at  # the hub still holds the first one's connection
        ):
            self.crashed_at[e.src] = e.t
            self.disturbed.discard(e.src)
            if self.partitioned or e.t < self.healed_at + HB.interval + LATENCY[1]:
                self.disturbed.add(e.src)  # silenced by the partition, not by the crash
        elif e.kind in ("partition", "heal"):
            self.partitioned = e.kind == "partition"
            if e.kind == "heal":
                self.healed_at = e.t
            self.disturbed.update(self.crashed_at)
        elif e.kind == "restart":
            self.disturbed.update(self.crashed_at)
        if e.kind == "peer_down" and e.src == "hub" and e.dst in self.crashed_at:
            t0 = self.crashed_at.pop(e.dst)
            if e.dst not in self.disturbed and "heartbeat" in e.info:
                assert t0 + LO <= e.t <= t0 + HI, f"{e.dst} crashed at {t0}, declared at {e.t}"

    def check_pending_detections(self, now: float) -> None:
        for name, t0 in self.crashed_at.items():
            if name not in self.disturbed:
                assert now <= t0 + HI + 1e-9, f"{name} crashed at {t0}, not declared at {now}"

    def check_all_resolved(self, older_than: float) -> None:
        """Every message sent long enough ago was delivered or recorded lost."""
        for link, queue in self.in_flight.items():
            stale = [d for d, t in queue if t < older_than]
            assert not stale, f"{link}: {len(stale)} message(s) vanished"


LO = HB.interval * HB.misses - LATENCY[1]
HI = HB.interval * (HB.misses + 1) + LATENCY[1]


RuntimeMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)
TestRuntime = RuntimeMachine.TestCase
