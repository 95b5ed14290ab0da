"""Action messages, application messages, and the body format a channel carries.

A channel carries *bodies*; the TCP channel prefixes each with its length::

    body := u32be head_len | head | payload | pad | data

``head`` is a msgpack array ``[code, *fields]``, one ActionMessage:

    ====  ======  ======================================
    code  action  head
    ====  ======  ======================================
    1     Join    ``[1, name, version, token]``
    2     Accept  ``[2]``
    3     Reject  ``[3, flag, detail]``
    4     Send    ``[4, type, payload_len, data_len]``
    5     Ping    ``[5, seq]``
    6     Pong    ``[6, seq]``
    7     Drop    ``[7, reason]``
    ====  ======  ======================================

Only a ``Send`` has more after its head: ``payload`` (``payload_len`` bytes,
one msgpack document: the application message's field map), then, when
``data_len > 0``, ``pad`` (zero bytes up to the next multiple of 8 from the
body start) and ``data`` (``data_len`` bytes: the arrays the payload refers
to, see :mod:`simkit.codec`). A body ends exactly where its layout says.

Application messages subclass :class:`Message` as frozen, slotted
dataclasses and are registered by type name when defined. A received
``Send`` carries a :class:`SerializedMessage`: its type is known at once, its
payload is decoded only on demand and only into a registered type.

docs/wire-protocol.md specifies the format for peers in other languages.
Decoding a ``Send`` body and its payload is the runtime's hot path: both
take a fast path for well-formed input (see :func:`_decode_send_fast` and
:func:`simkit._fields.build`), falling back to the general one, which words
the errors, whenever anything differs.
"""

from __future__ import annotations

import functools
import hashlib
import re
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Final, TypeAlias, TypeVar

import msgpack

from simkit._fields import build, field_map
from simkit._fields import tname as _tname
from simkit.codec import (
    _U32,
    DEFAULT_MAX_BODY,
    DecodeError,
    FrameTooLarge,
    _byte_view,
    _Decoding,
    _install,
    _pack_fields,
    _qualname,
    _registered_class,
    _reject_ext,
    _unpack_doc,
)

__all__ = [
    "PROTOCOL_VERSION",
    "Accept",
    "ActionMessage",
    "Drop",
    "Join",
    "Message",
    "Ping",
    "Pong",
    "Reject",
    "Send",
    "SerializedMessage",
    "body_size",
    "decode_action",
    "encode_action",
    "encode_action_bytes",
    "encode_message",
    "message_type",
    "registered_types",
    "version_compatible",
]

PROTOCOL_VERSION: Final = "1.0"
"""The wire protocol version a :class:`Join` carries (``major.minor``)."""

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

    Fields hold encodable values (see :mod:`simkit.codec`). On decoding,
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


# ----------------------------------------------------------------------------- actions


def _check_str(owner: object, *names: str) -> None:
    for name in names:
        value = getattr(owner, name)
        if not isinstance(value, str):
            raise TypeError(f"{_tname(owner)}.{name} must be a str, got {_tname(value)}")


def _check_seq(owner: Ping | Pong) -> None:
    seq = owner.seq
    if type(seq) is not int:
        raise TypeError(f"{_tname(owner)}.seq must be an int, got {_tname(seq)}")
    if not 0 <= seq < 1 << 64:
        raise ValueError(f"{_tname(owner)}.seq must be in [0, 2**64), got {seq}")


@dataclass(frozen=True, slots=True)
class Join:
    """A client asks to join: its name, protocol version (``major.minor``), token.

    The version's format is checked by :func:`version_compatible`, so a
    malformed one can be answered with a :class:`Reject`.
    """

    name: str
    version: str
    token: str = ""
    code: ClassVar[int] = 1

    def __post_init__(self) -> None:
        _check_str(self, "name", "version", "token")


@dataclass(frozen=True, slots=True)
class Accept:
    """The server accepts a :class:`Join`."""

    code: ClassVar[int] = 2


@dataclass(frozen=True, slots=True)
class Reject:
    """The server refuses a :class:`Join`: a short ``flag`` and a human ``detail``."""

    flag: str
    detail: str = ""
    code: ClassVar[int] = 3

    def __post_init__(self) -> None:
        _check_str(self, "flag", "detail")


