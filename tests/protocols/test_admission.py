"""Strangers cannot start a run: FedAvg and FedBuff servers admit only their clients."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import pytest

from protocols.fedavg import FedAvgPlugin
from protocols.fedbuff import FedBuffPlugin
from simkit.actors import Actor, Context, Rejected
from simkit.channels import ConnectError
from simkit.protocol import ProtocolPlugin, ProtocolRun, ScenarioSetup
from simkit.runner import run_scenario
from simkit.simulation import Simulation

QUICKSTART = Path(__file__).parents[2] / "scenarios" / "quickstart.toml"


class Stranger(Actor):
    """Tries to join the server under a name the scenario does not know."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.outcome = "never answered"

    async def run(self, ctx: Context) -> None:
        for _ in range(100):
            try:
                await ctx.connect("server", timeout=5.0)
            except Rejected as exc:
                self.outcome = f"rejected: {exc.flag}"
                return
            except (ConnectError, TimeoutError):
                await ctx.sleep(0.01)  # not listening yet
                continue
            self.outcome = "accepted"
            return


class WithStrangers:
    """A protocol plugin that also adds ``n`` strangers to the simulation."""

    def __init__(self, inner: ProtocolPlugin, n: int) -> None:
        self.inner = inner
        self.name = inner.name
        self.strangers = [Stranger(f"x{i:02d}") for i in range(n)]

    def validate(self, table: Mapping[str, Any], source: str) -> None:
        self.inner.validate(table, source)

    def build(
        self, setup: ScenarioSetup, sim: Simulation, only: Collection[str] | None = None
    ) -> ProtocolRun:
        run = self.inner.build(setup, sim, only)
        for stranger in self.strangers:
            sim.add(stranger, daemon=True)
        return run


def _check(plugin: WithStrangers, result: Any, rounds: int, participants: int) -> None:
    assert result.errors == []
    assert [s.outcome for s in plugin.strangers] == ["rejected: name"] * len(plugin.strangers)
    summary = result.summary()
    assert summary["refused"] == len(plugin.strangers)
    assert summary["rounds_completed"] == rounds
    assert [m["participants"] for m in summary["metrics"]] == [participants] * rounds


def test_fedavg_refuses_ten_strangers_and_runs_with_its_ten_clients() -> None:
    plugin = WithStrangers(FedAvgPlugin(), 10)
    _check(plugin, run_scenario(QUICKSTART, plugin=plugin), rounds=5, participants=10)


def test_fedbuff_refuses_strangers() -> None:
    pytest.importorskip("protocols.fedbuff")
    plugin = WithStrangers(FedBuffPlugin(), 3)
    scenario = {
        "name": "small",
        "seed": 3,
        "rounds": 4,
        "protocol": {"name": "fedbuff", "buffer_size": 2},
        "clients": {"count": 4},
        "data": {"samples": 40, "dim": 5, "classes": 2},
        "training": {"batch_size": 8, "n_steps": 2},
    }
    result = run_scenario(scenario, plugin=plugin)
    assert result.errors == []
    assert [s.outcome for s in plugin.strangers] == ["rejected: name"] * 3
    assert result.summary()["refused"] == 3
    assert result.rounds_completed == 4


def test_fedavg_over_tcp_refuses_ten_strangers() -> None:
    plugin = WithStrangers(FedAvgPlugin(), 10)
    result = run_scenario(QUICKSTART, plugin=plugin, transport="tcp")
    _check(plugin, result, rounds=5, participants=10)
