"""The FedBuff server's logic without I/O: who trains next, from which weights, the buffer.

:class:`FedBuffCore` is what the server actor drives: the driver reports
which clients are connected (with their session numbers), the replies that
arrive and the clients that go away, and sends the requests the core returns.
The core never awaits, never reads a clock (times are passed in) and draws
randomness only from the seed tree, so it is tested directly; its
:meth:`~FedBuffCore.state_dict` after an update is a complete checkpoint of
the server.

The rules (Nguyen et al. 2022, "Federated Learning with Buffered Asynchronous
Aggregation"):

- Every connected client is kept training (or ``concurrency`` of them, the
  free slots going to seeded random idle clients). A client that replies is
  given new work at once.
- A request carries the global weights only when the client must
  synchronise: it holds none in its current session, or it lags
  ``sync_interval`` server updates behind (``1``: whenever it lacks the
  latest), or the weights it holds are staler than ``max_staleness`` (its
  update would be discarded). Otherwise it carries ``weights=None`` and the
  version the client holds, and the client trains again from those global
  weights: the training loop is decoupled from weight synchronisation.
- An update trained from version ``b`` and arriving at version ``v`` has
  staleness ``s = v - b``; staler than ``max_staleness`` and it is discarded
  (counted late); otherwise it joins the buffer with weight ``w(s)``.
- Every ``buffer_size`` (K) buffered updates the server applies
  ``sum_k w(s_k) n_k u_k / sum_k n_k`` through its optimizer, where ``u_k``
  is an update and ``n_k`` its aggregation weight (samples, steps or 1, as
  the scenario's aggregator says; with ``"none"`` this is the paper's
  ``(1/K) sum_k w(s_k) u_k``). Staleness weights are not renormalised, so
  stale buffers make smaller steps. Robust aggregators see the updates
  scaled by ``w(s_k)``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from protocols._tables import checkpoint_weights, mean_loss, record_from_state, record_state
from protocols.fedbuff._options import FedBuffOptions
from protocols.messages import Error, TrainReply, TrainRequest
from simkit.protocol import RoundRecord, ScenarioSetup
from simkit.training import (
    EvalInstructions,
    ModelUpdates,
    TrainFailure,
    TrainingManager,
    TrainResult,
    Weights,
    metric_results,
)

__all__ = ["FedBuffCore", "Job"]


@dataclasses.dataclass(frozen=True, slots=True)
class Job:
    """The training request a client is working on.

    Attributes:
        session: The client's session when it was sent.
        round: The request's round: the server update it was sent before (version + 1).
        base: The version of the global weights it trains from.
    """

    session: int
    round: int
    base: int


@dataclasses.dataclass(frozen=True, slots=True)
class _Entry:
    client: str
    result: TrainResult
    staleness: int


class FedBuffCore:
    """The server's state and decisions, one arrival at a time.

    Args:
        setup: The scenario (model, server optimizer, aggregator, training settings).
        options: The validated ``[protocol]`` table.
    """

    def __init__(self, setup: ScenarioSetup, options: FedBuffOptions) -> None:
        self.setup = setup
        self.options = options
        self.weights: Weights = setup.model().get_weights()
        self.version = 0
        self.optimizer = setup.server_optimizer()
        self.records: list[RoundRecord] = []
        self.stopped = ""  # why the run ended before its last update
        self.arrivals = 0  # training replies received (numbers the buffer entries)
        self.draws = 0  # seeded draws of idle clients (concurrency below connected)
        self.jobs: dict[str, Job] = {}
        # client -> (session, version) of the global weights it was last sent
        self.holds: dict[str, tuple[int, int]] = {}
        self.last_staleness: tuple[int, ...] = ()  # of the last update's buffer
        self._benched: dict[str, int] = {}  # failed in user code at this version
        self._buffer: dict[str, _Entry] = {}
        self._failed: set[str] = set()
        self._late = 0
        self._t_start = 0.0
        self._evaluator: TrainingManager | None = None

    @property
    def done(self) -> bool:
        """Whether every update was applied (or the run was stopped)."""
        return self.version >= self.setup.rounds or bool(self.stopped)

    @property
    def buffered(self) -> int:
        """Updates waiting in the buffer."""
        return len(self._buffer)

    def start(self, now: float) -> None:
        """The first update's window opens at ``now``."""
        self._t_start = now

    # ---------------------------------------------------------------------- dispatch

    def choose(self, connected: Mapping[str, int]) -> list[str]:
        """The idle clients among ``connected`` (name -> session) to set to work now.

        Every idle one without ``concurrency``; otherwise a seeded random
        choice filling the free slots. A client whose request failed in user
        code waits for the next update.
        """
        idle = [
            c
            for c in sorted(connected)
            if c not in self.jobs and self._benched.get(c) != self.version
        ]
        limit = self.options.concurrency
        free = len(idle) if limit is None else limit - len(self.jobs)
        if free >= len(idle):
            return idle
        if free <= 0:
            return []
        rng = self.setup.seeds.numpy("fedbuff", "choose", self.draws)
        self.draws += 1
        chosen = rng.choice(len(idle), size=free, replace=False)
        return sorted(idle[int(i)] for i in chosen)

    def requests(
        self, clients: Sequence[str], sessions: Mapping[str, int]
    ) -> list[tuple[TrainRequest, list[str]]]:
        """The requests that set ``clients`` to work, each with the clients it goes to.

        Records every client's job and the weights it will then hold (call
        :meth:`unreachable` for those the request did not reach).
        """
        groups: dict[int, list[str]] = {}  # version trained from -> clients
        synced: set[str] = set()
        for c in sorted(clients):
            held = self.holds.get(c)
            if held is None or self._must_sync(held, sessions[c]):
                self.holds[c] = (sessions[c], self.version)
                synced.add(c)
                base = self.version
            else:
                base = held[1]
            self.jobs[c] = Job(sessions[c], self.version + 1, base)
            groups.setdefault(base, []).append(c)
        out = []
        for base in sorted(groups):
            fresh = [c for c in groups[base] if c in synced]
            holding = [c for c in groups[base] if c not in synced]
            if fresh:
                out.append((self._request(base, with_weights=True), fresh))
            if holding:
                out.append((self._request(base, with_weights=False), holding))
        return out

    def _must_sync(self, held: tuple[int, int], session: int) -> bool:
        session_held, version_held = held
        if session_held != session:
            return True  # a new connection: a restarted client holds nothing we sent
        lag = self.version - version_held
        limit = self.options.max_staleness
        return lag >= self.options.sync_interval or (limit is not None and lag > limit)

    def _request(self, base: int, *, with_weights: bool) -> TrainRequest:
        t = self.setup.training
        return TrainRequest(
            round=self.version + 1,
            version=base,
            weights=self.weights if with_weights else None,
            batch_size=t.batch_size,
            n_epoch=t.n_epoch,
            n_steps=t.n_steps,
            timeout=t.timeout,
            weighting=self.setup.aggregator.weighting,
        )

    def unreachable(self, client: str) -> None:
        """``client`` did not get its request: no job, no weights held."""
        self.jobs.pop(client, None)
        self.holds.pop(client, None)

    # ---------------------------------------------------------------------- arrivals

    def on_reply(self, client: str, reply: TrainReply, now: float) -> RoundRecord | None:
        """Take a training reply; returns the record of the update it completed, if any.

        A reply that answers no current job of ``client`` is counted late and
        discarded, as is an update staler than ``max_staleness``.
        """
        job = self.jobs.get(client)
        if job is None or reply.round != job.round:
            self._late += 1
            return None
        del self.jobs[client]
        self.arrivals += 1
        staleness = self.version - job.base
        limit = self.options.max_staleness
        if limit is not None and staleness > limit:
            self._late += 1
            return None
        self._buffer[f"{client}#{self.arrivals:09d}"] = _Entry(client, reply.result, staleness)
        if len(self._buffer) < self.options.buffer_size:
            return None
        return self._update(now)

    def on_error(self, client: str, error: Error) -> str:
        """Take an ``Error`` reply; returns what follows (for the log).

        ``stage="weights"``: the client lacks the version it was told to
        train from; it is sent the weights with its next request. Otherwise
        its training failed in user code: it counts as failed and gets no new
        work until the next update.
        """
        job = self.jobs.get(client)
        if job is None or error.round != job.round:
            self._late += 1
            return "discarded (no such request)"
        del self.jobs[client]
        if error.stage == "weights":
            self.holds.pop(client, None)
            return "it will be sent the weights"
        self._benched[client] = self.version
        self._failed.add(client)
        return "no new work for it until the next update"

    def on_late(self) -> None:
        """A reply answered no current job (an earlier request, or none): discarded."""
        self._late += 1

    def on_bad_reply(self, client: str) -> None:
        """A reply from ``client`` failed validation: it failed its job, as with an ``Error``."""
        if self.jobs.pop(client, None) is None:
            self._late += 1
            return
        self._benched[client] = self.version
        self._failed.add(client)

    def on_gone(self, client: str) -> None:
        """``client`` went away (or reconnected): its work and weights are lost."""
        self.jobs.pop(client, None)
        self.holds.pop(client, None)
        self._benched.pop(client, None)
        self._failed.add(client)

    # ------------------------------------------------------------------------ update

    def _update(self, now: float) -> RoundRecord:
        keys = sorted(self._buffer)  # client name, then arrival: a fixed summing order
        entries = [self._buffer[k] for k in keys]
        # Updates of weight 0 (no step taken) add nothing; robust aggregators cannot take them.
        scaled = {
            k: _scaled(e.result.updates, self.options.weight(e.staleness))
            for k, e in zip(keys, entries, strict=True)
            if e.result.updates.weight > 0
        }
        if scaled:
            update = self.setup.aggregator.aggregate(scaled)
        else:
            update = self.weights * 0.0
        self.optimizer.start_round(self.version + 1, self.weights)
        self.weights = self.optimizer.apply_server_update(self.weights, update)
        self.version += 1
        loss = mean_loss({k: e.result.metrics for k, e in zip(keys, entries, strict=True)})
        metrics = self.evaluate() if self.evaluates(self.version) else {}
        clients = tuple(sorted({e.client for e in entries}))
        record = RoundRecord(
            round=self.version,
            sampled=clients,
            replied=clients,
            failed=tuple(sorted(self._failed)),
            late=self._late,
            loss=loss,
            accuracy=metrics.get("accuracy"),
            eval_loss=metrics.get("loss"),
            t_start=self._t_start,
            t_end=now,
        )
        self.records.append(record)
        self.last_staleness = tuple(e.staleness for e in entries)
        self._buffer.clear()
        self._failed.clear()
        self._late = 0
        self._t_start = now
        return record

    # -------------------------------------------------------------------- evaluation

    def evaluates(self, version: int) -> bool:
        """Whether the update making ``version`` is followed by an evaluation."""
        every = self.options.eval_every
        return every > 0 and (version % every == 0 or version == self.setup.rounds)

    def evaluate(self) -> dict[str, float]:
        """Metrics of the global model on the test set (``{}``: no test set)."""
        if self.setup.test is None:
            return {}
        if self._evaluator is None:
            self._evaluator = TrainingManager(
                self.setup.model(),
                self.setup.client_optimizer(),
                self.setup.test,
                self.setup.test,
                seed_tree=self.setup.seeds.child("fedbuff", "evaluation"),
            )
        result = self._evaluator.evaluation_round(
            EvalInstructions(
                self.version, self.weights, batch_size=self.setup.training.eval_batch_size
            )
        )
        if isinstance(result, TrainFailure):
            raise RuntimeError(f"server evaluation failed: {result.error_text}")
        return metric_results(result.metrics)

    # ------------------------------------------------------------------- checkpoints

    def state_dict(self) -> dict[str, Any]:
        """The server's state after an update: enough to continue from it.

        Clients' work in flight is not part of it: a resumed run sets every
        client to work afresh from the restored weights.
        """
        return {
            "version": self.version,
            "weights": self.weights.to_dict(),
            "optimizer": self.optimizer.state_dict(),
            "records": [record_state(r) for r in self.records],
            "arrivals": self.arrivals,
            "draws": self.draws,
            "stopped": self.stopped,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output.

        Raises:
            ValueError: The state does not fit this scenario's model or optimizer.
        """
        self.weights = checkpoint_weights(state["weights"], self.weights)
        self.version = int(state["version"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.records = [record_from_state(r) for r in state["records"]]
        self.arrivals = int(state["arrivals"])
        self.draws = int(state["draws"])
        self.stopped = str(state.get("stopped", ""))


def _scaled(updates: ModelUpdates, factor: float) -> ModelUpdates:
    """``updates`` with its update (not its aggregation weight) times ``factor``."""
    return ModelUpdates(updates.updates * factor, updates.weight)
