"""The application messages of the FedAvg family (DecLearn's vocabulary).

``TrainRequest`` carries the global weights only to clients that do not hold
them yet (``weights is None`` otherwise, with the ``version`` the client must
already have); ``TrainReply`` and ``EvaluationReply`` wrap the training core's
results; ``Error`` reports a round that failed in user code (or a client that
lacks the weights it was told to use). All are registered with the codec under
their class names, so the wire and the fault triggers (``type =
"TrainRequest"``) use these names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from simkit.messages import Message
from simkit.training import (
    AuxVar,
    Effort,
    EvalInstructions,
    EvalResult,
    MetricState,
    TrainInstructions,
    TrainResult,
    Weighting,
    Weights,
)
from simkit.validation import (
    Expect,
    check_effort,
    check_eval_result,
    check_metrics,
    check_train_result,
)

__all__ = [
    "Error",
    "EvaluationReply",
    "EvaluationRequest",
    "TrainDone",
    "TrainReply",
    "TrainRequest",
    "expect_evaluation",
    "expect_train",
    "expect_train_done",
]


@dataclass(frozen=True, slots=True)
class TrainRequest(Message):
    """Train one round from the global weights of ``version``.

    Args:
        round: Round number (1-based).
        version: The global weights' version (how many updates were applied).
        weights: The weights, or ``None`` when the client already holds ``version``.
        batch_size: Samples per step.
        n_epoch: Maximum epochs (effort constraint).
        n_steps: Maximum steps (effort constraint).
        timeout: Maximum seconds of (modelled) compute.
        weighting: How the client weights its update (the aggregator's rule).
        aux: Server auxiliary variables (SCAFFOLD's global control variate).
        secagg: Whether the update goes through secure aggregation afterwards.
    """

    round: int
    version: int
    weights: Weights | None
    batch_size: int = 32
    n_epoch: int | None = 1
    n_steps: int | None = None
    timeout: float | None = None
    weighting: Weighting = "samples"
    aux: dict[str, AuxVar] = field(default_factory=dict)
    secagg: bool = False

    def instructions(self, weights: Weights) -> TrainInstructions:
        """The training core's instructions, starting from ``weights``."""
        return TrainInstructions(
            round=self.round,
            weights=weights,
            batch_size=self.batch_size,
            n_epoch=self.n_epoch,
            n_steps=self.n_steps,
            timeout=self.timeout,
            weighting=self.weighting,
            aux=dict(self.aux),
        )


@dataclass(frozen=True, slots=True)
class TrainReply(Message):
    """A client's training round: its weighted update, aux vars, loss and effort."""

    round: int
    result: TrainResult


@dataclass(frozen=True, slots=True)
class TrainDone(Message):
    """Secure aggregation: a client trained; its update goes through SecAgg, not here.

    Only what is aggregated in clear travels: the training-loss state and
    the effort. The server starts the secure sum among the clients that sent
    this before the round deadline.
    """

    round: int
    metrics: dict[str, MetricState]
    effort: Effort


@dataclass(frozen=True, slots=True)
class EvaluationRequest(Message):
    """Evaluate the global weights of ``version`` on the client's validation data."""

    round: int
    version: int
    weights: Weights | None
    batch_size: int = 256
    n_steps: int | None = None
    timeout: float | None = None

    def instructions(self, weights: Weights) -> EvalInstructions:
        """The training core's instructions for ``weights``."""
        return EvalInstructions(
            round=self.round,
            weights=weights,
            batch_size=self.batch_size,
            n_steps=self.n_steps,
            timeout=self.timeout,
        )


@dataclass(frozen=True, slots=True)
class EvaluationReply(Message):
    """A client's evaluation: mergeable metric states and the effort."""

    round: int
    result: EvalResult


@dataclass(frozen=True, slots=True)
class Error(Message):
    """A round the client could not do.

    Args:
        round: The request's round.
        stage: ``"train"``, ``"evaluate"`` or ``"weights"`` (it lacks the
            weights of the version it was told to use).
        text: What went wrong (``"ValueError: ..."``).
    """

    round: int
    stage: Literal["train", "evaluate", "weights", "secagg"]
    text: str


# ----------------------------------------------------------------------------- validation


def expect_train(
    round: int | None, weights: Weights, aux_types: Mapping[str, type[AuxVar]]
) -> Expect:
    """What a server expects from a client asked to train in ``round``.

    A :class:`TrainReply` of that round whose update has the names, dtypes
    and shapes of ``weights`` (finite values, a finite weight >= 0), with
    auxiliary variables only for modules in ``aux_types``; or an
    :class:`Error`. ``round=None``: no request is outstanding.
    """

    def check(msg: TrainReply) -> None:
        assert round is not None
        check_train_result(msg.result, round=round, weights=weights, aux_types=aux_types)

    return Expect((TrainReply, Error), round, {TrainReply: check})


def expect_train_done(round: int | None) -> Expect:
    """A :class:`TrainDone` (finite metric states, an effort) of ``round``, or an :class:`Error`."""

    def check(msg: TrainDone) -> None:
        check_metrics(msg.metrics, "metrics")
        check_effort(msg.effort, "effort")

    return Expect((TrainDone, Error), round, {TrainDone: check})


def expect_evaluation(round: int | None) -> Expect:
    """An :class:`EvaluationReply` of ``round`` (finite metric states), or an :class:`Error`."""

    def check(msg: EvaluationReply) -> None:
        assert round is not None
        check_eval_result(msg.result, round=round)

    return Expect((EvaluationReply, Error), round, {EvaluationReply: check})
