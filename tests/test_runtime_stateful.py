"""A hypothesis state machine over the whole runtime.

Rules send messages, crash and restart actors, cut and heal the network and
advance virtual time. After every step the trace must show that:

- nothing is delivered to or from a crashed actor;
- each link delivers in the order it sent (no reordering configured);
- every sent message is delivered, lost, or still in flight (none at the end);
- virtual time never goes backwards;
- a silently crashed actor is declared gone by the hub within the heartbeat
  bounds.

It is written with the testing kit: :class:`simkit.testing.ActorStateMachine`
builds one virtual loop per example (never a fixture loop) and steps it, so
the actors live across steps; :class:`simkit.testing.RuntimeRules` checks the
trace.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import invariant, rule

from simkit.actors import Actor, Context, PeerGone
from simkit.channels import LinkModel, NetworkModel, Uniform
from simkit.heartbeat import HeartbeatConfig
from simkit.messages import Message
from simkit.simulation import Simulation
from simkit.testing import ActorStateMachine, RuntimeRules

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


class RuntimeMachine(ActorStateMachine):
    actors = tuple(NAMES)
    hub = "hub"
    max_latency = LATENCY[1]

    def build(self) -> Simulation:
        net = NetworkModel(LinkModel(latency=Uniform(*LATENCY)))
        sim = Simulation(seed=11, network=net, heartbeat=HB)
        sim.add(Hub(), daemon=True)
        for name in NAMES:
            sim.add(lambda name=name: Spoke(name), name=name, daemon=True)
        return sim

    def __init__(self) -> None:
        super().__init__()
        self.counter = 0
        self.advance(0.5)

    def teardown(self) -> None:
        if not self.main.done():
            self.advance(LATENCY[1] * 4)
            self.check_trace()
            self.trace_rules.check_resolved(older_than=self.now() - LATENCY[1])
        super().teardown()

    @rule(name=st.sampled_from(NAMES), to_hub=st.booleans())
    def send(self, name: str, to_hub: bool) -> None:
        self.counter += 1
        src, dst = (name, "hub") if to_hub else ("hub", name)
        ctx = self.context(src)
        if ctx is not None and ctx.is_connected(dst):
            msg = Chat(self.counter)
            self.call(lambda: ctx.send_nowait(dst, msg))

    @invariant()
    def trace_obeys_the_rules(self) -> None:
        self.check_trace()


def test_detection_bounds_follow_the_heartbeat() -> None:
    rules = RuntimeRules(HB, max_latency=LATENCY[1], watcher="hub")
    assert rules.bounds == (
        HB.interval * (HB.misses - 1) - LATENCY[1],
        HB.interval * HB.misses + LATENCY[1],
    )


RuntimeMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)
TestRuntime = RuntimeMachine.TestCase
