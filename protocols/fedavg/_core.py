"""The FedAvg round logic without I/O: sampling, requests, aggregation, evaluation, state.

:class:`FedAvgCore` is what the server actor drives. It never awaits, never
reads a clock and draws randomness only from the seed tree (per round), so it
is tested directly and its state (:meth:`state_dict`) is a complete checkpoint
of the server: weights, version, server optimizer (with module states), the
round records and early stopping.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from protocols._tables import checkpoint_weights, mean_loss, record_from_state, record_state
from protocols.fedavg._options import FedAvgOptions
from protocols.fedavg._strategy import Strategy, load_strategy
from protocols.messages import EvaluationRequest, TrainRequest
from simkit.protocol import RoundRecord, ScenarioSetup
from simkit.training import (
    AuxVar,
    Dataset,
    EarlyStopping,
    EvalInstructions,
    EvalResult,
    MetricState,
    ModelUpdates,
    TrainFailure,
    TrainingManager,
    TrainResult,
    Weights,
    aggregate_metrics,
    metric_results,
    sum_in_order,
)

__all__ = ["FedAvgCore", "RoundOutcome"]


@dataclasses.dataclass(frozen=True, slots=True)
class RoundOutcome:
    """What aggregating one round's replies did.

    Attributes:
        updated: A new global model was made (``False``: the round aborted).
        used: Clients whose update was aggregated (sorted).
        loss: Mean training loss over the used replies.
        reason: Why the round aborted.
    """

    updated: bool
    used: tuple[str, ...]
    loss: float | None
    reason: str = ""


class FedAvgCore:
    """The server's state and decisions, one round at a time.

    Args:
        setup: The scenario (model, optimizers, aggregator, training settings).
        options: The validated ``[protocol]`` table.
    """

    def __init__(self, setup: ScenarioSetup, options: FedAvgOptions) -> None:
        self.setup = setup
        self.options = options
        self.weights: Weights = setup.model().get_weights()
        self.version = 0
        self.round = 0  # the last round run
        self.optimizer = setup.server_optimizer()
        self.records: list[RoundRecord] = []
        self.stopper = (
            EarlyStopping(
                options.patience,
                options.min_delta,
                "max" if options.stop_metric == "accuracy" else "min",
            )
            if options.patience is not None
            else None
        )
        self.stopped = ""  # why the run ended before its last round
        self._aux: dict[str, AuxVar] = {}
        self._evaluator: TrainingManager | None = None
        self.strategy: Strategy = load_strategy(options.strategy, setup, options)

    # ------------------------------------------------------------------------ rounds

    def sample(self, round: int, available: Sequence[str]) -> list[str]:
        """The clients asked to train in ``round``: the strategy's cohort of ``available``.

        By default ``max(min_clients, ceil(fraction * n))`` clients, or all
        when fewer are available; the same round and availability give the
        same sample.
        """
        return self.strategy.sample(round, sorted(available))

    def aux_types(self) -> dict[str, type[AuxVar]]:
        """Module name -> the auxiliary variable type the server optimizer takes."""
        return self.optimizer.aux_types()

    def begin_round(self, round: int) -> None:
        """Start ``round``: schedules and the server's auxiliary variables."""
        self.round = round
        self.optimizer.start_round(round, self.weights)
        self._aux = self.optimizer.collect_aux_var()

    def train_request(
        self, round: int, *, with_weights: bool, secagg: bool = False
    ) -> TrainRequest:
        """The request of ``round``, with the weights or only their version."""
        t = self.setup.training
        return TrainRequest(
            round=round,
            version=self.version,
            weights=self.weights if with_weights else None,
            batch_size=t.batch_size,
            n_epoch=t.n_epoch,
            n_steps=t.n_steps,
            timeout=t.timeout,
            weighting=self.setup.aggregator.weighting,
            aux=dict(self._aux),
            secagg=secagg,
        )

    def eval_request(self, round: int, *, with_weights: bool) -> EvaluationRequest:
        """A federated evaluation of the current global weights."""
        return EvaluationRequest(
            round=round,
            version=self.version,
            weights=self.weights if with_weights else None,
            batch_size=self.setup.training.eval_batch_size,
        )

    def aggregate(self, results: Mapping[str, TrainResult]) -> RoundOutcome:
        """Combine the replies of this round into a new global model.

        Replies are visited in sorted client order, whatever their arrival
        order. Fewer than ``min_replies`` and nothing changes.
        """
        used = tuple(sorted(results))
        loss = mean_loss({c: results[c].metrics for c in used})
        reason = self.strategy.accept(self.round, used)
        if reason:
            return RoundOutcome(False, used, loss, reason)
        # A reply of weight 0 (no step taken, weighted by steps) adds nothing to
        # a weighted mean, and a per-client mean (robust aggregators) cannot take it.
        positive = {c: results[c].updates for c in used if results[c].updates.weight > 0}
        if not positive:
            return RoundOutcome(False, used, loss, "every usable reply has weight 0")
        update = self.strategy.aggregate(self.round, positive)
        aux = _sum_aux({c: results[c].aux for c in used})
        self.apply(update, aux)
        return RoundOutcome(True, used, loss)

    def aggregate_sum(
        self,
        total: ModelUpdates,
        used: Sequence[str],
        metrics: Mapping[str, Mapping[str, MetricState]],
    ) -> RoundOutcome:
        """Like :meth:`aggregate` from an already summed update (secure aggregation)."""
        names = tuple(sorted(used))
        loss = mean_loss(metrics)
        reason = self.strategy.accept(self.round, names)
        if reason:
            return RoundOutcome(False, names, loss, reason)
        if not total.weight > 0:  # every weight quantized to zero, or a garbage sum
            return RoundOutcome(False, names, loss, "the secure sum's total weight is 0")
        self.apply(total.mean(), {})
        return RoundOutcome(True, names, loss)

    def apply(self, update: Weights, aux: Mapping[str, AuxVar]) -> None:
        """Step the server optimizer with an aggregated update (and client aux vars)."""
        if aux:
            self.optimizer.process_aux_var(aux)
        self.weights = self.optimizer.apply_server_update(self.weights, update)
        self.version += 1

    # -------------------------------------------------------------------- evaluation

    def evaluates(self, round: int) -> bool:
        """Whether ``round`` ends with an evaluation."""
        return self.strategy.evaluates(round)

    def evaluation_mode(self) -> str:
        """``"server"``, ``"train"`` or ``"clients"`` (``"auto"`` resolved)."""
        mode = self.options.evaluate
        if mode == "auto":
            return "server" if self.setup.test is not None else "clients"
        return mode

    def evaluate_on_server(self, round: int) -> dict[str, float]:
        """Metrics of the global model measured by the server (``{}``: no data).

        On the held-out test set, or with ``evaluate = "train"`` on the union
        of the clients' training shards: the global training loss Li et al.
        (2020) plot, measured by the simulator, which sees every shard.
        """
        if self._evaluator is None:
            if self.options.evaluate == "train":
                data: Dataset | None = Dataset(
                    np.concatenate([c.train.x for c in self.setup.clients]),
                    np.concatenate([c.train.y for c in self.setup.clients]),
                )
            else:
                data = self.setup.test
            if data is None:
                return {}
            self._evaluator = TrainingManager(
                self.setup.model(),
                self.setup.client_optimizer(),
                data,
                data,
                seed_tree=self.setup.seeds.child("fedavg", "evaluation"),
            )
        result = self._evaluator.evaluation_round(
            EvalInstructions(round, self.weights, batch_size=self.setup.training.eval_batch_size)
        )
        if isinstance(result, TrainFailure):
            raise RuntimeError(f"server evaluation failed: {result.error_text}")
        return metric_results(result.metrics)

    @staticmethod
    def merge_evaluations(results: Mapping[str, EvalResult]) -> dict[str, float]:
        """Metrics of a federated evaluation (states merged in client order)."""
        if not results:
            return {}
        return metric_results(aggregate_metrics({c: r.metrics for c, r in results.items()}))

    # ---------------------------------------------------------------------- records

    def record(self, record: RoundRecord) -> bool:
        """Keep ``record``; returns whether early stopping says stop."""
        self.records.append(record)
        if self.stopper is None or record.aborted:
            return False
        value = {
            "loss": record.loss,
            "eval_loss": record.eval_loss,
            "accuracy": record.accuracy,
        }[self.options.stop_metric]
        if value is None:
            return False
        if self.stopper.update(value):
            self.stopped = (
                f"early stopping: {self.options.stop_metric} did not improve by more than "
                f"{self.options.min_delta:g} for {self.options.patience} evaluations"
            )
            return True
        return False

    # ------------------------------------------------------------------- checkpoints

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue after the last round, bit for bit."""
        return {
            "round": self.round,
            "version": self.version,
            "weights": self.weights.to_dict(),
            "optimizer": self.optimizer.state_dict(),
            "records": [record_state(r) for r in self.records],
            "stopper": self.stopper.state_dict() if self.stopper is not None else None,
            "stopped": self.stopped,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output.

        Raises:
            ValueError: The state does not fit this scenario's model or optimizer.
        """
        self.weights = checkpoint_weights(state["weights"], self.weights)
        self.version = int(state["version"])
        self.round = int(state["round"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.records = [record_from_state(r) for r in state["records"]]
        if self.stopper is not None and state.get("stopper") is not None:
            self.stopper.load_state_dict(state["stopper"])
        self.stopped = str(state.get("stopped", ""))


def _sum_aux(aux: Mapping[str, Mapping[str, AuxVar]]) -> dict[str, AuxVar]:
    """Per module, the sum of the clients' auxiliary variables (sorted client order)."""
    modules = sorted({m for per_client in aux.values() for m in per_client})
    return {m: sum_in_order({c: a[m] for c, a in aux.items() if m in a}) for m in modules}
