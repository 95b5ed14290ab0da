"""Strategies for a protocol plugin's ``[protocol]`` options, whatever the protocol.

A plugin tells the kit what its options are in one of three ways, tried in
this order:

1. it declares them: a method ``option_strategies()`` returning
   ``{key: SearchStrategy}``;
2. it names an option model: an attribute ``options_model`` (a pydantic
   model class or a dataclass), or the return annotation of its
   ``options(setup)`` method (FedAvg's ``FedAvgOptions``);
3. neither: no option is drawn (the table holds only ``name``).

A field whose type has no derived strategy (a string, a list) keeps its
default.

From a model, every field is drawn from its type and constraints (pydantic's
``gt``/``ge``/``lt``/``le``), shrinking toward the field's default: a
``Literal`` from its values, ``bool`` both ways, ``X | None`` also ``None``,
a number between its bounds. Where a bound is unknown (a dataclass has
none), a number stays on its default's side of zero; an integer goes up to
about twice its default, a float (a timeout, say) only down from its
default, so that a drawn run stays short. Drawn tables the
plugin's ``validate`` refuses (cross-field rules) are filtered out.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, Union

from hypothesis import strategies as st

from simkit.protocol import ProtocolPlugin, find_protocol

__all__ = ["derive_option_strategies", "option_model", "option_strategies", "resolve_protocol"]

Strategy = st.SearchStrategy[Any]
_MISSING = object()


def resolve_protocol(protocol: str | ProtocolPlugin) -> tuple[str, ProtocolPlugin]:
    """The scenario's ``protocol.name`` and the plugin object.

    Args:
        protocol: A registered name (``"fedavg"``), ``"package.module:OBJECT"``
            or a plugin object (then the name is its ``name`` attribute).

    Raises:
        ValueError: Nothing registered under that name, or an object that is
            not a protocol plugin.
    """
    if not isinstance(protocol, str):
        if not isinstance(protocol, ProtocolPlugin):
            raise ValueError(f"not a simkit protocol plugin: {protocol!r}")
        return protocol.name, protocol
    if ":" not in protocol:
        try:
            return protocol, find_protocol(protocol)
        except (LookupError, TypeError) as exc:
            raise ValueError(str(exc)) from None
    module, _, attr = protocol.partition(":")
    try:
        plugin = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cannot load protocol {protocol!r}: {exc}") from None
    if not isinstance(plugin, ProtocolPlugin):
        raise ValueError(f"{protocol!r} is not a simkit protocol plugin")
    return protocol, plugin


def option_strategies(plugin: ProtocolPlugin) -> dict[str, Strategy]:
    """``{key: strategy}`` for the plugin's options (see the module docstring)."""
    declared = getattr(plugin, "option_strategies", None)
    if callable(declared):
        return dict(declared())
    model = option_model(plugin)
    return derive_option_strategies(model) if model is not None else {}


def option_model(plugin: ProtocolPlugin) -> type | None:
    """The plugin's option model class (pydantic model or dataclass), if it has one."""
    model = getattr(plugin, "options_model", None)
    if model is None:
        method = getattr(plugin, "options", None)
        if callable(method):
            try:
                model = typing.get_type_hints(method).get("return")
            except (NameError, TypeError):
                model = None
    if isinstance(model, type) and (_is_pydantic(model) or dataclasses.is_dataclass(model)):
        return model
    return None


def derive_option_strategies(model: type) -> dict[str, Strategy]:
    """One strategy per field of a pydantic model or a dataclass, shrinking to its default.

    A field of a type with no derived strategy (a string, a list ...) keeps
    its default; give it a strategy with ``scenarios(options=...)``.

    Raises:
        TypeError: ``model`` is neither, or a required field's type has no strategy.
    """
    out: dict[str, Strategy] = {}
    for name, annotation, default, metadata in _fields(model):
        try:
            strategy = _for_type(annotation, default, metadata)
        except TypeError as exc:
            if default is _MISSING:
                raise TypeError(f"{model.__name__}.{name}: {exc}") from None
            strategy = st.just(default)
        out[name] = strategy if default is _MISSING else _toward(default, strategy)
    return out


# ----------------------------------------------------------------------------- fields


def _is_pydantic(model: type) -> bool:
    return isinstance(getattr(model, "model_fields", None), Mapping)


