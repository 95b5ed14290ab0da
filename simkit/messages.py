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
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import itertools
import re
import sys
import types
import typing
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Final, Literal, TypeAlias, TypeVar, Union

import msgpack
import numpy as np

from simkit.codec import (
    _U32,
    DEFAULT_MAX_BODY,
    DecodeError,
    FrameTooLarge,
    _byte_view,
    _install,
    _pack,
    _qualname,
    _registered_class,
    _reject_ext,
    _unpack_doc,
    unpack_value,
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
        return {name: getattr(self, name) for name in _spec(type(self)).names}


def _register(cls: type[Message], name: str) -> None:
    old = _registered_class(name)
    if old is not None and not _same_class(old, cls):
        raise TypeError(
            f"message type name {name!r} is already registered by {_qualname(old)}; "
            f"cannot register {_qualname(cls)} (give it another `typename`)"
        )
    _install(cls, name, Message.fields, functools.partial(_build, cls), fields=True)
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


# ----------------------------------------------------------------------------- field specs

Check = Callable[[Any], Any]
"""Checks a decoded value against a field's annotation: returns it (lists
turned into tuples where annotated) or raises :class:`_Mismatch`."""


@dataclass(frozen=True, slots=True)
class _Spec:
    names: tuple[str, ...]  # init fields, in order
    known: frozenset[str]
    required: frozenset[str]
    # Fields whose values are checked, with the types that need no call.
    checks: tuple[tuple[str, frozenset[type[Any]], Check], ...]


_SPECS: dict[type[Message], _Spec] = {}


def _spec(cls: type[Message]) -> _Spec:
    spec = _SPECS.get(cls)
    if spec is None:
        spec = _SPECS[cls] = _make_spec(cls)
    return spec


def _make_spec(cls: type[Message]) -> _Spec:
    if not dataclasses.is_dataclass(cls):
        raise TypeError(
            f"{_qualname(cls)} is not a dataclass; declare it with "
            "@dataclass(frozen=True, slots=True)"
        )
    init = [f for f in dataclasses.fields(cls) if f.init]
    required = frozenset(
        f.name
        for f in init
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    )
    hints = _hints(cls, init)
    compiled = ((f.name, _compile(hints.get(f.name, Any))) for f in init)
    checks = tuple(
        (name, _PASSES.get(check, frozenset()), check)
        for name, check in compiled
        if check is not None
    )
    names = tuple(f.name for f in init)
    return _Spec(names, frozenset(names), required, checks)


def _hints(cls: type[Message], fields: list[dataclasses.Field[Any]]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception:  # a forward reference that does not resolve: go field by field
        return {f.name: _resolve(cls, f.type) for f in fields}


def _resolve(cls: type[Message], annotation: Any) -> Any:
    if not isinstance(annotation, str):
        return annotation
    module = sys.modules.get(cls.__module__)
    namespace = dict(vars(module)) if module is not None else {}
    try:
        return eval(annotation, namespace, {cls.__name__: cls})
    except Exception:
        return Any


# ----------------------------------------------------------------------------- decoding fields


class _Mismatch(Exception):
    """A decoded value does not fit its annotation (``where`` is inside the field)."""

    def __init__(self, expected: str, got: str) -> None:
        super().__init__(f"expected {expected}, got {got}")
        self.where = ""

    def inside(self, step: str) -> _Mismatch:
        self.where = step + self.where
        return self


_MISSING: Final = object()


def _build(cls: type[Message], fields: Any) -> Message:
    """Rebuild a ``cls`` from a decoded field map, checking it against the class."""
    if type(fields) is not dict:
        raise DecodeError(f"{cls.typename}: expected a field map, got {_tname(fields)}")
    spec = _spec(cls)
    if not fields.keys() <= spec.known:
        unknown = next(k for k in fields if k not in spec.known)
        raise DecodeError(f"{cls.typename}: unknown field {unknown!r}")
    if not spec.required <= fields.keys():
        missing = ", ".join(repr(k) for k in spec.names if k in spec.required - fields.keys())
        raise DecodeError(f"{cls.typename}: missing field(s) {missing}")
    key = ""
    try:
        for key, passes, check in spec.checks:  # the map is ours (fresh from msgpack)
            value = fields.get(key, _MISSING)
            if type(value) not in passes and value is not _MISSING:
                fields[key] = check(value)
    except _Mismatch as m:
        raise DecodeError(f"{cls.typename}.{key}{m.where}: {m}") from None
    try:
        return cls(**fields)
    except (TypeError, ValueError) as exc:
        raise DecodeError(f"{cls.typename}: invalid fields: {exc}") from exc


def _hint_name(hint: Any) -> str:
    if isinstance(hint, type) and typing.get_origin(hint) is None:
        return hint.__qualname__
    return repr(hint).replace("typing.", "")


def _compile(hint: Any) -> Check | None:
    """The check of values annotated ``hint``; ``None`` when anything goes."""
    if hint is Any or hint is object or isinstance(hint, typing.TypeVar):
        return None
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is None:
        return _compile_class(hint)
    if origin is Union or origin is types.UnionType:
        return _compile_union(hint, args)
    if origin is Literal:
        return _literal(hint, args)
    if origin is tuple:
        return _compile_tuple(hint, args)
    if origin is list:
        return _sequence(list, _hint_name(hint), _compile(args[0]) if args else None)
    if origin is dict:
        return _compile_dict(hint, args)
    if isinstance(origin, type):
        return _instance_of(origin, _hint_name(hint))
    return None


_NUMBERS: Final[dict[type[Any], tuple[type[Any], ...]]] = {
    bool: (bool, np.bool_),
    int: (int, np.integer),
    float: (float, int, np.floating, np.integer),
    complex: (complex, float, int, np.number),
}
_BOOLS: Final = (bool, np.bool_)


def _compile_class(hint: Any) -> Check | None:
    if hint is None or hint is type(None):
        return _literal(hint, (None,))
    if not isinstance(hint, type):  # NewType, an unresolved string ...: not checked
        return None
    if hint is tuple:
        return _sequence(tuple, "tuple", None)
    if hint in _NUMBERS:
        return _number(hint)
    if hint.__module__.startswith("torch"):  # tensors travel as arrays
        return _instance_of((hint, np.ndarray), _hint_name(hint))
    return _instance_of(hint, _hint_name(hint))


def _instance_of(accepted: type[Any] | tuple[type[Any], ...], name: str) -> Check:
    def check(value: Any) -> Any:
        if isinstance(value, accepted):
            return value
        raise _Mismatch(name, _tname(value))

    return _passes(check, accepted if isinstance(accepted, tuple) else (accepted,))


_PASSES: dict[Check, frozenset[type[Any]]] = {}


def _passes(check: Check, types: Iterable[type[Any]]) -> Check:
    """Note that ``check`` returns values of exactly these types unchanged."""
    _PASSES[check] = frozenset(types)
    return check


def _number(hint: type[Any]) -> Check:
    accepted, name, no_bool = _NUMBERS[hint], hint.__name__, hint is not bool
    exact = {t for t in accepted if t.__module__ == "builtins" and (t is bool or no_bool)}

    def check(value: Any) -> Any:
        if isinstance(value, accepted) and not (no_bool and isinstance(value, _BOOLS)):
            return value
        raise _Mismatch(name, _tname(value))

    return _passes(check, exact)


def _literal(hint: Any, allowed: tuple[Any, ...]) -> Check:
    name = "None" if allowed == (None,) else _hint_name(hint)

    def check(value: Any) -> Any:
        if any(type(value) is type(a) and value == a for a in allowed):
            return value
        raise _Mismatch(name, repr(value) if len(repr(value)) < 40 else _tname(value))

    return check


def _compile_union(hint: Any, args: tuple[Any, ...]) -> Check | None:
    optional = type(None) in args
    arms = [_compile(arm) for arm in args if arm is not type(None)]
    if any(arm is None for arm in arms):
        return None
    checks = [arm for arm in arms if arm is not None]
    name = _hint_name(hint)

    def check(value: Any) -> Any:
        if value is None and optional:
            return value
        for arm in checks:
            try:
                return arm(value)
            except _Mismatch:
                continue
        raise _Mismatch(name, _tname(value))

    return check


def _compile_tuple(hint: Any, args: tuple[Any, ...]) -> Check:
    name = _hint_name(hint)
    if not args or args == ((),):
        return _sequence(tuple, name, None)
    if len(args) == 2 and args[1] is Ellipsis:
        return _sequence(tuple, name, _compile(args[0]))
    items = [_compile(arg) for arg in args]

    def check(value: Any) -> Any:
        if type(value) not in (list, tuple):
            raise _Mismatch(name, _tname(value))
        if len(value) != len(items):
            raise _Mismatch(name, f"{_tname(value)} of {len(value)} items")
        return tuple(_each(items, value))

    return check


def _sequence(
    kind: type[list[Any]] | type[tuple[Any, ...]], name: str, item: Check | None
) -> Check:
    def check(value: Any) -> Any:
        if type(value) is not list and type(value) is not tuple:
            raise _Mismatch(name, _tname(value))
        if item is None:
            return value if type(value) is kind else kind(value)
        try:
            checked = [item(v) for v in value]
            return checked if kind is list else tuple(checked)
        except _Mismatch:  # again, slowly, to say where
            return kind(_each(itertools.repeat(item), value))

    return check


def _each(checks: Iterable[Check | None], values: Iterable[Any]) -> list[Any]:
    out = []
    for i, (check, value) in enumerate(zip(checks, values, strict=False)):  # checks may repeat
        try:
            out.append(value if check is None else check(value))
        except _Mismatch as m:
            raise m.inside(f"[{i}]") from None
    return out


def _compile_dict(hint: Any, args: tuple[Any, ...]) -> Check:
    name = _hint_name(hint)
    key_check, value_check = (_compile(args[0]), _compile(args[1])) if args else (None, None)
    keys, values = key_check or _same, value_check or _same

    def check(value: Any) -> Any:
        if type(value) is not dict:
            raise _Mismatch(name, _tname(value))
        if key_check is None and value_check is None:
            return value
        try:
            return {keys(k): values(v) for k, v in value.items()}
        except _Mismatch:  # again, slowly, to say where
            return {
                _item(keys, k, f" key {k!r}"): _item(values, v, f"[{k!r}]")
                for k, v in value.items()
            }

    return check


def _same(value: Any) -> Any:
    return value


def _item(check: Check, value: Any, where: str) -> Any:
    try:
        return check(value)
    except _Mismatch as m:
        raise m.inside(where) from None


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
    def _wrap(cls, type: str, payload: memoryview, data: memoryview) -> SerializedMessage:
        """Build from flat byte views without checks (the decoder's fast path)."""
        self = cls.__new__(cls)
        self.type, self.payload, self.data = type, payload, data
        self.nbytes = payload.nbytes + data.nbytes
        return self

    @classmethod
    def from_message(cls, msg: Message) -> SerializedMessage:
        """Encode ``msg`` (joining its arrays' bytes into one buffer).

        Raises:
            EncodeError: A field cannot be encoded.
        """
        doc, parts, _ = _pack(msg.fields(), "payload", fields=True)
        return cls(msg.typename, doc, b"".join(parts))

    def decode(self) -> Message:
        """Decode into the registered message type.

        Arrays in the result are read-only views of the received body.

        Raises:
            DecodeError: The type is not registered, or the payload is
                malformed or does not fit the type's fields.
        """
        try:
            cls = message_type(self.type)
        except KeyError:
            raise DecodeError(f"unknown message type {self.type!r}") from None
        try:
            fields = unpack_value(self.payload, self.data)
        except DecodeError as exc:
            raise DecodeError(f"{self.type} payload: {exc}") from exc
        return _build(cls, fields)

    def digest(self) -> str:
        """The sha256 hex digest of the payload followed by the data section."""
        digest = hashlib.sha256(self.payload)
        digest.update(self.data)
        return digest.hexdigest()

    def __repr__(self) -> str:
        return f"<SerializedMessage {self.type} ({self.nbytes} bytes)>"


# ----------------------------------------------------------------------------- actions


def _tname(value: object) -> str:
    return type(value).__name__


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
    payload = msg.payload
    data: list[memoryview]
    if isinstance(payload, SerializedMessage):
        doc: bytes | memoryview = payload.payload
        data_len = payload.data.nbytes
        data = [payload.data] if data_len else []
    else:
        doc, data, data_len = _pack(payload.fields(), "payload", fields=True)
    head = _HEAD_PACKER.pack([Send.code, msg.type, len(doc), data_len])
    offset = _U32.size + len(head) + len(doc)
    pad = _PADS[-offset % 8] if data_len else b""
    start = (_U32.pack(len(head)), head, doc, pad)
    size = offset + len(pad) + data_len
    if len(doc) > _INLINE_LIMIT:
        return [*start, *data], size
    return [b"".join(start), *data], size


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
        return _decode_action(_byte_view(body), max_body)
    except DecodeError:
        raise
    except Exception as exc:  # contract: DecodeError only, whatever the input
        raise DecodeError(f"malformed body: {exc!r}") from exc


def _decode_action(view: memoryview, max_body: int) -> ActionMessage:
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
    payload = SerializedMessage._wrap(type_name, view[start:payload_end], view[data_start:end])
    return _construct(Send, (type_name, payload))


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