@dataclass(frozen=True, slots=True)
class Send:
    """Carries one application message of registered type ``type``.

    Built with a :class:`Message` to send it, or with a
    :class:`SerializedMessage` (received, or forwarded unchanged without
    decoding); ``type`` must match the payload's type.
    """

    type: str
    payload: Message | SerializedMessage
    code: ClassVar[int] = 4

    def __post_init__(self) -> None:
        payload = self.payload
        if isinstance(payload, Message):
            actual = payload.typename
        elif isinstance(payload, SerializedMessage):
            actual = payload.type
        else:
            raise TypeError(
                f"Send.payload must be a Message or SerializedMessage, got {_tname(payload)}"
            )
        if actual != self.type:
            _check_str(self, "type")
            raise ValueError(f"Send.type is {self.type!r} but its payload is a {actual!r}")


@dataclass(frozen=True, slots=True)
class Ping:
    """Heartbeat probe; ``seq`` in ``[0, 2**64)`` is echoed by the :class:`Pong`."""

    seq: int
    code: ClassVar[int] = 5

    def __post_init__(self) -> None:
        _check_seq(self)


@dataclass(frozen=True, slots=True)
class Pong:
    """Heartbeat answer to the :class:`Ping` with the same ``seq``."""

    seq: int
    code: ClassVar[int] = 6

    def __post_init__(self) -> None:
        _check_seq(self)


@dataclass(frozen=True, slots=True)
class Drop:
    """A peer leaves on purpose, saying why."""

    reason: str = ""
    code: ClassVar[int] = 7

    def __post_init__(self) -> None:
        _check_str(self, "reason")


ActionMessage: TypeAlias = Join | Accept | Reject | Send | Ping | Pong | Drop

_A = TypeVar("_A")
_SIMPLE: Final[dict[int, tuple[type[ActionMessage], tuple[str, ...]]]] = {
    1: (Join, ("name", "version", "token")),
    2: (Accept, ()),
    3: (Reject, ("flag", "detail")),
    5: (Ping, ("seq",)),
    6: (Pong, ("seq",)),
    7: (Drop, ("reason",)),
}
_HEAD_PACKER: Final = msgpack.Packer(use_bin_type=True, autoreset=True)
_INLINE_LIMIT: Final = 1 << 16  # larger payloads stay separate parts, uncopied
_VERSION_RE: Final = re.compile(r"([0-9]+)\.([0-9]+)")


# ----------------------------------------------------------------------------- encoding


def encode_action(msg: ActionMessage, max_body: int = DEFAULT_MAX_BODY) -> list[bytes | memoryview]:
    """Encode ``msg`` into the parts of one body, without copying array bytes.

    Args:
        msg: The message.
        max_body: Largest allowed body, in bytes.

    Returns:
        The body as a list of parts; the arrays' parts are memoryviews of
        the arrays themselves (so do not modify them until the parts are
        sent or joined). A small message is one ``bytes`` part.

    Raises:
        EncodeError: A field of a sent message cannot be encoded.
        FrameTooLarge: The body would exceed ``max_body``.
    """
    if type(msg) is Send:
        parts, size = _encode_send(msg)
    else:
        _, names = _SIMPLE[msg.code]
        head = _HEAD_PACKER.pack([msg.code, *[getattr(msg, n) for n in names]])
        parts, size = [_U32.pack(len(head)) + head], _U32.size + len(head)
    if size > max_body:
        kind = f"Send of {msg.type}" if type(msg) is Send else _tname(msg)
        raise FrameTooLarge(f"{kind} encodes to {size} bytes, above the limit of {max_body}")
    return parts


_PADS: Final = tuple(bytes(n) for n in range(8))


def _encode_send(msg: Send) -> tuple[list[bytes | memoryview], int]:
    """The parts of a Send body and its size."""
    return _send_parts(msg.type, msg.payload)


def _send_parts(
    type_name: str, payload: Message | SerializedMessage
) -> tuple[list[bytes | memoryview], int]:
    data: list[memoryview]
    if isinstance(payload, SerializedMessage):
        doc: bytes | memoryview = payload.payload
        data_len = payload.data.nbytes
        data = [payload.data] if data_len else []
    else:
        doc, data, data_len = _pack_fields(field_map(payload), type(payload))
    head = _HEAD_PACKER.pack([Send.code, type_name, len(doc), data_len])
    if not data_len and len(doc) <= _INLINE_LIMIT:  # most messages: one small buffer
        body = _U32.pack(len(head)) + head + doc
        return [body], len(body)
    offset = _U32.size + len(head) + len(doc)
    pad = _PADS[-offset % 8] if data_len else b""
    start = (_U32.pack(len(head)), head, doc, pad)
    size = offset + len(pad) + data_len
    if len(doc) > _INLINE_LIMIT:
        return [*start, *data], size
    return [b"".join(start), *data], size


