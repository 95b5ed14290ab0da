"""The registry of named types carried as ext 2 objects (messages and codecs)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from simkit.wire._base import _qualname

T = TypeVar("T")

# ----------------------------------------------------------------------------- registry


@dataclass(frozen=True, slots=True)
class _Codec:
    cls: type[Any]
    name: str
    to_obj: Callable[[Any], Any]
    from_obj: Callable[[Any], Any]
    fields: bool  # to_obj returns a field map (error paths read ``.field``)


_BY_NAME: dict[str, _Codec] = {}
_BY_TYPE: dict[type[Any], _Codec] = {}


def register_codec(
    cls: type[T], name: str, to_obj: Callable[[T], Any], from_obj: Callable[[Any], T]
) -> None:
    """Make instances of ``cls`` encodable, as ext 2 objects named ``name``.

    Args:
        cls: The exact type to encode (subclasses are not covered).
        name: The type's name on the wire; unique among codecs and messages.
        to_obj: Turns an instance into an encodable value (arrays allowed).
        from_obj: Rebuilds an instance from the decoded value; whatever it
            raises becomes a :class:`DecodeError` (the input was bad).

    Raises:
        ValueError: ``name`` is taken by another class, or ``cls`` already
            has another name.
    """
    owner = _registered_class(name)
    if owner is not None and owner is not cls:
        raise ValueError(
            f"codec name {name!r} is already registered for {_qualname(owner)}; "
            f"cannot register {_qualname(cls)} under it"
        )
    current = _BY_TYPE.get(cls)
    if current is not None and current.name != name:
        raise ValueError(f"{_qualname(cls)} is already registered as {current.name!r}")
    _install(cls, name, to_obj, from_obj, fields=False)


def _install(
    cls: type[Any],
    name: str,
    to_obj: Callable[[Any], Any],
    from_obj: Callable[[Any], Any],
    *,
    fields: bool,
) -> None:
    """Register without checks (messages check names their own way)."""
    codec = _Codec(cls, name, to_obj, from_obj, fields)
    _BY_NAME[name] = codec
    _BY_TYPE[cls] = codec


def _registered_class(name: str) -> type[Any] | None:
    codec = _BY_NAME.get(name)
    return None if codec is None else codec.cls
