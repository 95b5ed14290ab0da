"""Server-side aggregators of client model updates.

An aggregator has two halves. Client side, :meth:`Aggregator.prepare` turns a
client's raw update into :class:`~simkit.training.ModelUpdates` weighted the
way the aggregator wants (by samples, by steps, or not at all); the training
manager does this when it is told the aggregator's ``weighting``. Server side,
:meth:`Aggregator.aggregate` takes ``{client_name: ModelUpdates}`` and returns
the aggregated update. Every aggregator visits clients in sorted name order,
so the result is the same whatever order the replies arrived in.

Weighted and plain means are sums, so they also work under secure
aggregation (``supports_secagg``); the robust ones (coordinate-wise median,
trimmed mean) need each client's update in clear.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import ClassVar, Literal

import numpy as np

from simkit.training._aggregate import ModelUpdates, sum_in_order
from simkit.training._weights import Weights, stack

__all__ = [
    "Aggregator",
    "Mean",
    "Median",
    "TrimmedMean",
    "WeightedMean",
    "Weighting",
    "weight_for",
]

Weighting = Literal["samples", "steps", "none"]
_WEIGHTINGS = ("samples", "steps", "none")


def weight_for(weighting: Weighting, n_samples: int, n_steps: int) -> float:
    """The weight of a client update under ``weighting``.

    Args:
        weighting: ``"samples"`` (the client's training-set size, as FedAvg),
            ``"steps"`` (optimization steps taken this round, as DecLearn) or
            ``"none"`` (every client counts once).
        n_samples: The client's number of training samples.
        n_steps: Steps the client took this round.
    """
    if weighting == "samples":
        return float(n_samples)
    if weighting == "steps":
        return float(n_steps)
    if weighting == "none":
        return 1.0
    raise ValueError(f"weighting must be one of {_WEIGHTINGS}, got {weighting!r}")


def _client_means(updates: Mapping[str, ModelUpdates]) -> list[Weights]:
    if not updates:
        raise ValueError("nothing to aggregate: no client updates")
    return [updates[name].mean() for name in sorted(updates)]


class Aggregator(ABC):
    """Turns ``{client_name: ModelUpdates}`` into one update."""

    weighting: Weighting = "none"
    supports_secagg: ClassVar[bool] = False

    def prepare(self, update: Weights, n_samples: int, n_steps: int) -> ModelUpdates:
        """Client side: weight a raw update as this aggregator expects."""
        return ModelUpdates.weighted(update, weight_for(self.weighting, n_samples, n_steps))

    @abstractmethod
    def aggregate(self, updates: Mapping[str, ModelUpdates]) -> Weights:
        """Server side: the aggregated update.

        Raises:
            ValueError: ``updates`` is empty.
        """

    def __repr__(self) -> str:
        return f"{type(self).__name__}(weighting={self.weighting!r})"


class WeightedMean(Aggregator):
    """``sum_i w_i u_i / sum_i w_i``, summed in sorted client order.

    Args:
        by: ``"samples"`` (default, FedAvg), ``"steps"`` or ``"none"``.
    """

    supports_secagg: ClassVar[bool] = True

    def __init__(self, by: Weighting = "samples") -> None:
        if by not in _WEIGHTINGS:
            raise ValueError(f"by must be one of {_WEIGHTINGS}, got {by!r}")
        self.weighting = by

    def aggregate(self, updates: Mapping[str, ModelUpdates]) -> Weights:
        if not updates:
            raise ValueError("nothing to aggregate: no client updates")
        return sum_in_order(updates).mean()


class Mean(WeightedMean):
    """The plain mean of the clients' updates (every client weighs 1)."""

    def __init__(self) -> None:
        super().__init__(by="none")


class Median(Aggregator):
    """The coordinate-wise median of the clients' (unweighted) updates.

    Each client's update is ``ModelUpdates.mean()``, so it does not matter how
    the client weighted it.
    """

    def aggregate(self, updates: Mapping[str, ModelUpdates]) -> Weights:
        stacked = stack(_client_means(updates))
        return Weights({name: np.median(arr, axis=0) for name, arr in stacked.items()})


class TrimmedMean(Aggregator):
    """The coordinate-wise mean after dropping the ``k`` lowest and highest values.

    ``k = floor(fraction * n_clients)``. With ``fraction = 0`` it is the
    plain mean; the median is the limit as ``fraction`` nears 0.5.

    Args:
        fraction: Share trimmed at each end, in ``[0, 0.5)``.
    """

    def __init__(self, fraction: float = 0.1) -> None:
        if not 0.0 <= fraction < 0.5:
            raise ValueError(f"fraction must be in [0, 0.5), got {fraction}")
        self.fraction = fraction

    def aggregate(self, updates: Mapping[str, ModelUpdates]) -> Weights:
        means = _client_means(updates)
        k = int(self.fraction * len(means))
        stacked = stack(means)
        out = {}
        for name, arr in stacked.items():
            ordered = np.sort(arr, axis=0)
            out[name] = ordered[k : len(means) - k].mean(axis=0)
        return Weights(out)

    def __repr__(self) -> str:
        return f"TrimmedMean(fraction={self.fraction})"