def encode_message(msg: Message, max_body: int = DEFAULT_MAX_BODY) -> bytes:
    """The body of ``Send(msg.typename, msg)`` in one buffer (one copy of array bytes).

    The shortest way from an application message to the bytes a channel's
    ``send_encoded`` takes.

    Raises:
        EncodeError: A field cannot be encoded.
        FrameTooLarge: The body would exceed ``max_body``.
    """
    parts, size = _send_parts(msg.typename, msg)
    if size > max_body:
        raise FrameTooLarge(
            f"Send of {msg.typename} encodes to {size} bytes, above the limit of {max_body}"
        )
    part = parts[0]
    return part if len(parts) == 1 and type(part) is bytes else b"".join(parts)


def encode_action_bytes(msg: ActionMessage, max_body: int = DEFAULT_MAX_BODY) -> bytes:
    """Encode ``msg`` into one buffer (one copy of array bytes).

    Raises:
        EncodeError: A field of a sent message cannot be encoded.
        FrameTooLarge: The body would exceed ``max_body``.
    """
    parts = encode_action(msg, max_body)
    if len(parts) == 1 and type(parts[0]) is bytes:
        return parts[0]
    return b"".join(parts)


def body_size(parts: Iterable[bytes | memoryview]) -> int:
    """Total length in bytes of a body given as parts."""
    return sum(p.nbytes if isinstance(p, memoryview) else len(p) for p in parts)


# ----------------------------------------------------------------------------- decoding


def decode_action(
    body: bytes | bytearray | memoryview, max_body: int = DEFAULT_MAX_BODY
) -> ActionMessage:
    """Decode one body; a ``Send`` keeps its payload undecoded.

    A ``Send``'s payload is a :class:`SerializedMessage` whose memoryviews
    keep ``body`` alive (and, for a ``bytearray``, unresizable).

    Args:
        body: The body, without any transport length prefix.
        max_body: Largest accepted body, in bytes.

    Returns:
        The action message.

    Raises:
        DecodeError: The body is too large, truncated, has trailing bytes, or
            its head is malformed or has fields of the wrong type.
    """
    try:
        view = memoryview(body) if type(body) is bytes else _byte_view(body)
        sent = _decode_send_fast(view, max_body)
        return _decode_action(view, max_body) if sent is None else sent
    except DecodeError:
        raise
    except Exception as exc:  # contract: DecodeError only, whatever the input
        raise DecodeError(f"malformed body: {exc!r}") from exc


# A Send head starts with 0x94 0x04: an array of 4 items, the first being 4.
_SEND_START: Final = struct.Struct(">IH")  # head_len, then those two bytes
_SEND_MARK: Final = 0x9404


def _decode_send_fast(view: memoryview, max_body: int) -> Send | None:
    """Decode a well-formed ``Send`` body, or return ``None``.

    Most bodies are sends, and checking a body the general way
    (:func:`_decode_action`) costs more than the rest of its journey. This
    path keeps only the checks needed to accept the same bodies with the
    same result, and returns ``None`` for anything else (another action, a
    head spelled with longer msgpack forms, any error): the general path
    then decodes it, or says what is wrong with it.
    """
    size = len(view)
    if size > max_body or size < _SEND_START.size:
        return None
    head_len, mark = _SEND_START.unpack_from(view)
    head_end = _U32.size + head_len
    if mark != _SEND_MARK or head_end > size:
        return None
    try:  # [4, type, payload_len, data_len] and nothing after it, as 0x94 promised
        _, type_name, payload_len, data_len = msgpack.unpackb(
            view[_U32.size : head_end], ext_hook=_reject_ext
        )
    except Exception:
        return None
    if type(type_name) is not str or type(payload_len) is not int or type(data_len) is not int:
        return None
    payload_end = head_end + payload_len
    data_start = payload_end + (-payload_end % 8 if data_len else 0)
    if payload_len < 0 or data_len < 0 or data_start + data_len != size:
        return None
    if not data_len:
        return _received_send(type_name, view[head_end:payload_end], _NO_DATA)
    if view[payload_end:data_start] != _PADS[data_start - payload_end]:
        return None
    return _received_send(type_name, view[head_end:payload_end], view[data_start:])


