"""Stateful testing of actors: a hypothesis state machine over one virtual loop.

Hypothesis has no native async stateful testing. Here every example builds
its own :class:`~simkit.runtime.VirtualEventLoop` (never a fixture loop)
and starts the simulation as a task on it; rules inject faults and advance
virtual time by stepping that loop, so the actors stay alive across steps
and each step costs microseconds of wall time, whatever the virtual time::

    class Chatty(ActorStateMachine):
        actors = ("a0", "a1", "a2")

        def build(self) -> Simulation:
            sim = Simulation(seed=1, heartbeat=HeartbeatConfig(1.0, 2))
            ...
            return sim

        @invariant()
        def rules_hold(self) -> None:
            self.check_trace()  # RuntimeRules over the new events

    TestChatty = Chatty.TestCase

The built-in rules crash (silently or loudly) and restart the actors named
in :attr:`ActorStateMachine.actors`, cut and heal the network and advance
time; subclasses add their own rules and invariants.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, TypeVar

import anyio
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule

from simkit.actors import Context
from simkit.faults import Crash, Fault, Heal, Partition, Restart
from simkit.heartbeat import HeartbeatConfig
from simkit.runtime import VirtualEventLoop
from simkit.simulation import Simulation
from simkit.testing.invariants import RuntimeRules

__all__ = ["ActorStateMachine"]

T = TypeVar("T")


class ActorStateMachine(RuleBasedStateMachine):
    """A :class:`RuleBasedStateMachine` whose actors live in one virtual loop.

    Subclasses set :attr:`actors` (the names the fault rules act on) and
    implement :meth:`build`. The run starts with ``run_async(until=horizon)``.

    Attributes:
        actors: Names of the actors that fault rules may crash and restart.
        hub: The actor left out of partitions' far side (a server); its
            heartbeat detections are checked by :meth:`check_trace`.
        horizon: Virtual-time bound of the run.
        steps: Time steps the ``wait`` rule draws from, in seconds.
        max_latency: Largest one-way latency of the network built (for the
            heartbeat bounds in :meth:`check_trace`).
    """

    actors: ClassVar[tuple[str, ...]] = ()
    hub: ClassVar[str | None] = None
    horizon: ClassVar[float] = 1e9
    steps: ClassVar[tuple[float, ...]] = (0.01, 0.3, 1.0, 2.5, 7.0)
    max_latency: ClassVar[float] = 0.0

    def __init__(self) -> None:
        super().__init__()
        if not self.actors:
            raise TypeError(f"{type(self).__name__}.actors must name at least one actor")
        self.loop = VirtualEventLoop()
        asyncio.set_event_loop(None)
        self.sim = self.build()
        self.main = self.loop.create_task(self.sim.run_async(until=self.horizon))
        self.partitioned = False
        self._checked = 0
        hb: HeartbeatConfig | None = self.sim.heartbeat if self.sim.heartbeat.enabled else None
        self.trace_rules = RuntimeRules(hb, max_latency=self.max_latency, watcher=self.hub)
        self.advance(0.0)

    def build(self) -> Simulation:
        """Return the simulation to explore (called once per example)."""
        raise NotImplementedError

    def teardown(self) -> None:
        self.main.cancel()
        try:
            self.loop.run_until_complete(self.main)
        except BaseException:  # the run was cancelled on purpose
            pass
        self.loop.close()

    # -- driving the loop ------------------------------------------------------------------

    def now(self) -> float:
        """The virtual time, seconds since the run started."""
        return self.sim.now()

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` of virtual time pass (the actors run meanwhile)."""
        if self.main.done():
            self.main.result()  # surface the run's own failure
            return
        self.loop.run_until_complete(anyio.sleep(seconds))

    def call(self, fn: Callable[[], T]) -> T:
        """Call ``fn`` from inside the loop, as an actor or a timer would."""

        async def inside() -> T:
            return fn()

        return self.loop.run_until_complete(inside())

    def run(self, coro: Callable[[], Awaitable[T]]) -> T:
        """Run an async function inside the loop until it returns."""

        async def inside() -> T:
            return await coro()

        return self.loop.run_until_complete(inside())

    def apply(self, fault: Fault) -> None:
        """Apply a fault now."""
        self.call(lambda: self.sim.apply(fault))

    def running(self, name: str) -> bool:
        """Whether ``name`` is alive."""
        return self.sim.is_running(name)

    def context(self, name: str) -> Context | None:
        """The context of ``name`` if it is alive."""
        return self.sim.context(name)

    def check_trace(self) -> None:
        """Feed the events recorded since the last check to :attr:`trace_rules`."""
        events = self.sim.trace.events
        new, self._checked = events[self._checked :], len(events)
        self.trace_rules.feed(new)
        self.trace_rules.check_pending(self.loop.time())

    # -- built-in rules ---------------------------------------------------------------------

    @rule(data=st.data(), loud=st.booleans())
    def crash(self, data: Any, loud: bool) -> None:
        alive = [n for n in self.actors if self.running(n)]
        if alive:
            name = data.draw(st.sampled_from(alive), label="crash")
            self.apply(Crash(at=0.0, actor=name, mode="loud" if loud else "silent"))

    @rule(data=st.data())
    def restart(self, data: Any) -> None:
        down = [n for n in self.actors if not self.running(n)]
        if down:
            name = data.draw(st.sampled_from(down), label="restart")
            self.apply(Restart(at=0.0, actor=name))

    @precondition(lambda self: self.hub is not None)
    @rule(data=st.data())
    def partition_or_heal(self, data: Any) -> None:
        if self.partitioned:
            self.apply(Heal(at=0.0))
        else:
            group = data.draw(
                st.lists(st.sampled_from(self.actors), min_size=1, unique=True), label="cut off"
            )
            assert self.hub is not None
            self.apply(Partition(at=0.0, groups=((self.hub,), tuple(sorted(group)))))
        self.partitioned = not self.partitioned

    @rule(data=st.data())
    def wait(self, data: Any) -> None:
        self.advance(data.draw(st.sampled_from(self.steps), label="wait"))
