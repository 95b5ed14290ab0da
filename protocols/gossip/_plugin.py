"""The ``gossip`` protocol plugin and its run: peers' rounds merged into round records.

A serverless protocol: no actor is named ``server`` and none owns the
rounds (the plugin says ``server = None``). Every peer reports each round it
finishes (a :class:`~protocols.gossip.LocalRound`) to the run, which merges
the peers' views of round ``r`` into one :class:`~simkit.protocol.RoundRecord`:

- ``replied``: the peers that finished round ``r``;
- ``failed``: peers a neighbour waited for in round ``r`` and skipped (gone,
  or silent until the deadline) that did not finish it themselves;
- ``sampled``: both; ``late``: stale shares discarded during the round;
- ``loss``: the mean local training loss of the peers that finished;
- ``accuracy`` / ``eval_loss``: of the *average model* (the mean of the
  finishing peers' weights, what decentralized SGD converges to) on the
  scenario's test set;
- ``t_start`` / ``t_end``: the first peer's start, the last peer's end.

A round is reported to ``on_round`` once every running peer has finished it
(a peer that restarts later may still add to it: :meth:`GossipRun.rounds`
gives the final records). The run's final weights are the mean of every
peer's latest weights.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from protocols.gossip._core import LocalRound
from protocols.gossip._graph import Graph, random_graph, ring
from protocols.gossip._options import GossipOptions
from protocols.gossip._peer import GossipPeer
from simkit.protocol import ClientSetup, RoundRecord, ScenarioSetup
from simkit.scenario import ScenarioError
from simkit.simulation import Simulation
from simkit.training import EvalInstructions, TrainFailure, TrainingManager, Weights

__all__ = ["PLUGIN", "GossipPlugin", "GossipRun", "build_graph"]


@dataclass(slots=True)
class _Tally:
    """Round ``r`` so far, merged over the peers that reported it (O(model) memory)."""

    t_start: float = math.inf
    t_end: float = 0.0
    losses: dict[str, float] = field(default_factory=dict)
    replied: set[str] = field(default_factory=set)
    skipped: set[str] = field(default_factory=set)
    late: int = 0
    total: Weights | None = None

    def add(self, local: LocalRound) -> None:
        if local.peer in self.replied:  # a restarted peer redid the round: keep the first
            return
        self.replied.add(local.peer)
        self.skipped.update(local.skipped)
        self.t_start = min(self.t_start, local.t_start)
        self.t_end = max(self.t_end, local.t_end)
        self.late += local.late
        if local.loss is not None and math.isfinite(local.loss):
            self.losses[local.peer] = local.loss
        self.total = local.weights if self.total is None else self.total + local.weights


class GossipRun:
    """The handle :meth:`GossipPlugin.build` returns; peers report to :meth:`add`."""

    def __init__(self, setup: ScenarioSetup, sim: Simulation, graph: Graph, initial: Weights):
        self.setup, self.graph, self.initial = setup, graph, initial
        self._sim = sim
        self._tallies: dict[int, _Tally] = {}
        self._latest: dict[str, Weights] = {}
        self._progress: dict[str, int] = {}
        self._emitted = 0
        self._evaluator: TrainingManager | None = None

    def add(self, local: LocalRound) -> None:
        """A peer finished a round."""
        self._tallies.setdefault(local.round, _Tally()).add(local)
        self._latest[local.peer] = local.weights
        self._progress[local.peer] = max(self._progress.get(local.peer, 0), local.round)
        if self.setup.on_round is not None:
            self._emit(self.setup.on_round)

    def rounds(self) -> list[RoundRecord]:
        """One record per round some peer finished, in order."""
        return [self._record(r) for r in sorted(self._tallies)]

    def weights(self) -> Weights:
        """The mean of every peer's latest weights (the initial ones if none finished a round)."""
        if not self._latest:
            return self.initial
        names = sorted(self._latest)
        total = self._latest[names[0]]
        for name in names[1:]:
            total = total + self._latest[name]
        return total / float(len(names))

    def _emit(self, on_round: Callable[[RoundRecord], None]) -> None:
        while self._emitted + 1 in self._tallies and self._closed(self._emitted + 1):
            self._emitted += 1
            on_round(self._record(self._emitted))

    def _closed(self, r: int) -> bool:
        """Every peer has finished round ``r`` (or a later one), or is down."""
        for name in self.graph:
            if self._progress.get(name, 0) < r and self._running(name):
                return False
        return True

    def _running(self, name: str) -> bool:
        try:
            return self._sim.is_running(name)
        except KeyError:  # not built here (``only``)
            return False

    def _record(self, r: int) -> RoundRecord:
        tally = self._tallies[r]
        failed = tally.skipped - tally.replied
        metrics = self._evaluate(r, tally)
        losses = [tally.losses[n] for n in sorted(tally.losses)]
        return RoundRecord(
            round=r,
            sampled=tuple(sorted(tally.replied | failed)),
            replied=tuple(sorted(tally.replied)),
            failed=tuple(sorted(failed)),
            late=tally.late,
            loss=sum(losses) / len(losses) if losses else None,
            accuracy=metrics.get("accuracy"),
            eval_loss=metrics.get("loss"),
            t_start=tally.t_start,
            t_end=tally.t_end,
        )

    def _evaluate(self, r: int, tally: _Tally) -> dict[str, float]:
        test = self.setup.test
        if test is None or tally.total is None:
            return {}
        if self._evaluator is None:
            self._evaluator = TrainingManager(
                self.setup.model(),
                self.setup.client_optimizer(),
                test,
                test,
                seed_tree=self.setup.seeds.child("gossip", "evaluation"),
            )
        mean = tally.total / float(len(tally.replied))
        batch = self.setup.training.eval_batch_size
        result = self._evaluator.evaluation_round(EvalInstructions(r, mean, batch_size=batch))
        if isinstance(result, TrainFailure):
            return {}
        return {name: state.result() for name, state in sorted(result.metrics.items())}


