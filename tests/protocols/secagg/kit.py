"""Small actors that run secure sums in a simulation, and what their runs must give."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from protocols.secagg import (
    SecAggSettings,
    SecureSumOutcome,
    ServerFactory,
    secure_contribute,
    secure_sum,
)
from simkit.actors import Actor, Context
from simkit.channels import NetworkModel
from simkit.faults import Crash, FaultSchedule, Trigger
from simkit.heartbeat import HeartbeatConfig
from simkit.rng import SeedTree
from simkit.secagg import Quantizer, SecAggServer
from simkit.simulation import Simulation, SimulationResult
from simkit.testing import check_secure_sum

SERVER = "server"

STAGE_MESSAGES = {
    "advertise-keys": "SecAggSetup",
    "share-keys": "SecAggKeyList",
    "masked-input": "SecAggCiphertexts",
    "unmasking": "SecAggUnmaskRequest",
}
"""Stage -> the server message that opens it: a client crashed on its delivery drops there."""


def names_for(n: int) -> list[str]:
    return [f"c{i:02d}" for i in range(n)]


def inputs_for(
    names: Sequence[str], length: int, seed: int = 0, scale: float = 0.5
) -> dict[str, npt.NDArray[np.float64]]:
    tree = SeedTree(seed)
    return {n: tree.numpy("test-input", n).normal(0.0, scale, length) for n in sorted(names)}


class SumServer(Actor):
    """Waits for its clients, then runs one secure sum per round."""

    def __init__(
        self,
        clients: Sequence[str],
        length: int,
        settings: SecAggSettings,
        rounds: Sequence[int] = (1,),
        factory: ServerFactory = SecAggServer,
    ) -> None:
        self.name = SERVER
        self.clients = list(clients)
        self.length = length
        self.settings = settings
        self.rounds = list(rounds)
        self.factory = factory
        self.outcomes: dict[int, SecureSumOutcome] = {}

    async def run(self, ctx: Context) -> None:
        ctx.listen()
        try:
            await ctx.wait_for_peers(len(self.clients), timeout=10.0)
        except TimeoutError:
            pass
        for r in self.rounds:
            cohort = [c for c in self.clients if ctx.is_connected(c)]
            self.outcomes[r] = await secure_sum(
                ctx,
                cohort,
                self.length,
                self.settings,
                ctx.seeds,
                r,
                server_factory=self.factory,
            )


class SumClient(Actor):
    """Joins the server, then contributes one vector per round."""

    def __init__(
        self, name: str, vectors: Mapping[int, npt.ArrayLike], settings: SecAggSettings
    ) -> None:
        self.name = name
        self.vectors = dict(vectors)
        self.settings = settings
        self.completed: dict[int, bool] = {}

    async def run(self, ctx: Context) -> None:
        await ctx.connect(SERVER)
        for r, vector in sorted(self.vectors.items()):
            self.completed[r] = await secure_contribute(
                ctx, SERVER, vector, self.settings, ctx.seeds, r
            )


def crash_in(stage: str, client: str, mode: str = "silent", count: int = 1) -> Crash:
    """``client`` crashes as the message opening ``stage`` is delivered to it."""
    trigger = Trigger(kind="deliver", dst=client, type=STAGE_MESSAGES[stage], count=count)
    return Crash(on=trigger, actor=client, mode=mode)  # type: ignore[arg-type]


@dataclass
class Run:
    """A finished secure-sum simulation."""

    result: SimulationResult
    inputs: dict[str, npt.NDArray[np.float64]]
    settings: SecAggSettings
    names: list[str] = field(default_factory=list)

    @property
    def server(self) -> SumServer:
        actor = self.result.actors[SERVER]
        assert isinstance(actor, SumServer)
        return actor

    def outcome(self, r: int = 1) -> SecureSumOutcome:
        return self.server.outcomes[r]

    def client(self, name: str) -> SumClient:
        actor = self.result.actors[name]
        assert isinstance(actor, SumClient)
        return actor


def run_sum(
    n: int,
    settings: SecAggSettings,
    *,
    length: int = 20,
    seed: int = 0,
    faults: Sequence[Crash] = (),
    rounds: Sequence[int] = (1,),
    factory: ServerFactory = SecAggServer,
    scale: float = 0.5,
    network: NetworkModel | None = None,
    heartbeat: HeartbeatConfig | None = None,
    mode: Literal["virtual", "real"] = "virtual",
) -> Run:
    """``n`` clients summing random vectors over ``rounds`` under ``faults``."""
    names = names_for(n)
    inputs = inputs_for(names, length, seed, scale)
    sim = Simulation(
        seed,
        faults=FaultSchedule(tuple(faults)),
        max_time=3600.0,
        network=network,
        heartbeat=heartbeat,
    )
    sim.add(SumServer(names, length, settings, rounds, factory))
    for name in names:
        sim.add(SumClient(name, {r: inputs[name] for r in rounds}, settings), start_at=0.01)
    result = sim.run(mode=mode)
    assert not result.errors, result.errors
    return Run(result, inputs, settings, names)


def expect_exact_sum(run: Run, r: int = 1) -> None:
    """The outcome is the survivors' sum: exactly in integers, within the bound in floats."""
    out = run.outcome(r)
    assert not out.aborted, out.reason
    assert out.quantizer is not None
    assert out.total is not None
    qz: Quantizer = out.quantizer
    quantized = {c: qz.quantize(run.inputs[c]) for c in out.survivors}
    check_secure_sum(out.total_int, quantized, out.survivors, modulus=1 << qz.bits)
    clipped = [np.clip(run.inputs[c], -qz.clip, qz.clip) for c in out.survivors]
    error = np.max(np.abs(out.total - np.sum(clipped, axis=0)))
    assert error <= out.error_bound(), (error, out.error_bound())
