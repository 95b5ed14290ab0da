"""Checkpoints (``.npz`` + JSON, never pickle) and codec registration.

A checkpoint is one ``np.savez`` archive: every array of the state tree is
stored under a generated key, and the rest of the tree is one JSON document
(key ``__meta__``, stored as bytes) in which each array is replaced by
``{"__ndarray__": key}``. Loading uses ``allow_pickle=False``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from simkit.training._aggregate import Aggregate, MeanState, ModelUpdates
from simkit.training._manager import TrainingManager
from simkit.training._messages import (
    Effort,
    EvalInstructions,
    EvalResult,
    TrainFailure,
    TrainInstructions,
    TrainResult,
)
from simkit.training._modules import ScaffoldAuxVar, ScaffoldServerAuxVar
from simkit.training._weights import Weights

__all__ = [
    "load_checkpoint",
    "register_aggregate",
    "register_training_codecs",
    "save_checkpoint",
]

_ARRAY_TAG = "__ndarray__"
_META_KEY = "__meta__"
_FORMAT = "simkit.training.checkpoint.v1"


def _flatten(value: Any, arrays: dict[str, np.ndarray[Any, Any]]) -> Any:
    if isinstance(value, np.ndarray):
        key = f"a{len(arrays)}"
        arrays[key] = value
        return {_ARRAY_TAG: key}
    if isinstance(value, Weights):
        return _flatten(value.to_dict(), arrays)
    if isinstance(value, Mapping):
        out = {}
        for k in sorted(value):
            if not isinstance(k, str):
                raise TypeError(f"checkpoint keys must be str, got {k!r}")
            out[k] = _flatten(value[k], arrays)
        return out
    if isinstance(value, list | tuple):
        return [_flatten(v, arrays) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"cannot checkpoint a {type(value).__name__}: {value!r}")


def _unflatten(value: Any, arrays: Mapping[str, np.ndarray[Any, Any]]) -> Any:
    if isinstance(value, dict):
        if set(value) == {_ARRAY_TAG}:
            return arrays[value[_ARRAY_TAG]]
        return {k: _unflatten(v, arrays) for k, v in value.items()}
    if isinstance(value, list):
        return [_unflatten(v, arrays) for v in value]
    return value


def save_state(path: str | os.PathLike[str], state: Mapping[str, Any]) -> None:
    """Write a state tree (dicts, lists, scalars, str, arrays) atomically."""
    arrays: dict[str, np.ndarray[Any, Any]] = {}
    tree = _flatten({"format": _FORMAT, "state": state}, arrays)
    meta = np.frombuffer(json.dumps(tree, sort_keys=True).encode(), dtype=np.uint8)
    target = os.fspath(path)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(target)), suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **{_META_KEY: meta, **arrays})  # type: ignore[arg-type]
        os.replace(tmp, target)
    except BaseException:
        os.unlink(tmp)
        raise


def load_state(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read what :func:`save_state` wrote.

    Raises:
        ValueError: The file is not a simkit training checkpoint.
    """
    with np.load(os.fspath(path), allow_pickle=False) as archive:
        if _META_KEY not in archive.files:
            raise ValueError(f"{os.fspath(path)}: not a simkit checkpoint (no {_META_KEY})")
        tree = json.loads(archive[_META_KEY].tobytes().decode())
        arrays = {k: archive[k] for k in archive.files if k != _META_KEY}
    if not isinstance(tree, dict) or tree.get("format") != _FORMAT:
        raise ValueError(f"{os.fspath(path)}: unknown checkpoint format")
    state: dict[str, Any] = _unflatten(tree["state"], arrays)
    return state


def save_checkpoint(
    path: str | os.PathLike[str],
    manager: TrainingManager,
    extra: Mapping[str, Any] | None = None,
) -> None:
    """Save ``manager.state_dict()`` (and ``extra``, e.g. the round) to ``path``.

    Args:
        path: Target file (written atomically; ``.npz`` is not appended).
        manager: The training manager to save.
        extra: More JSON-able state (arrays allowed) stored alongside.
    """
    save_state(path, {"manager": manager.state_dict(), "extra": dict(extra or {})})


def load_checkpoint(path: str | os.PathLike[str], manager: TrainingManager) -> dict[str, Any]:
    """Restore ``manager`` from ``path``; returns the ``extra`` saved with it."""
    state = load_state(path)
    manager.load_state_dict(state["manager"])
    extra: dict[str, Any] = state["extra"]
    return extra


# ------------------------------------------------------------------- codec


def _dataclass_codec(cls: type[Any]) -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
    names = [f.name for f in dataclasses.fields(cls)]

    def to_obj(obj: Any) -> dict[str, Any]:
        return {n: getattr(obj, n) for n in names}

    def from_obj(obj: Any) -> Any:
        if not isinstance(obj, dict):
            raise TypeError(f"{cls.__name__} expects a field map, got {type(obj).__name__}")
        return cls(**obj)

    return to_obj, from_obj


def register_aggregate(cls: type[Aggregate], name: str | None = None) -> bool:
    """Make an :class:`Aggregate` subclass encodable by ``simkit.codec``.

    Args:
        cls: The class.
        name: Wire name (default: ``cls.codec_name`` or ``module.qualname``).

    Returns:
        Whether the codec was available.
    """
    try:
        from simkit.wire import register_codec
    except ImportError:
        return False
    wire = name or cls.codec_name or f"{cls.__module__}.{cls.__qualname__}"
    register_codec(cls, wire, lambda agg: agg.to_fields(), cls.from_fields)
    return True


def register_training_codecs() -> bool:
    """Register the training core's value types with ``simkit.codec``.

    Called once at import of :mod:`simkit.training`; harmless to call again.

    Returns:
        Whether the codec was available.
    """
    try:
        from simkit.wire import register_codec
    except ImportError:
        return False
    register_codec(Weights, "training.Weights", lambda w: w.to_dict(), Weights.from_dict)
    for agg in (ModelUpdates, MeanState, ScaffoldAuxVar, ScaffoldServerAuxVar):
        register_aggregate(agg)
    plain = (Effort, TrainInstructions, TrainResult, EvalInstructions, EvalResult, TrainFailure)
    for cls in plain:
        to_obj, from_obj = _dataclass_codec(cls)
        register_codec(cls, f"training.{cls.__name__}", to_obj, from_obj)
    return True
