"""Application messages: the :class:`Message` base, its registry, and
:class:`SerializedMessage` (type known at once, fields decoded on demand)."""

from __future__ import annotations

import functools
import hashlib
from typing import Any, ClassVar

from simkit.wire._base import DecodeError, _byte_view, _qualname
from simkit.wire._base import tname as _tname
from simkit.wire._fields import build, field_map
from simkit.wire._pack import _pack_fields
from simkit.wire._registry import _install, _registered_class
from simkit.wire._unpack import _Decoding, _unpack_doc

# ----------------------------------------------------------------------------- messages

_MESSAGES: dict[str, type[Message]] = {}


class Message:
    """Base of application messages.

    Subclasses are frozen, slotted dataclasses, registered under their class
    name (or their ``typename`` class attribute) when defined::

        @dataclass(frozen=True, slots=True)
        class TrainReply(Message):
            round: int
            weights: dict[str, np.ndarray]

    Fields hold encodable values (see :mod:`simkit.wire._pack`). On decoding,
    lists become tuples where a field is annotated ``tuple``, and values are
    checked against simple annotations (``int``, ``str``, ``list[...]``,
    ``X | None``, other classes ...).

    Attributes:
        typename: The registered type name.
    """

    __slots__ = ()
    typename: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        name = cls.__dict__.get("typename", cls.__name__)
        if type(name) is not str or not name:
            raise TypeError(f"{_qualname(cls)}.typename must be a non-empty str, got {name!r}")
        cls.typename = name
        _register(cls, name)

    def fields(self) -> dict[str, Any]:
        """The message's field map (its init fields by name), as encoded."""
        return field_map(self)


def _register(cls: type[Message], name: str) -> None:
    old = _registered_class(name)
    if old is not None and not _same_class(old, cls):
        raise TypeError(
            f"message type name {name!r} is already registered by {_qualname(old)}; "
            f"cannot register {_qualname(cls)} (give it another `typename`)"
        )
    _install(cls, name, Message.fields, functools.partial(build, cls), fields=True)
    _MESSAGES[name] = cls


def _same_class(old: type[Any], new: type[Any]) -> bool:
    """Whether ``new`` replaces ``old``: the same definition, run again or rebuilt."""
    # dataclass(slots=True) rebuilds the class from the first one's namespace (and
    # fixes its __qualname__ only after this hook has run).
    fields = old.__dict__.get("__dataclass_fields__")
    if fields is not None and new.__dict__.get("__dataclass_fields__") is fields:
        return True
    return (old.__module__, old.__qualname__) == (new.__module__, new.__qualname__)


def message_type(name: str) -> type[Message]:
    """The message class registered as ``name``.

    Raises:
        KeyError: No message type has that name.
    """
    try:
        return _MESSAGES[name]
    except KeyError:
        raise KeyError(f"no message type is registered as {name!r}") from None


def registered_types() -> list[str]:
    """The names of all registered message types, sorted."""
    return sorted(_MESSAGES)


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
            raise TypeError(f"SerializedMessage.type must be a str, got {_tname(type)}")
        self.type = type
        self.payload: memoryview = _byte_view(payload)
        self.data: memoryview = _byte_view(data)
        self.nbytes = self.payload.nbytes + self.data.nbytes

    @classmethod
    def from_message(cls, msg: Message) -> SerializedMessage:
        """Encode ``msg`` (joining its arrays' bytes into one buffer).

        Raises:
            EncodeError: A field cannot be encoded.
        """
        doc, parts, _ = _pack_fields(field_map(msg), type(msg))
        return cls(msg.typename, doc, b"".join(parts))

    def decode(self) -> Message:
        """Decode into the registered message type.

        Arrays in the result are read-only views of the received body.

        Raises:
            DecodeError: The type is not registered, or the payload is
                malformed or does not fit the type's fields.
        """
        cls = _MESSAGES.get(self.type)
        if cls is None:
            raise DecodeError(f"unknown message type {self.type!r}")
        try:
            fields = _unpack_doc(self.payload, _Decoding(self.data))
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