def _fields(model: type) -> list[tuple[str, Any, Any, list[Any]]]:
    """``(name, annotation, default or _MISSING, constraint objects)`` per field."""
    if _is_pydantic(model):
        fields: Mapping[str, Any] = model.model_fields  # type: ignore[attr-defined]
        return [
            (name, info.annotation, _pydantic_default(info), list(info.metadata))
            for name, info in fields.items()
        ]
    if dataclasses.is_dataclass(model):
        hints = typing.get_type_hints(model, include_extras=True)
        rows: list[tuple[str, Any, Any, list[Any]]] = []
        for f in dataclasses.fields(model):
            default: Any = f.default
            if default is dataclasses.MISSING:
                factory: Any = f.default_factory
                default = _MISSING if factory is dataclasses.MISSING else factory()
            rows.append((f.name, hints[f.name], default, []))
        return rows
    raise TypeError(f"{model!r} is neither a pydantic model nor a dataclass")


def _pydantic_default(info: Any) -> Any:
    return _MISSING if info.is_required() else info.get_default(call_default_factory=True)


def _toward(default: Any, strategy: Strategy) -> Strategy:
    """``strategy``, but the default comes first (examples shrink to it)."""
    return st.one_of(st.just(default), strategy)


# ----------------------------------------------------------------------------- types


def _for_type(annotation: Any, default: Any, metadata: list[Any]) -> Strategy:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _for_type(args[0], default, metadata + _constraints(args[1:]))
    if origin in (Union, types.UnionType):
        members = [a for a in args if a is not type(None)]
        inner = [_for_type(a, default, metadata) for a in members]
        return st.one_of(st.none(), *inner) if len(members) < len(args) else st.one_of(inner)
    if origin is Literal:
        return st.sampled_from(list(args))
    if annotation is bool:
        return st.booleans()
    if annotation is int:
        return _integers(default, _bounds(metadata))
    if annotation is float:
        return _floats(default, _bounds(metadata))
    if inspect.isclass(annotation) and (
        _is_pydantic(annotation) or dataclasses.is_dataclass(annotation)
    ):
        return _nested(annotation)
    raise TypeError(f"no strategy for the type {annotation!r}")


def _nested(model: type) -> Strategy:
    parts = derive_option_strategies(model)
    return st.fixed_dictionaries(parts)


def _constraints(items: tuple[Any, ...]) -> list[Any]:
    """Constraint objects inside ``Annotated[...]`` (a pydantic ``FieldInfo`` holds a list)."""
    out: list[Any] = []
    for item in items:
        out += list(getattr(item, "metadata", None) or [item])
    return out


class _Bounds(typing.NamedTuple):
    low: float | None
    high: float | None
    low_open: bool
    high_open: bool


def _bounds(metadata: list[Any]) -> _Bounds:
    low = high = None
    low_open = high_open = False
    for item in metadata:
        for attr, is_low, is_open in (("gt", 1, 1), ("ge", 1, 0), ("lt", 0, 1), ("le", 0, 0)):
            value = getattr(item, attr, None)
            if isinstance(value, (int, float)):
                if is_low:
                    low, low_open = value, bool(is_open)
                else:
                    high, high_open = value, bool(is_open)
    return _Bounds(low, high, low_open, high_open)


def _number(default: Any) -> float | None:
    ok = isinstance(default, (int, float)) and not isinstance(default, bool)
    return float(default) if ok and math.isfinite(default) else None


def _integers(default: Any, b: _Bounds) -> Strategy:
    d = _number(default)
    low = b.low if b.low is not None else (1 if d is not None and d >= 1 else 0)
    low = math.floor(low) + 1 if b.low_open else math.ceil(low)
    high = b.high if b.high is not None else max(low, d if d is not None else low) * 2 + 3
    high = math.ceil(high) - 1 if b.high_open else math.floor(high)
    return st.integers(int(low), int(max(low, high)))


def _floats(default: Any, b: _Bounds) -> Strategy:
    d = _number(default)
    low, low_open = b.low, b.low_open
    if low is None:  # stay on the default's side of zero
        low, low_open = (2 * d, False) if d is not None and d < 0 else (0.0, d is None or d > 0)
    high, high_open = b.high, b.high_open
    if high is None:  # at most the default: a drawn timeout keeps the run short
        high, high_open = (d if d is not None and d > low else low + 1.0), False
    return st.floats(
        float(low), float(high), exclude_min=low_open, exclude_max=high_open, allow_nan=False
    )