def build_graph(setup: ScenarioSetup, options: GossipOptions) -> Graph:
    """The scenario's graph over its clients (seeded by ``("gossip", "graph")``)."""
    names = setup.client_names
    if options.topology == "ring":
        return ring(names, options.degree)
    return random_graph(names, options.degree, setup.seeds.numpy("gossip", "graph"))


class GossipPlugin:
    """Registered under ``simkit.protocols`` as ``gossip``."""

    name = "gossip"
    server = None  # serverless: every actor is a peer; the run merges their rounds
    # No request starts a peer's round: faults.dropout (when = "round") and
    # faults.per_round count the shares a peer receives (about `degree` a round).
    round_message = "gossip.Share"
    options_model = GossipOptions

    def validate(self, table: Mapping[str, Any], source: str) -> None:
        """Check the ``[protocol]`` table (see :class:`GossipOptions`)."""
        GossipOptions.from_table(table, source)

    def options(self, setup: ScenarioSetup) -> GossipOptions:
        """The scenario's validated options."""
        return GossipOptions.from_table(setup.protocol, setup.name)

    def build(
        self, setup: ScenarioSetup, sim: Simulation, only: Collection[str] | None = None
    ) -> GossipRun:
        """Add one peer per client (``only`` those named) to ``sim``.

        Raises:
            ScenarioError: Secure aggregation asked for, or fewer than two clients.
        """
        mode = setup.secagg.get("mode", "off")
        if mode != "off":
            raise ScenarioError(
                f"{setup.name}: secagg.mode = {mode!r} is not supported by protocol 'gossip' "
                "(there is no server to sum for)"
            )
        options = self.options(setup)
        try:
            graph = build_graph(setup, options)
        except ValueError as exc:
            raise ScenarioError(f"{setup.name}: clients.count: {exc}") from None
        initial = setup.model().get_weights()
        run = GossipRun(setup, sim, graph, initial)
        for client in setup.clients:
            if only is None or client.name in only:
                factory = _peer(setup, client, graph[client.name], options, initial, run)
                sim.add(factory, name=client.name)
        return run


def _peer(
    setup: ScenarioSetup,
    client: ClientSetup,
    neighbours: tuple[str, ...],
    options: GossipOptions,
    initial: Weights,
    run: GossipRun,
) -> Callable[[], GossipPeer]:
    # A factory: a restarted peer is a fresh process (fresh state; it rejoins).
    return lambda: GossipPeer(setup, client, neighbours, options, initial, run.add)


PLUGIN = GossipPlugin()
