"""Application messages: the :class:`Message` base, its registry, and
:class:`SerializedMessage` (type known at once, fields decoded on demand)."""

from __future__ import annotations

import functools
import hashlib
from typing import Any, ClassVar

from simkit.wire._base import DecodeError, byte_view, qualname, tname
from simkit.wire._fields import build, field_map
from simkit.wire._pack import pack_fields
from simkit.wire._registry import (
    Codec,
    NameTaken,
    claim,
    message_names,
    rank_of,
    registered,
)
from simkit.wire._unpack import Decoding, unpack_doc

# ----------------------------------------------------------------------------- messages


class Message:
    """Base of application messages.

    Subclasses are frozen, slotted dataclasses, registered under a type name
    when defined::

        @dataclass(frozen=True, slots=True)
        class TrainReply(Message):
            round: int
            weights: dict[str, np.ndarray]

    The type name is the ``typename`` class attribute when the class sets one
    (``"poll.Ask"``), else the class name (``"TrainReply"``); a class whose
    class name another class already holds is registered under its qualified
    name (``"mylib.messages.TrainReply"``), and the messages shipped with
    simkit (packages ``simkit`` and ``protocols``) keep theirs whatever is
    imported first (docs/wire-protocol.md, "Type names").

    Fields hold encodable values (see :mod:`simkit.wire._pack`). On decoding,
    lists become tuples where a field is annotated ``tuple``, and values are
    checked against simple annotations (``int``, ``str``, ``list[...]``,
    ``X | None``, other classes ...).

    Attributes:
        typename: The registered type name.

    Raises:
        TypeError: (on definition) ``typename`` is not a non-empty str, or it
            is held by another class that does not give way.
    """

    __slots__ = ()
    typename: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        explicit = "typename" in cls.__dict__
        name = cls.__dict__["typename"] if explicit else cls.__name__
        if type(name) is not str or not name:
            raise TypeError(f"{qualname(cls)}.typename must be a non-empty str, got {name!r}")
        cls.typename = _register(cls, name, explicit=explicit)

    def fields(self) -> dict[str, Any]:
        """The message's field map (its init fields by name), as encoded."""
        return field_map(self)


def _register(cls: type[Message], name: str, *, explicit: bool) -> str:
    rank = rank_of(cls, explicit=explicit)
    codec = Codec(cls, name, Message.fields, functools.partial(build, cls), True, rank)
    try:
        return claim(codec, _same_class)
    except NameTaken as taken:
        raise TypeError(
            f"message type name {taken.name!r} is already registered by "
            f"{qualname(taken.holder)}; cannot register {qualname(cls)} "
            "(give it another `typename`)"
        ) from None


def _same_class(old: type[Any], new: type[Any]) -> bool:
    """Whether ``new`` replaces ``old``: the same definition, run again or rebuilt."""
    # dataclass(slots=True) rebuilds the class from the first one's namespace (and
    # fixes its __qualname__ only after this hook has run).
    fields = old.__dict__.get("__dataclass_fields__")
    if fields is not None and new.__dict__.get("__dataclass_fields__") is fields:
        return True
    return (old.__module__, old.__qualname__) == (new.__module__, new.__qualname__)


def _message_class(name: str) -> type[Message] | None:
    codec = registered(name)
    return codec.cls if codec is not None and codec.fields else None


def message_type(name: str) -> type[Message]:
    """The message class registered as ``name``.

    Raises:
        KeyError: No message type has that name.
    """
    cls = _message_class(name)
    if cls is None:
        raise KeyError(f"no message type is registered as {name!r}")
    return cls


def registered_types() -> list[str]:
    """The names of all registered message types, sorted."""
    return message_names()


# ----------------------------------------------------------------------------- serialized


class SerializedMessage:
    """A received application message: its type at once, its fields on demand.

    Attributes:
        type: The message's type name.
        payload: The msgpack document of its field map.
        data: The data section its arrays refer to.
        nbytes: ``len(payload) + len(data)``.
    """

    __slots__ = ("data", "nbytes", "payload", "type")

    def __init__(
        self, type: str, payload: bytes | memoryview, data: bytes | memoryview = b""
    ) -> None:
        if not isinstance(type, str):
            raise TypeError(f"SerializedMessage.type must be a str, got {tname(type)}")
        self.type = type
        self.payload: memoryview = byte_view(payload)
        self.data: memoryview = byte_view(data)
        self.nbytes = self.payload.nbytes + self.data.nbytes

    @classmethod
    def from_message(cls, msg: Message) -> SerializedMessage:
        """Encode ``msg`` (joining its arrays' bytes into one buffer).

        Raises:
            EncodeError: A field cannot be encoded.
        """
        doc, parts, _ = pack_fields(field_map(msg), type(msg))
        return cls(msg.typename, doc, b"".join(parts))

    def decode(self) -> Message:
        """Decode into the registered message type.

        Arrays in the result are read-only views of the received body.

        Raises:
            DecodeError: The type is not registered, or the payload is
                malformed or does not fit the type's fields.
        """
        cls = _message_class(self.type)
        if cls is None:
            raise DecodeError(f"unknown message type {self.type!r}")
        try:
            fields = unpack_doc(self.payload, Decoding(self.data))
        except DecodeError as exc:
            raise DecodeError(f"{self.type} payload: {exc}") from exc
        try:
            return build(cls, fields)
        except DecodeError:
            raise
        except Exception as exc:  # contract: DecodeError only, whatever the input
            raise DecodeError(f"{self.type}: {type(exc).__name__}: {exc}") from exc

    def digest(self) -> str:
        """The sha256 hex digest of the payload followed by the data section."""
        digest = hashlib.sha256(self.payload)
        digest.update(self.data)
        return digest.hexdigest()

    def __repr__(self) -> str:
        return f"<SerializedMessage {self.type} ({self.nbytes} bytes)>"
