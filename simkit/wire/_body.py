"""The body format a channel carries: encoding and decoding action messages.

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
to, see :mod:`simkit.wire._pack`). A body ends exactly where its layout says.

Application messages subclass :class:`Message` as frozen, slotted
dataclasses and are registered by type name when defined. A received
``Send`` carries a :class:`SerializedMessage`: its type is known at once, its
payload is decoded only on demand and only into a registered type.

docs/wire-protocol.md specifies the format for peers in other languages.
Decoding a ``Send`` body and its payload is the runtime's hot path: both
take a fast path for well-formed input (see :func:`_decode_send_fast` and
:func:`simkit.wire._fields.build`), falling back to the general one, which words
the errors, whenever anything differs.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final, TypeVar

import msgpack

from simkit.wire._actions import SIMPLE, ActionMessage, Send
from simkit.wire._base import DEFAULT_MAX_BODY, U32, DecodeError, FrameTooLarge, byte_view, tname
from simkit.wire._fields import field_map
from simkit.wire._message import Message, SerializedMessage
from simkit.wire._pack import pack_fields
from simkit.wire._unpack import reject_ext, unpack_doc

_A = TypeVar("_A")
_HEAD_PACKER: Final = msgpack.Packer(use_bin_type=True, autoreset=True)
_INLINE_LIMIT: Final = 1 << 16  # larger payloads stay separate parts, uncopied


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
        _, names = SIMPLE[msg.code]
        head = _HEAD_PACKER.pack([msg.code, *[getattr(msg, n) for n in names]])
        parts, size = [U32.pack(len(head)) + head], U32.size + len(head)
    if size > max_body:
        kind = f"Send of {msg.type}" if type(msg) is Send else tname(msg)
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
        doc, data, data_len = pack_fields(field_map(payload), type(payload))
    head = _HEAD_PACKER.pack([Send.code, type_name, len(doc), data_len])
    if not data_len and len(doc) <= _INLINE_LIMIT:  # most messages: one small buffer
        body = U32.pack(len(head)) + head + doc
        return [body], len(body)
    offset = U32.size + len(head) + len(doc)
    pad = _PADS[-offset % 8] if data_len else b""
    start = (U32.pack(len(head)), head, doc, pad)
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
        view = memoryview(body) if type(body) is bytes else byte_view(body)
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
    head_end = U32.size + head_len
    if mark != _SEND_MARK or head_end > size:
        return None
    try:  # [4, type, payload_len, data_len] and nothing after it, as 0x94 promised
        _, type_name, payload_len, data_len = msgpack.unpackb(
            view[U32.size : head_end], ext_hook=reject_ext
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
    if size < U32.size:
        raise DecodeError(f"body of {size} bytes ends inside the head length")
    head_end = U32.size + U32.unpack_from(view)[0]
    if head_end > size:
        raise DecodeError(
            f"body of {size} bytes ends inside the head (head_len={head_end - U32.size})"
        )
    head = _read_head(view[U32.size : head_end])
    if head[0] == Send.code:
        return _decode_send(head, view, head_end)
    cls, names = SIMPLE[head[0]]
    if head_end != size:
        raise DecodeError(f"{size - head_end} trailing bytes after a {cls.__name__} head")
    if len(head) != len(names) + 1:
        raise DecodeError(f"{cls.__name__} head must have {len(names)} fields, got {head[1:]!r}")
    return _construct(cls, head[1:])


def _read_head(doc: memoryview) -> list[Any]:
    try:
        head = unpack_doc(doc, reject_ext)
    except DecodeError as exc:
        raise DecodeError(f"head: {exc}") from exc
    if type(head) is not list or not head:
        raise DecodeError(f"head must be a non-empty array [code, ...], got {tname(head)}")
    code = head[0]
    if type(code) is not int or (code != Send.code and code not in SIMPLE):
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
        raise DecodeError(f"Send type must be a str, got {tname(type_name)}")
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
