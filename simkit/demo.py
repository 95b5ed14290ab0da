"""A small runtime demo: a coordinator gathers work from workers, through faults.

Five workers join a coordinator over a lossy, jittery in-memory network. Each
round the coordinator asks every connected worker for a number and waits for
the replies with a deadline. One worker crashes silently (only heartbeats
reveal it), restarts and rejoins; another is cut off by a partition that heals.
The whole run takes minutes of virtual time and a fraction of a second of wall
time, and the same seed gives the same trace digest every time.
"""

from __future__ import annotations

from dataclasses import dataclass

from simkit.actors import Actor, Context, PeerGone
from simkit.channels import LinkModel, LogNormal, NetworkModel
from simkit.faults import Crash, FaultSchedule, Heal, Partition, Restart
from simkit.heartbeat import HeartbeatConfig
from simkit.messages import Message
from simkit.simulation import Simulation, SimulationResult

__all__ = ["Coordinator", "Work", "WorkDone", "Worker", "build_demo", "run_demo"]


@dataclass(frozen=True, slots=True)
class Work(Message):
    """Asks a worker for a contribution to a round."""

    round: int


@dataclass(frozen=True, slots=True)
class WorkDone(Message):
    """A worker's contribution."""

    round: int
    value: int


class Coordinator(Actor):
    """Runs ``rounds`` rounds of ask-and-gather."""

    def __init__(self, workers: int, rounds: int, deadline: float) -> None:
        self.name = "coordinator"
        self.workers = workers
        self.rounds = rounds
        self.deadline = deadline
        self.totals: list[tuple[int, list[str], list[str], int]] = []

    async def run(self, ctx: Context) -> None:
        ctx.listen()
        await ctx.wait_for_peers(self.workers, timeout=30)
        for r in range(1, self.rounds + 1):
            ctx.mark("round", f"round {r}")
            asked = ctx.peers()
            await ctx.broadcast(asked, Work(r))
            replies, failed = await ctx.wait_for_replies(asked, WorkDone, timeout=self.deadline)
            values = [m.decode() for m in replies.values()]
            total = sum(v.value for v in values if isinstance(v, WorkDone) and v.round == r)
            self.totals.append((r, sorted(replies), failed, total))
            await ctx.sleep(5.0)


class Worker(Actor):
    """Answers each Work with a number after some modelled compute time."""

    def __init__(self, name: str) -> None:
        self.name = name

    async def run(self, ctx: Context) -> None:
        rng = ctx.rng("work", ctx.incarnation)
        await ctx.connect("coordinator")
        while True:
            try:
                got = await ctx.recv(Work, src="coordinator")
            except PeerGone:
                return
            work = got.decode()
            assert isinstance(work, Work)
            await ctx.compute(float(rng.uniform(0.5, 3.0)))
            try:
                await ctx.send("coordinator", WorkDone(work.round, int(rng.integers(100))))
            except PeerGone:
                return


def build_demo(seed: int = 7, *, workers: int = 5, rounds: int = 6) -> Simulation:
    """The demo simulation (see the module docstring)."""
    network = NetworkModel(LinkModel(latency=LogNormal(0.05, 0.5), loss=0.0))
    faults = FaultSchedule(
        (
            Crash(at=12.0, actor="w2", mode="silent"),
            Restart(at=30.0, actor="w2"),
            Partition(at=40.0, groups=(("coordinator",), ("w4",))),
            Heal(at=44.0),
        )
    )
    sim = Simulation(
        seed,
        network=network,
        heartbeat=HeartbeatConfig(interval=1.0, misses=3),
        faults=faults,
    )
    sim.add(Coordinator(workers, rounds, deadline=8.0))
    for i in range(workers):
        name = f"w{i}"
        sim.add(lambda name=name: Worker(name), name=name, daemon=True)
    return sim


def run_demo(seed: int = 7) -> tuple[SimulationResult, Coordinator]:
    """Run the demo; return the result and the coordinator (with its totals)."""
    sim = build_demo(seed)
    result = sim.run()
    coordinator = result.actors["coordinator"]
    assert isinstance(coordinator, Coordinator)
    return result, coordinator
