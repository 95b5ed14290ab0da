"""The Aggregate API: values that clients send and the server sums.

An :class:`Aggregate` is a frozen dataclass whose instances add up field by
field: ``a + b`` sums each field with ``+`` unless the class defines
``aggregate_<field>(mine, theirs)``. Sums over clients are taken in sorted
client-name order (:func:`sum_in_order`), so the result does not depend on
arrival order, bit for bit, even for floats.

``prepare_for_secagg()`` splits an aggregate into the fields a secure
aggregation protocol may mask (summed under masks) and the fields it sends in
clear; an aggregate that cannot be summed securely raises
``NotImplementedError``. ``from_secagg()`` rebuilds it from the two parts.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping
from typing import Any, ClassVar, Self, TypeVar

import numpy as np

from simkit.training._weights import Weights

__all__ = [
    "Aggregate",
    "AuxVar",
    "MeanState",
    "MetricState",
    "ModelUpdates",
    "sum_in_order",
]

A = TypeVar("A", bound="Aggregate")


def _default_sum(mine: Any, theirs: Any) -> Any:
    if mine is None and theirs is None:
        return None
    if isinstance(mine, dict) and isinstance(theirs, dict):
        keys = sorted(mine.keys() | theirs.keys())
        return {
            k: _default_sum(mine[k], theirs[k])
            if k in mine and k in theirs
            else (mine[k] if k in mine else theirs[k])
            for k in keys
        }
    return mine + theirs


@dataclasses.dataclass(frozen=True)
class Aggregate:
    """Base class of values summed field by field across clients.

    Subclass it as a frozen dataclass. Fields may be numbers, numpy arrays,
    :class:`~simkit.training.Weights`, ``None`` (stays ``None``) or dicts of
    those (summed key by key). Override a field's rule with a method
    ``aggregate_<field>(self, mine, theirs)``.

    Example:
        >>> @dataclasses.dataclass(frozen=True)
        ... class Count(Aggregate):
        ...     n: int
        ...     peak: int
        ...     def aggregate_peak(self, mine: int, theirs: int) -> int:
        ...         return max(mine, theirs)
        >>> Count(1, 5) + Count(2, 3)
        Count(n=3, peak=5)
    """

    codec_name: ClassVar[str | None] = None

    def __add__(self, other: Self) -> Self:
        if type(other) is not type(self):
            return NotImplemented
        values = {}
        for field in dataclasses.fields(self):
            mine, theirs = getattr(self, field.name), getattr(other, field.name)
            rule = getattr(self, f"aggregate_{field.name}", None)
            values[field.name] = rule(mine, theirs) if rule else _default_sum(mine, theirs)
        return type(self)(**values)

    def _custom_fields(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self) if hasattr(self, f"aggregate_{f.name}")]

    def prepare_for_secagg(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Split into ``(fields to mask, fields sent in clear)``.

        By default every field is masked, which is right when all of them are
        plain sums. Classes with ``aggregate_<field>`` rules must override
        this method to say where those fields go.

        Raises:
            NotImplementedError: The aggregate cannot be summed securely.
        """
        custom = self._custom_fields()
        if custom:
            raise NotImplementedError(
                f"{type(self).__name__} aggregates {custom} by custom rules, which "
                "secure summation cannot do; override prepare_for_secagg"
            )
        return self.to_fields(), {}

    @classmethod
    def from_secagg(cls, masked: Mapping[str, Any], clear: Mapping[str, Any]) -> Self:
        """Rebuild from the unmasked sum of the masked fields and the clear fields."""
        return cls(**masked, **clear)

    def to_fields(self) -> dict[str, Any]:
        """Field name -> value (shallow; values are not copied)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_fields(cls, values: Mapping[str, Any]) -> Self:
        """Inverse of :meth:`to_fields`; ``Weights`` fields may come as plain dicts."""
        hints = {f.name: f.type for f in dataclasses.fields(cls)}
        fixed = {}
        for name, value in values.items():
            if name not in hints:
                raise TypeError(f"{cls.__name__} has no field {name!r}")
            wants_weights = "Weights" in str(hints[name])
            if wants_weights and isinstance(value, Mapping):
                value = Weights(value)
            fixed[name] = value
        return cls(**fixed)


def is_real(value: object) -> bool:
    """Whether ``value`` is a real number: a Python or numpy int or float, not a bool."""
    return isinstance(value, _REALS) and not isinstance(value, _BOOLS)


_REALS = (int, float, np.integer, np.floating)
_BOOLS = (bool, np.bool_)


def sum_in_order(values: Mapping[str, A]) -> A:
    """Sum aggregates in sorted key (client name) order.

    Raises:
        ValueError: ``values`` is empty.
    """
    if not values:
        raise ValueError("nothing to aggregate: no values")
    return functools.reduce(
        lambda acc, name: acc + values[name], sorted(values)[1:], values[min(values)]
    )


@dataclasses.dataclass(frozen=True)
class ModelUpdates(Aggregate):
    """A client's weighted model update.

    ``updates`` holds ``weight`` times the client's update (its new weights
    minus the weights it started from), so that a plain sum over clients
    gives ``sum_i w_i * u_i`` and ``sum_i w_i``, and :meth:`mean` the weighted
    mean. Build one with :meth:`weighted`.

    Args:
        updates: The pre-weighted update.
        weight: The client's weight (samples, steps or 1), finite and >= 0.
    """

    codec_name: ClassVar[str | None] = "training.ModelUpdates"

    updates: Weights
    weight: float

    def __post_init__(self) -> None:
        if not isinstance(self.updates, Weights):
            raise TypeError(f"updates must be Weights, got {type(self.updates).__name__}")
        if not is_real(self.weight):
            raise TypeError(f"weight must be a real number, got {type(self.weight).__name__}")
        if not math.isfinite(self.weight) or self.weight < 0:
            raise ValueError(f"weight must be finite and >= 0, got {self.weight}")

    @classmethod
    def weighted(cls, update: Weights, weight: float) -> ModelUpdates:
        """``ModelUpdates(update * weight, weight)``."""
        return cls(update * float(weight), float(weight))

    def mean(self) -> Weights:
        """``updates / weight``: the weighted mean update.

        Raises:
            ZeroDivisionError: The total weight is zero.
        """
        if self.weight == 0:
            raise ZeroDivisionError("the total weight of these model updates is zero")
        return self.updates / self.weight


@dataclasses.dataclass(frozen=True)
class AuxVar(Aggregate):
    """Base class of auxiliary variables exchanged by optimizer modules (SCAFFOLD)."""


@dataclasses.dataclass(frozen=True)
class MetricState(Aggregate):
    """Base class of mergeable metric states; :meth:`result` gives the value."""

    def result(self) -> float:
        """The metric's value."""
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class MeanState(MetricState):
    """A running mean: ``total / count`` (loss, accuracy, MSE).

    Args:
        total: Sum of the values.
        count: Number (or total weight) of the values.
    """

    codec_name: ClassVar[str | None] = "training.MeanState"

    total: float
    count: float

    def __post_init__(self) -> None:
        for name in ("total", "count"):
            value = getattr(self, name)
            if not is_real(value):
                raise TypeError(
                    f"MeanState.{name} must be a real number, got {type(value).__name__}"
                )

    def result(self) -> float:
        """``total / count``, ``nan`` when nothing was counted."""
        return self.total / self.count if self.count else math.nan

    @classmethod
    def of(cls, values: Any) -> MeanState:
        """The state of an array of values."""
        arr = np.asarray(values, dtype=np.float64)
        return cls(float(arr.sum()), float(arr.size))
