"""A tiny but real protocol for testing the scenario layer: broadcast, train, average.

The server waits for every client to join, then each round sends the global
weights to the connected clients, waits for their replies with a deadline,
aggregates the updates with the scenario's aggregator and server optimizer,
and evaluates the new weights on the server's test set. Clients train with a
:class:`~simkit.training.TrainingManager` and charge the modelled compute time.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from simkit.actors import Actor, Context, PeerGone
from simkit.channels import ConnectError
from simkit.messages import Message
from simkit.protocol import ClientSetup, RoundRecord, ScenarioSetup
from simkit.simulation import Simulation
from simkit.training import (
    ModelUpdates,
    TrainFailure,
    TrainingManager,
    TrainInstructions,
    TrainResult,
    Weights,
)

OPTIONS = {"round_timeout": 60.0, "min_replies": 1}


@dataclass(frozen=True, slots=True)
class FakeTrain(Message):
    typename: ClassVar[str] = "fake.Train"
    instructions: TrainInstructions


@dataclass(frozen=True, slots=True)
class FakeReply(Message):
    typename: ClassVar[str] = "fake.Reply"
    result: TrainResult | TrainFailure


class FakeServer(Actor):
    def __init__(self, setup: ScenarioSetup, options: Mapping[str, Any]) -> None:
        self.name = "server"
        self.setup = setup
        self.timeout = float(options.get("round_timeout", OPTIONS["round_timeout"]))
        self.min_replies = int(options.get("min_replies", OPTIONS["min_replies"]))
        self.weights = setup.model().get_weights()
        self.records: list[RoundRecord] = []

    async def run(self, ctx: Context) -> None:
        setup = self.setup
        ctx.listen()
        await ctx.wait_for_peers(len(setup.clients), timeout=10.0)
        optimizer = setup.server_optimizer()
        for r in range(1, setup.rounds + 1):
            t_start = ctx.now()
            ctx.mark("round", f"round {r}")
            sampled = sorted(ctx.peers())
            unreachable = await ctx.broadcast(sampled, FakeTrain(self._instructions(r)))
            asked = [n for n in sampled if n not in unreachable]
            replies, failed = await ctx.wait_for_replies(asked, FakeReply, timeout=self.timeout)
            updates: dict[str, ModelUpdates] = {}
            losses: list[float] = []
            for name, item in replies.items():
                msg = item.decode()
                assert isinstance(msg, FakeReply)
                if isinstance(msg.result, TrainResult) and msg.result.round == r:
                    updates[name] = msg.result.updates
                    losses.append(float(msg.result.metrics["loss"].result()))
            aborted = len(updates) < self.min_replies
            if not aborted:
                update = setup.aggregator.aggregate(updates)
                self.weights = optimizer.apply_server_update(self.weights, update)
            loss, accuracy = self._evaluate()
            record = RoundRecord(
                round=r,
                sampled=tuple(sampled),
                replied=tuple(sorted(updates)),
                failed=tuple(sorted(set(failed) | set(unreachable))),
                loss=float(np.mean(losses)) if losses else None,
                accuracy=accuracy,
                eval_loss=loss,
                t_start=t_start,
                t_end=ctx.now(),
                aborted=aborted,
                reason="too few replies" if aborted else "",
            )
            self.records.append(record)
            if setup.on_round is not None:
                setup.on_round(record)

    def _instructions(self, r: int) -> TrainInstructions:
        t = self.setup.training
        return TrainInstructions(
            round=r,
            weights=self.weights,
            batch_size=t.batch_size,
            n_epoch=t.n_epoch,
            n_steps=t.n_steps,
            timeout=t.timeout,
            weighting=self.setup.aggregator.weighting,
        )

    def _evaluate(self) -> tuple[float | None, float | None]:
        test = self.setup.test
        if test is None:
            return None, None
        model = self.setup.model()
        model.set_weights(self.weights)
        loss, predictions = model.evaluate_batch(test.x, test.y)
        accuracy = float(np.mean(np.argmax(predictions, axis=1) == test.y))
        return float(loss), accuracy


class FakeClient(Actor):
    def __init__(self, setup: ScenarioSetup, client: ClientSetup) -> None:
        self.name = client.name
        self.manager = TrainingManager(
            setup.model(),
            setup.client_optimizer(),
            client.train,
            client.valid,
            seed_tree=setup.seeds.child("client", client.name),
            cost=setup.cost,
            speed=client.speed,
        )

    async def run(self, ctx: Context) -> None:
        try:
            await ctx.connect("server", timeout=10.0)
        except (ConnectError, TimeoutError):
            return
        while True:
            try:
                got = await ctx.recv(FakeTrain, src="server")
            except PeerGone:
                return
            msg = got.decode()
            assert isinstance(msg, FakeTrain)
            result = self.manager.training_round(msg.instructions)
            if isinstance(result, TrainResult):
                await ctx.compute(result.effort.t_spent)
            try:
                await ctx.send("server", FakeReply(result))
            except PeerGone:
                return


class FakeRun:
    def __init__(self, server: FakeServer) -> None:
        self.server = server

    def rounds(self) -> list[RoundRecord]:
        return list(self.server.records)

    def weights(self) -> Weights:
        return self.server.weights


class FakePlugin:
    """The plugin: registered as ``fake`` by monkeypatching, or named ``module:PLUGIN``."""

    name = "fake"

    def __init__(self) -> None:
        self.built: list[ScenarioSetup] = []

    def validate(self, table: Mapping[str, Any], source: str) -> None:
        for key in sorted(table):
            if key not in OPTIONS:
                raise ValueError(f"{source}: protocol: unknown key {key!r}")
        timeout = table.get("round_timeout", 1.0)
        if not (isinstance(timeout, (int, float)) and timeout > 0):
            raise ValueError(f"{source}: protocol.round_timeout: must be > 0, got {timeout!r}")

    def build(
        self, setup: ScenarioSetup, sim: Simulation, only: Collection[str] | None = None
    ) -> FakeRun:
        self.built.append(setup)
        server = FakeServer(setup, setup.protocol)
        if only is None or server.name in only:
            sim.add(server)
        for client in setup.clients:
            if only is None or client.name in only:
                sim.add(_client_factory(setup, client), name=client.name, daemon=True)
        return FakeRun(server)


def _client_factory(setup: ScenarioSetup, client: ClientSetup) -> Callable[[], FakeClient]:
    return lambda: FakeClient(setup, client)


PLUGIN = FakePlugin()
