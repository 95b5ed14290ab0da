"""Metrics with mergeable states, a scalar tracker and early stopping.

A :class:`Metric` accumulates over batches and hands out a
:class:`~simkit.training.MetricState`; states from many clients add up
(in sorted client order, :func:`aggregate_metrics`) into the federation's
value, exactly as if one party had seen all the samples.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

import numpy as np

from simkit.training._aggregate import MeanState, MetricState, sum_in_order
from simkit.training._weights import Array

__all__ = [
    "Accuracy",
    "EarlyStopping",
    "Loss",
    "MeanSquaredError",
    "Metric",
    "ScalarMeanTracker",
    "aggregate_metrics",
    "default_metrics",
    "metric_results",
]


class Metric(ABC):
    """Accumulates a value over batches; :meth:`state` is mergeable across clients."""

    name: ClassVar[str] = "metric"

    def __init__(self) -> None:
        self._total = 0.0
        self._count = 0.0

    @abstractmethod
    def update(self, y_true: Array, y_pred: Array, loss: float) -> None:
        """Add one batch: targets, the model's predictions and its mean batch loss."""

    def state(self) -> MeanState:
        """The accumulated state."""
        return MeanState(self._total, self._count)

    def result(self) -> float:
        """The current value (``nan`` before any update)."""
        return self.state().result()

    def reset(self) -> None:
        """Forget everything accumulated."""
        self._total, self._count = 0.0, 0.0


class Loss(Metric):
    """The mean loss per sample (batch means weighted by batch sizes)."""

    name: ClassVar[str] = "loss"

    def update(self, y_true: Array, y_pred: Array, loss: float) -> None:
        n = len(y_true)
        self._total += loss * n
        self._count += n


class Accuracy(Metric):
    """The share of samples whose arg-max prediction equals the integer label."""

    name: ClassVar[str] = "accuracy"

    def update(self, y_true: Array, y_pred: Array, loss: float) -> None:
        pred = y_pred.argmax(axis=1) if y_pred.ndim > 1 else (y_pred > 0.5)
        self._total += float(np.count_nonzero(pred == y_true.reshape(pred.shape)))
        self._count += len(y_true)


class MeanSquaredError(Metric):
    """The mean over samples and outputs of the squared error."""

    name: ClassVar[str] = "mse"

    def update(self, y_true: Array, y_pred: Array, loss: float) -> None:
        diff = y_pred - np.asarray(y_true).reshape(y_pred.shape)
        self._total += float(np.sum(diff * diff))
        self._count += diff.size


def default_metrics(task: Literal["classification", "regression"]) -> list[Metric]:
    """Loss and accuracy for classification; loss and MSE for regression."""
    if task == "classification":
        return [Loss(), Accuracy()]
    return [Loss(), MeanSquaredError()]


def aggregate_metrics(
    states: Mapping[str, Mapping[str, MetricState]],
) -> dict[str, MetricState]:
    """Merge ``{client: {metric: state}}`` into ``{metric: state}``.

    Clients are visited in sorted name order; a metric missing at some
    clients is merged over those that have it.
    """
    names = sorted({m for per_client in states.values() for m in per_client})
    return {m: sum_in_order({c: s[m] for c, s in states.items() if m in s}) for m in names}


def metric_results(states: Mapping[str, MetricState]) -> dict[str, float]:
    """``{metric: state.result()}``, sorted by metric name."""
    return {name: states[name].result() for name in sorted(states)}


class ScalarMeanTracker:
    """Running means of named scalars (as AllenAct's), e.g. per-round diagnostics.

    Example:
        >>> t = ScalarMeanTracker()
        >>> t.add_scalars({"loss": 1.0}); t.add_scalars({"loss": 3.0})
        >>> t.pop_and_reset()
        {'loss': 2.0}
    """

    def __init__(self) -> None:
        self._sums: dict[str, float] = {}
        self._counts: dict[str, float] = {}

    def add_scalars(self, scalars: Mapping[str, float], n: int | Mapping[str, int] = 1) -> None:
        """Add each value ``n`` times (``n`` may be given per name)."""
        for name in sorted(scalars):
            k = n if isinstance(n, int) else n[name]
            self._sums[name] = self._sums.get(name, 0.0) + float(scalars[name]) * k
            self._counts[name] = self._counts.get(name, 0.0) + k

    def means(self) -> dict[str, float]:
        """The current means, sorted by name."""
        return {name: self._sums[name] / self._counts[name] for name in sorted(self._sums)}

    def pop_and_reset(self) -> dict[str, float]:
        """The means, then forget everything."""
        out = self.means()
        self.reset()
        return out

    def reset(self) -> None:
        """Forget everything."""
        self._sums.clear()
        self._counts.clear()


class EarlyStopping:
    """Stop when a monitored value has not improved for ``patience`` checks.

    An improvement beats the best value so far by more than ``min_delta``
    (downwards for ``mode="min"``, upwards for ``"max"``). ``NaN`` never
    improves.

    Args:
        patience: Checks without improvement tolerated (>= 1).
        min_delta: Margin an improvement must exceed (>= 0).
        mode: ``"min"`` (a loss) or ``"max"`` (an accuracy).
    """

    def __init__(
        self, patience: int = 5, min_delta: float = 0.0, mode: Literal["min", "max"] = "min"
    ) -> None:
        if patience < 1 or min_delta < 0 or mode not in ("min", "max"):
            raise ValueError(
                f"need patience >= 1, min_delta >= 0 and mode min|max, got "
                f"{patience}, {min_delta}, {mode!r}"
            )
        self.patience, self.min_delta, self.mode = patience, min_delta, mode
        self.best: float | None = None
        self.best_index: int | None = None
        self.index = -1
        self.bad_checks = 0

    def _improves(self, value: float) -> bool:
        if math.isnan(value):
            return False
        if self.best is None:
            return True
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def update(self, value: float) -> bool:
        """Record one value; returns whether to stop now."""
        self.index += 1
        if self._improves(value):
            self.best, self.best_index, self.bad_checks = value, self.index, 0
        else:
            self.bad_checks += 1
        return self.should_stop

    @property
    def should_stop(self) -> bool:
        """Whether ``patience`` checks in a row brought no improvement."""
        return self.bad_checks >= self.patience

    def state_dict(self) -> dict[str, Any]:
        """The tracker's state (for checkpoints)."""
        return {
            "best": self.best,
            "best_index": self.best_index,
            "index": self.index,
            "bad_checks": self.bad_checks,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output."""
        self.best, self.best_index = state["best"], state["best_index"]
        self.index, self.bad_checks = int(state["index"]), int(state["bad_checks"])


def evaluate_metrics(metrics: Sequence[Metric], y_true: Array, y_pred: Array, loss: float) -> None:
    """Update every metric with one batch."""
    for metric in metrics:
        metric.update(y_true, y_pred, loss)
