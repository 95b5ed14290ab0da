"""The registry of named types carried as ext 2 objects: messages and codecs.

Messages and codecs share one space of *wire names*. A name is claimed with a
*rank*, and the rank decides who keeps a name two classes want (docs/wire-protocol.md,
"Type names"):

* ``BUILTIN``: a class of the packages shipped with simkit (``simkit``,
  ``protocols``). Their names are frozen: every pinned digest holds them.
* ``EXPLICIT``: a name chosen on purpose elsewhere (a message's ``typename``,
  :func:`register_codec`).
* ``DEFAULT``: a message class elsewhere without a ``typename``, under its
  class name.

A ``DEFAULT`` name gives way: a class that finds its class name taken is
registered under its *qualified name* ``module.QualName`` instead, and a
``DEFAULT`` holder moves to its qualified name when a ``BUILTIN`` or
``EXPLICIT`` claim for its name arrives, whatever the import order. Two claims
of higher rank for one name are an error.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from simkit.wire._base import qualname

T = TypeVar("T")

BUILTIN_PACKAGES: Final = ("simkit", "protocols")
"""Top-level packages whose message classes keep their class names on the wire."""

DEFAULT: Final = 0
EXPLICIT: Final = 1
BUILTIN: Final = 2


@dataclass(frozen=True, slots=True)
class Codec:
    cls: type[Any]
    name: str
    to_obj: Callable[[Any], Any]
    from_obj: Callable[[Any], Any]
    fields: bool  # a message: to_obj returns a field map (error paths read ``.field``)
    rank: int = DEFAULT


BY_NAME: dict[str, Codec] = {}
BY_TYPE: dict[type[Any], Codec] = {}


class NameTaken(Exception):
    """A claim for a name held by a class of the same or a higher rank."""

    def __init__(self, name: str, holder: type[Any], cls: type[Any]) -> None:
        super().__init__(name, holder, cls)
        self.name, self.holder, self.cls = name, holder, cls


def rank_of(cls: type[Any], *, explicit: bool) -> int:
    """The rank of a claim by ``cls``: built-in, explicit or default."""
    if cls.__module__.partition(".")[0] in BUILTIN_PACKAGES:
        return BUILTIN
    return EXPLICIT if explicit else DEFAULT


def qualified_name(cls: type[Any]) -> str:
    """The name a ``DEFAULT`` claim falls back to: ``module.QualName``."""
    return f"{cls.__module__}.{cls.__qualname__}"


def claim(codec: Codec, replaces: Callable[[type[Any], type[Any]], bool]) -> str:
    """Register ``codec`` under its name or, if it gives way, its qualified name.

    Args:
        codec: The registration.
        replaces: Whether a class may take over the names of a holder (the
            same class, defined again).

    Returns:
        The name it was registered under.

    Raises:
        NameTaken: The name is held at the same or a higher rank, or a
            ``DEFAULT`` claim finds its qualified name taken too.
    """
    holder = BY_NAME.get(codec.name)
    if holder is None or replaces(holder.cls, codec.cls):
        return _put(dataclasses.replace(codec, rank=codec.rank if holder is None else holder.rank))
    if holder.rank == DEFAULT < codec.rank and holder.name != qualified_name(holder.cls):
        _move(holder)
        return _put(codec)
    if codec.rank > DEFAULT:
        raise NameTaken(codec.name, holder.cls, codec.cls)
    qualified = dataclasses.replace(codec, name=qualified_name(codec.cls))
    holder = BY_NAME.get(qualified.name)
    if holder is None or replaces(holder.cls, codec.cls):
        return _put(qualified)
    raise NameTaken(qualified.name, holder.cls, codec.cls)


def _put(codec: Codec) -> str:
    old = BY_TYPE.get(codec.cls)
    if old is not None and BY_NAME.get(old.name) is old:
        del BY_NAME[old.name]
    BY_NAME[codec.name] = codec
    BY_TYPE[codec.cls] = codec
    return codec.name


def _move(holder: Codec) -> None:
    """Move a ``DEFAULT`` holder to its qualified name (its class says so too)."""
    moved = dataclasses.replace(holder, name=qualified_name(holder.cls))
    taken = BY_NAME.get(moved.name)
    if taken is not None and taken.cls is not holder.cls:
        raise NameTaken(moved.name, taken.cls, holder.cls)
    del BY_NAME[holder.name]
    _put(moved)
    if holder.fields:
        holder.cls.typename = moved.name


def register_codec(
    cls: type[T], name: str, to_obj: Callable[[T], Any], from_obj: Callable[[Any], T]
) -> None:
    """Make instances of ``cls`` encodable, as ext 2 objects named ``name``.

    Args:
        cls: The exact type to encode (subclasses are not covered).
        name: The type's name on the wire; unique among codecs and messages
            (a message holding it under its class name by default moves to
            its qualified name).
        to_obj: Turns an instance into an encodable value (arrays allowed).
        from_obj: Rebuilds an instance from the decoded value; whatever it
            raises becomes a :class:`DecodeError` (the input was bad).

    Raises:
        ValueError: ``name`` is taken by another class, or ``cls`` already
            has another name.
    """
    current = BY_TYPE.get(cls)
    if current is not None and current.name != name:
        raise ValueError(f"{qualname(cls)} is already registered as {current.name!r}")
    codec = Codec(cls, name, to_obj, from_obj, False, rank_of(cls, explicit=True))
    try:
        claim(codec, lambda old, new: old is new)
    except NameTaken as taken:
        raise ValueError(
            f"codec name {name!r} is already registered for {qualname(taken.holder)}; "
            f"cannot register {qualname(cls)} under it"
        ) from None


def registered(name: str) -> Codec | None:
    """The registration of ``name``, if any."""
    return BY_NAME.get(name)


def message_names() -> list[str]:
    """The names of all registered message types, sorted."""
    return sorted(name for name, codec in BY_NAME.items() if codec.fields)