_NO_DATA: Final = memoryview(b"")
_SET_SEND_TYPE: Final[Callable[[Send, str], None]] = Send.__dict__["type"].__set__
_SET_SEND_PAYLOAD: Final[Callable[[Send, SerializedMessage], None]] = Send.__dict__[
    "payload"
].__set__


def _received_send(type_name: str, payload: memoryview, data: memoryview) -> Send:
    """The ``Send`` of a received message, given flat byte views of its parts.

    Made without calling the classes: their checks (argument types, the
    payload's type name) hold by construction, and skipping them halves the
    cost.
    """
    message: SerializedMessage = object.__new__(SerializedMessage)
    message.type, message.payload, message.data = type_name, payload, data
    message.nbytes = payload.nbytes + data.nbytes
    send: Send = object.__new__(Send)
    _SET_SEND_TYPE(send, type_name)
    _SET_SEND_PAYLOAD(send, message)
    return send


def _decode_action(view: memoryview, max_body: int) -> ActionMessage:
    """Decode any body, checking everything and saying what is wrong."""
    size = len(view)
    if size > max_body:
        raise DecodeError(f"body of {size} bytes exceeds the limit of {max_body} bytes")
    if size < _U32.size:
        raise DecodeError(f"body of {size} bytes ends inside the head length")
    head_end = _U32.size + _U32.unpack_from(view)[0]
    if head_end > size:
        raise DecodeError(
            f"body of {size} bytes ends inside the head (head_len={head_end - _U32.size})"
        )
    head = _read_head(view[_U32.size : head_end])
    if head[0] == Send.code:
        return _decode_send(head, view, head_end)
    cls, names = _SIMPLE[head[0]]
    if head_end != size:
        raise DecodeError(f"{size - head_end} trailing bytes after a {cls.__name__} head")
    if len(head) != len(names) + 1:
        raise DecodeError(f"{cls.__name__} head must have {len(names)} fields, got {head[1:]!r}")
    return _construct(cls, head[1:])


def _read_head(doc: memoryview) -> list[Any]:
    try:
        head = _unpack_doc(doc, _reject_ext)
    except DecodeError as exc:
        raise DecodeError(f"head: {exc}") from exc
    if type(head) is not list or not head:
        raise DecodeError(f"head must be a non-empty array [code, ...], got {_tname(head)}")
    code = head[0]
    if type(code) is not int or (code != Send.code and code not in _SIMPLE):
        raise DecodeError(f"unknown action code {code!r}")
    return head


def _construct(cls: type[_A], args: Sequence[Any]) -> _A:
    try:
        return cls(*args)
    except (TypeError, ValueError) as exc:
        raise DecodeError(f"invalid {cls.__name__}: {exc}") from exc


def _decode_send(head: list[Any], view: memoryview, start: int) -> Send:
    if len(head) != 4:
        raise DecodeError(f"Send head must be [4, type, payload_len, data_len], got {head!r}")
    _, type_name, payload_len, data_len = head
    if type(type_name) is not str:
        raise DecodeError(f"Send type must be a str, got {_tname(type_name)}")
    for name, value in (("payload_len", payload_len), ("data_len", data_len)):
        if type(value) is not int or value < 0:
            raise DecodeError(f"Send {name} must be a non-negative int, got {value!r}")
    payload_end = start + payload_len
    data_start = payload_end + (-payload_end % 8 if data_len else 0)
    end = data_start + data_len
    _check_extent(len(view), payload_end, end)
    if data_start > payload_end and any(view[payload_end:data_start]):
        raise DecodeError("padding before the data section is not zero")
    return _received_send(type_name, view[start:payload_end], view[data_start:end])


def _check_extent(size: int, payload_end: int, end: int) -> None:
    if payload_end > size:
        raise DecodeError(f"body of {size} bytes ends inside the payload (ends at {payload_end})")
    if end > size:
        raise DecodeError(f"body of {size} bytes ends inside the data section (ends at {end})")
    if end < size:
        raise DecodeError(f"{size - end} trailing bytes after the end of a Send body")


def version_compatible(ours: str, theirs: str) -> bool:
    """Whether two ``major.minor`` versions can talk: same major.

    A malformed version (or a non-str) is never compatible.
    """
    a = _VERSION_RE.fullmatch(ours) if isinstance(ours, str) else None
    b = _VERSION_RE.fullmatch(theirs) if isinstance(theirs, str) else None
    return a is not None and b is not None and int(a[1]) == int(b[1])
