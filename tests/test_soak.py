"""Soak: 100 actors heartbeating every second for one virtual hour (slow: bench only)."""

from __future__ import annotations

import pytest

from simkit.actors import Actor, Context
from simkit.heartbeat import HeartbeatConfig
from simkit.simulation import Simulation
from simkit.trace import Trace


class Idle(Actor):
    def __init__(self, name: str, server: bool) -> None:
        self.name = name
        self.server = server

    async def run(self, ctx: Context) -> None:
        if self.server:
            ctx.listen()
        else:
            await ctx.connect("hub")
        await ctx.sleep(1e9)


def idle_star(actors: int) -> Simulation:
    sim = Simulation(seed=1, heartbeat=HeartbeatConfig(1.0, 3), trace=Trace(keep=False))
    sim.add(Idle("hub", True), daemon=True)
    for i in range(actors - 1):
        sim.add(Idle(f"n{i:03d}", False), daemon=True)
    return sim


def test_ten_actors_for_ten_minutes_no_false_dropouts() -> None:
    result = idle_star(10).run(until=600.0)
    assert result.trace.count("peer_down") == 0
    assert result.trace.count("peer_up") == 18
    assert result.end_time == 600.0


@pytest.mark.slow
def test_hundred_actors_for_one_virtual_hour() -> None:
    result = idle_star(100).run(until=3600.0)
    assert result.trace.count("peer_down") == 0
    assert result.end_time == 3600.0
    # each side speaks about once a second on each of the 99 links
    assert result.trace.message_count > 99 * 3600
