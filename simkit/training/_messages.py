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
from typing import Any, Literal

import numpy as np

from simkit.training._aggregate import AuxVar, MetricState, ModelUpdates, is_real
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


def _check_int(owner: str, label: str, value: object) -> None:
    """A non-negative int (Python or numpy, not a bool)."""
    if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{owner}.{label} must be an int >= 0, got {value!r}")


def _check_map(owner: str, label: str, value: object, kind: type[Any]) -> None:
    """A dict of str keys to ``kind`` values."""
    if not isinstance(value, dict):
        raise TypeError(f"{owner}.{label} must be a dict, got {type(value).__name__}")
    for key, item in value.items():
        if not isinstance(key, str) or not isinstance(item, kind):
            raise TypeError(
                f"{owner}.{label}[{key!r}] must map a str to a {kind.__name__}, "
                f"got {type(item).__name__}"
            )


def _check_result(owner: str, result: TrainResult | EvalResult) -> None:
    _check_int(owner, "round", result.round)
    _check_map(owner, "metrics", result.metrics, MetricState)
    if not isinstance(result.effort, Effort):
        raise TypeError(f"{owner}.effort must be an Effort, got {type(result.effort).__name__}")


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

    def __post_init__(self) -> None:
        for label in ("n_epoch", "n_steps", "n_samples"):
            _check_int("Effort", label, getattr(self, label))
        spent = self.t_spent
        if not is_real(spent) or not math.isfinite(spent) or spent < 0:
            raise ValueError(f"Effort.t_spent must be a finite number >= 0, got {spent!r}")


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

    def __post_init__(self) -> None:
        _check_result("TrainResult", self)
        if not isinstance(self.updates, ModelUpdates):
            raise TypeError(
                f"TrainResult.updates must be ModelUpdates, got {type(self.updates).__name__}"
            )
        _check_map("TrainResult", "aux", self.aux, AuxVar)


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

    def __post_init__(self) -> None:
        _check_result("EvalResult", self)


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
