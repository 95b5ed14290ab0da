"""Aggregates to flat vectors and back: what secure aggregation actually sums.

An :class:`~simkit.training.Aggregate` names, through ``prepare_for_secagg()``,
the fields to mask (summed under masks) and the fields to send in clear
(summed by the ordinary aggregation). :func:`flatten_fields` lays the masked
fields out in one float64 vector, in a fixed order (fields sorted by name,
``Weights`` and dicts by key), and returns a :class:`FieldSpec` that
:func:`unflatten_fields` uses to put the summed vector back into an aggregate.
For :class:`~simkit.training.ModelUpdates` the masked fields are ``updates``
(pre-weighted) and ``weight``; there are no clear fields.

Masked values are clipped to ``[-clip, clip]`` before quantization; a weight
counted in samples would be. :func:`cap_weight` scales an update and its
weight so that the weight is at most 1 (Flower's ``max_weight``): the
weighted mean is unchanged for clients up to ``max_weight`` and every
masked value stays within the update's own range.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import numpy as np
import numpy.typing as npt

from simkit.training import Aggregate, ModelUpdates, Weights

__all__ = ["FieldSpec", "cap_weight", "flatten_fields", "unflatten_fields"]

A = TypeVar("A", bound=Aggregate)


@dataclass(frozen=True, slots=True)
class _Leaf:
    """One value: an array (``shape``, ``dtype``), a float, an int or ``None``."""

    kind: Literal["array", "float", "int", "none"]
    shape: tuple[int, ...] = ()
    dtype: str = "float64"

    @property
    def size(self) -> int:
        if self.kind == "none":
            return 0
        return int(np.prod(self.shape, dtype=np.int64)) if self.kind == "array" else 1


@dataclass(frozen=True, slots=True)
class _Node:
    """A container: ``Weights`` or a dict, its children in key order."""

    kind: Literal["weights", "dict"]
    children: tuple[tuple[str, _Leaf | _Node], ...]


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """Where each masked field sits in the flat vector.

    Attributes:
        fields: ``(field name, layout)`` in vector order.
        length: The vector's length.
    """

    fields: tuple[tuple[str, _Leaf | _Node], ...]
    length: int

    @property
    def names(self) -> tuple[str, ...]:
        """The masked fields' names, in vector order."""
        return tuple(name for name, _ in self.fields)


def flatten_fields(agg: Aggregate) -> tuple[npt.NDArray[np.float64], FieldSpec]:
    """The masked fields of ``agg`` as one float64 vector, and its layout.

    Raises:
        NotImplementedError: ``agg`` cannot be summed securely (its
            ``prepare_for_secagg`` says so).
        TypeError: A masked field holds something other than numbers,
            arrays, ``Weights``, ``None`` or dicts of those.
    """
    masked, _clear = agg.prepare_for_secagg()
    parts: list[npt.NDArray[np.float64]] = []
    layout = tuple((name, _flatten(masked[name], name, parts)) for name in sorted(masked))
    vector = np.concatenate(parts) if parts else np.zeros(0, dtype=np.float64)
    return vector, FieldSpec(layout, int(vector.size))


def unflatten_fields(
    vector: npt.ArrayLike,
    spec: FieldSpec,
    template: A,
    clear: Mapping[str, Any] | None = None,
) -> A:
    """Rebuild an aggregate from a (summed) flat vector.

    Args:
        vector: ``spec.length`` values (the dequantized secure sum).
        spec: The layout :func:`flatten_fields` returned (for any aggregate
            of the same type and shapes: the server flattens a template).
        template: An aggregate of the type to build; its clear fields are
            used unless ``clear`` is given.
        clear: The clear fields (their ordinary sum), if any.

    Returns:
        ``type(template).from_secagg(masked, clear)``: arrays get back their
        shape and dtype, ints are rounded to the nearest integer.

    Raises:
        ValueError: ``vector`` does not have ``spec.length`` values.
    """
    flat = np.asarray(vector, dtype=np.float64).reshape(-1)
    if flat.size != spec.length:
        raise ValueError(f"the vector has {flat.size} values, the layout {spec.length}")
    if clear is None:
        clear = template.prepare_for_secagg()[1]
    masked: dict[str, Any] = {}
    offset = 0
    for name, layout in spec.fields:
        masked[name], offset = _unflatten(flat, offset, layout)
    return type(template).from_secagg(masked, clear)


def cap_weight(updates: ModelUpdates, max_weight: float) -> ModelUpdates:
    """Scale ``updates`` by ``1 / max(weight, max_weight)``: a weight of at most 1.

    ``sum(updates) / sum(weight)`` then stays the weighted mean, with
    weights ``min(w, max_weight)``: exact for clients up to ``max_weight``;
    heavier ones count as ``max_weight``.

    Raises:
        ValueError: ``max_weight`` is not positive.
    """
    if not max_weight > 0:
        raise ValueError(f"max_weight must be > 0, got {max_weight!r}")
    scale = 1.0 / max(updates.weight, float(max_weight))
    return ModelUpdates(updates.updates * scale, updates.weight * scale)


def _flatten(value: Any, where: str, parts: list[npt.NDArray[np.float64]]) -> _Leaf | _Node:
    if value is None:
        return _Leaf("none")
    if isinstance(value, Weights):
        children = tuple((k, _flatten(value[k], f"{where}.{k}", parts)) for k in value)
        return _Node("weights", children)
    if isinstance(value, Mapping):
        keys = sorted(value)
        if not all(isinstance(k, str) for k in keys):
            raise TypeError(f"{where}: dict keys must be str to be masked")
        return _Node("dict", tuple((k, _flatten(value[k], f"{where}.{k}", parts)) for k in keys))
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise TypeError(f"{where}: cannot mask an array of dtype {value.dtype}")
        parts.append(value.astype(np.float64).reshape(-1))
        return _Leaf("array", tuple(value.shape), value.dtype.str)
    if isinstance(value, bool):
        raise TypeError(f"{where}: cannot mask a bool")
    if isinstance(value, numbers.Integral):
        parts.append(np.array([float(value)]))
        return _Leaf("int")
    if isinstance(value, numbers.Real):
        parts.append(np.array([float(value)]))
        return _Leaf("float")
    raise TypeError(f"{where}: cannot mask a {type(value).__name__}")


def _unflatten(
    flat: npt.NDArray[np.float64], offset: int, layout: _Leaf | _Node
) -> tuple[Any, int]:
    if isinstance(layout, _Node):
        values: dict[str, Any] = {}
        for key, child in layout.children:
            values[key], offset = _unflatten(flat, offset, child)
        return (Weights(values) if layout.kind == "weights" else values), offset
    end = offset + layout.size
    if layout.kind == "none":
        return None, end
    if layout.kind == "int":
        return round(float(flat[offset])), end
    if layout.kind == "float":
        return float(flat[offset]), end
    values_ = flat[offset:end].reshape(layout.shape)
    dtype = np.dtype(layout.dtype)
    if dtype.kind in "biu":  # a sum of integers comes back within the error bound
        values_ = np.rint(values_)
    return values_.astype(dtype), end
