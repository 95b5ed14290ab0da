"""A small runtime demo: a coordinator gathers work from workers, through faults.

Five workers join a coordinator over a jittery in-memory network. Each
round the coordinator asks every connected worker for a number and waits for
the replies with a deadline. One worker crashes silently (only heartbeats
reveal it), restarts and rejoins; another is cut off by a partition that heals.
The whole run takes minutes of virtual time and a fraction of a second of wall
time, and the same seed gives the same trace digest every time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from simkit.actors import Actor, Context, PeerGone
from simkit.channels import ConnectError, ConnectRefused, LinkModel, LogNormal, NetworkModel
from simkit.faults import Crash, FaultSchedule, Heal, Partition, Restart
from simkit.heartbeat import HeartbeatConfig
from simkit.simulation import Simulation, SimulationResult
from simkit.wire import Message

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
    """Answers each Work with a number after some modelled compute time.

    When it loses the coordinator (a partition, say), it keeps trying to join
    again until the coordinator is gone for good.
    """

    def __init__(self, name: str) -> None:
        self.name = name

    async def run(self, ctx: Context) -> None:
        rng = ctx.rng("work", ctx.incarnation)
        while True:
            try:
                await ctx.connect("coordinator", timeout=5.0)
            except ConnectRefused:
                return  # nothing listens any more: the run is over
            except (ConnectError, TimeoutError):
                await ctx.sleep(2.0)  # the Join was lost or refused: try again
                continue
            await self.serve(ctx, rng)
            await ctx.sleep(2.0)

    async def serve(self, ctx: Context, rng: np.random.Generator) -> None:
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


def build_demo(seed: int = 7, *, workers: int = 5, rounds: int = 8) -> Simulation:
    """The demo simulation (see the module docstring)."""
    network = NetworkModel(LinkModel(latency=LogNormal(0.05, 0.5), loss=0.0))
    faults = FaultSchedule(
        (
            Crash(at=8.5, actor="w2", mode="silent"),
            Restart(at=20.0, actor="w2"),
            Partition(at=30.0, groups=(("coordinator",), ("w4",))),
            Heal(at=45.0),
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
        sim.add(_worker_factory(f"w{i}"), name=f"w{i}", daemon=True)
    return sim


def _worker_factory(name: str) -> Callable[[], Worker]:
    return lambda: Worker(name)


def run_demo(seed: int = 7) -> tuple[SimulationResult, Coordinator]:
    """Run the demo; return the result and the coordinator (with its totals)."""
    sim = build_demo(seed)
    result = sim.run()
    coordinator = result.actors["coordinator"]
    assert isinstance(coordinator, Coordinator)
    return result, coordinator


def print_demo(
    seed: int = 7, trace_path: str | None = None, mermaid_path: str | None = None
) -> str:
    """Run the demo and print what happened; return the trace digest."""
    import time

    from rich.console import Console
    from rich.table import Table

    from simkit.trace import filter_events, timeline_text, to_mermaid, write_jsonl

    console = Console(highlight=False)
    wall = time.perf_counter()  # reporting only: the simulation never reads it
    result, coordinator = run_demo(seed)
    wall = time.perf_counter() - wall
    table = Table(title=f"simkit runtime demo (seed {seed})")
    for column in ("round", "replied", "failed", "total"):
        table.add_column(column)
    for r, replied, failed, total in coordinator.totals:
        table.add_row(str(r), " ".join(replied), " ".join(failed) or "-", str(total))
    console.print(table)
    kinds = ["crash", "restart", "partition", "heal", "peer_up", "peer_down", "mark", "lost"]
    shown = filter_events(result.trace.events, kinds=kinds)
    console.print(timeline_text(shown, width=110), markup=False, soft_wrap=True)
    stats = result.trace.stats()
    console.print(
        f"{stats['messages']} messages ({stats['bytes']} bytes, {stats['lost']} lost), "
        f"{result.end_time:.1f} s of virtual time in {wall:.2f} s of wall time",
        soft_wrap=True,
    )
    console.print(f"trace digest {result.digest}")
    if trace_path:
        write_jsonl(result.trace.events, trace_path)
        console.print(f"trace written to {trace_path} (try: simkit trace show {trace_path})")
    if mermaid_path:
        with open(mermaid_path, "w", encoding="utf-8") as out:
            out.write(to_mermaid(result.trace.events, t_to=20.0))
        console.print(f"sequence diagram (first 20 s) written to {mermaid_path}")
    return result.digest
