"""Drive the SecAgg cores synchronously through a dropout schedule, and predict the outcome.

A schedule maps a client to the stage (1 AdvertiseKeys, 2 ShareKeys,
3 MaskedInputCollection, 4 Unmasking) in which it drops: from that stage on
it neither receives nor answers. A *late* client of stage ``s`` still answers
in stage ``s`` but the driver has already declared it dead, so its reply is in
``replies`` and not in ``alive``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

import numpy as np

from simkit.codec import packb
from simkit.messages import Message
from simkit.rng import SeedTree
from simkit.secagg import (
    SecAggAbort,
    SecAggClient,
    SecAggConfig,
    SecAggResult,
    SecAggServer,
    SecAggStage,
)

STAGES = (1, 2, 3, 4)


@dataclass
class Round:
    """What a driven round left behind."""

    server: SecAggServer
    clients: dict[str, SecAggClient]
    inputs: dict[str, np.ndarray]
    transcript: list[tuple[int, str, str, bytes]] = field(default_factory=list)

    @property
    def result(self) -> SecAggResult:
        assert self.server.result is not None
        return self.server.result


def names_for(n: int) -> list[str]:
    return [f"c{i:02d}" for i in range(n)]


def make_inputs(names: Collection[str], length: int, bits: int, seed: int) -> dict[str, np.ndarray]:
    rng = SeedTree(seed).numpy("test-inputs")
    high = np.uint64(1 << bits)
    return {n: rng.integers(0, high, size=length, dtype=np.uint64) for n in sorted(names)}


def drive(
    config: SecAggConfig,
    names: Collection[str],
    drops: Mapping[str, int],
    *,
    seed: int = 0,
    late: Collection[str] = (),
    inputs: Mapping[str, np.ndarray] | None = None,
) -> Round:
    """Run one round of the pure cores under ``drops`` (client -> stage it drops in)."""
    tree = SeedTree(seed)
    if inputs is None:
        inputs = make_inputs(names, config.length, config.bits, seed)
    server = SecAggServer(config, names, tree)
    clients = {n: SecAggClient(n, tree.child("client", n), inputs[n]) for n in sorted(names)}
    run = Round(server, clients, dict(inputs))
    sends: dict[str, Message] = server.start()
    for stage in STAGES:
        replies: dict[str, Message] = {}
        for name, msg in sorted(sends.items()):
            run.transcript.append((stage, "S->" + name, msg.typename, packb(msg)))
            gone = drops.get(name, 99)
            if gone < stage or (gone == stage and name not in late):
                continue
            reply = clients[name].receive(msg)
            if reply is not None:
                run.transcript.append((stage, name + "->S", reply.typename, packb(reply)))
                replies[name] = reply
        alive = [n for n in sorted(names) if drops.get(n, 99) > stage]
        sends = server.step(replies, alive)
        if server.result is not None:
            break
    for name, msg in sorted(sends.items()):
        assert isinstance(msg, SecAggAbort)
        run.transcript.append((5, "S->" + name, msg.typename, packb(msg)))
        if clients[name].stage is not SecAggStage.ABORTED:
            clients[name].receive(msg)
    return run


@dataclass(frozen=True)
class Prediction:
    ok: bool
    survivors: frozenset[str]
    aborted_in: int | None


def predict(server: SecAggServer, drops: Mapping[str, int]) -> Prediction:
    """The outcome the protocol must reach, computed from the graph and the schedule."""
    g, t = server.graph, server.config.threshold

    def hood(u: str, members: frozenset[str]) -> int:
        return sum(1 for n in g.closed_neighbourhood(u) if n in members)

    def up(stage: int, members: frozenset[str]) -> frozenset[str]:
        return frozenset(n for n in members if drops.get(n, 99) > stage)

    u1 = up(1, frozenset(g.names))
    if len(u1) < t:
        return Prediction(False, frozenset(), 1)
    u2 = frozenset(u for u in up(2, u1) if hood(u, u1) >= t)  # clients abort alone
    if len(u2) < t:
        return Prediction(False, frozenset(), 2)
    u3 = frozenset(u for u in up(3, u2) if hood(u, u2) >= t)
    if len(u3) < t:
        return Prediction(False, frozenset(), 3)
    # the server checks every survivor's holders, and that the survivors stay connected
    if any(hood(u, u3) < t for u in u3) or len(g.components(u3)) > 1:
        return Prediction(False, frozenset(), 3)
    u4 = up(4, u3)
    if len(u4) < t:
        return Prediction(False, frozenset(), 4)
    relevant = [d for d in u2 - u3 if any(n in u3 for n in g.neighbours(d))]
    ok = all(hood(u, u4) >= t for u in u3) and all(hood(d, u4) >= t for d in relevant)
    return Prediction(ok, u3, None if ok else 4)
