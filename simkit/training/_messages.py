"""The training manager's inputs and outputs, as frozen validated dataclasses.

Protocols wrap these in their own messages (``TrainRequest``, ``TrainReply``,
``Error`` ...): the training core does not depend on any protocol. All of them
are registered with the codec (see :func:`register_training_codecs`), so a
protocol may also send them as they are.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from simkit.training._aggregate import AuxVar, MetricState, ModelUpdates
from simkit.training._aggregators import Weighting
from simkit.training._weights import Weights

__all__ = [
    "Effort",
    "EvalInstructions",
    "EvalResult",
    "TrainFailure",
    "TrainInstructions",
    "TrainResult",
]


def _check_count(label: str, value: int | None, minimum: int = 1) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{label} must be an int >= {minimum} or None, got {value!r}")


def _check_timeout(value: float | None) -> None:
    if value is not None and (math.isnan(value) or value < 0):
        raise ValueError(f"timeout must be >= 0 seconds or None, got {value!r}")


@dataclass(frozen=True, slots=True)
class Effort:
    """What a round actually cost.

    Args:
        n_epoch: Complete passes over the data.
        n_steps: Optimization (or evaluation) steps taken.
        n_samples: Samples processed, over all steps.
        t_spent: Seconds spent: modelled (virtual) or measured (with a clock).
    """

    n_epoch: int
    n_steps: int
    n_samples: int
    t_spent: float


@dataclass(frozen=True, slots=True)
class TrainInstructions:
    """One training round for a client.

    Training stops at whichever of ``n_epoch``, ``n_steps`` and ``timeout``
    is reached first; when all three are ``None`` it runs one epoch.

    Args:
        round: Round index (drives learning-rate schedules).
        weights: Weights to start from (``None``: keep the model's).
        batch_size: Samples per step.
        n_epoch: Maximum number of epochs.
        n_steps: Maximum number of steps.
        timeout: Maximum seconds; a step is taken only if it ends within it.
        shuffle: Shuffle the data at every epoch (seeded).
        drop_remainder: Skip each epoch's short last batch.
        weighting: How the update is weighted (the aggregator's ``weighting``).
        aux: Auxiliary variables from the server, by module name.
    """

    round: int
    weights: Weights | None = None
    batch_size: int = 32
    n_epoch: int | None = None
    n_steps: int | None = None
    timeout: float | None = None
    shuffle: bool = True
    drop_remainder: bool = False
    weighting: Weighting = "samples"
    aux: Mapping[str, AuxVar] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_count("round", self.round, minimum=0)
        _check_count("batch_size", self.batch_size)
        _check_count("n_epoch", self.n_epoch)
        _check_count("n_steps", self.n_steps)
        _check_timeout(self.timeout)
        if self.weights is not None and not isinstance(self.weights, Weights):
            raise TypeError(f"weights must be Weights or None, got {type(self.weights).__name__}")
        if self.weighting not in ("samples", "steps", "none"):
            raise ValueError(f"weighting must be samples, steps or none, got {self.weighting!r}")


@dataclass(frozen=True, slots=True)
class TrainResult:
    """A client's training round, ready to send.

    Args:
        round: The round index of the instructions.
        updates: The weighted model update.
        aux: Auxiliary variables for the server, by module name.
        metrics: ``{"loss": MeanState}`` over the round's batch losses.
        effort: What the round cost.
    """

    round: int
    updates: ModelUpdates
    aux: dict[str, AuxVar]
    metrics: dict[str, MetricState]
    effort: Effort


@dataclass(frozen=True, slots=True)
class EvalInstructions:
    """One evaluation round: a single ordered pass over the validation data.

    Args:
        round: Round index.
        weights: Weights to evaluate (``None``: the model's current ones).
        batch_size: Samples per step.
        n_steps: Maximum number of batches.
        timeout: Maximum seconds; a batch is evaluated only if it ends within it.
    """

    round: int
    weights: Weights | None = None
    batch_size: int = 128
    n_steps: int | None = None
    timeout: float | None = None

    def __post_init__(self) -> None:
        _check_count("round", self.round, minimum=0)
        _check_count("batch_size", self.batch_size)
        _check_count("n_steps", self.n_steps)
        _check_timeout(self.timeout)
        if self.weights is not None and not isinstance(self.weights, Weights):
            raise TypeError(f"weights must be Weights or None, got {type(self.weights).__name__}")


@dataclass(frozen=True, slots=True)
class EvalResult:
    """A client's evaluation: mergeable metric states and the effort.

    Args:
        round: The round index of the instructions.
        metrics: Metric name -> state (merge across clients with
            :func:`~simkit.training.aggregate_metrics`).
        effort: What the evaluation cost.
    """

    round: int
    metrics: dict[str, MetricState]
    effort: Effort


@dataclass(frozen=True, slots=True)
class TrainFailure:
    """A round that raised in user code (model, optimizer, data).

    Args:
        round: The round index of the instructions.
        stage: ``"train"`` or ``"evaluate"``.
        error_text: ``"ExceptionType: message"``.
    """

    round: int
    stage: Literal["train", "evaluate"]
    error_text: str
