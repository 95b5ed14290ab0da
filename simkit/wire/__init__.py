"""The wire: how values, application messages and action messages become bytes.

One package, one public seam. Its modules, bottom up:

* ``_base``: errors (:class:`DecodeError`, :class:`EncodeError`,
  :class:`FrameTooLarge`) and limits;
* ``_registry``: named types carried as ext 2 objects (:func:`register_codec`)
  and the naming rule of message types;
* ``_dtypes``, ``_pack``, ``_unpack``, ``_buffer``: the value codec (msgpack with
  arrays out of band; :func:`packb`, :func:`canonical_digest`);
* ``_fields``: checking a decoded field map against a message class;
* ``_message``: the :class:`Message` base and :class:`SerializedMessage`;
* ``_actions``: the action messages (:class:`Join` ... :class:`Drop`);
* ``_body``: the body format a channel carries (:func:`encode_action`,
  :func:`decode_action`).

``simkit.codec`` and ``simkit.messages`` re-export the same names (the value
codec and the messages respectively); docs/wire-protocol.md specifies the
format for peers in other languages.
"""

from __future__ import annotations

from simkit.wire._actions import (
    PROTOCOL_VERSION,
    Accept,
    ActionMessage,
    Drop,
    Join,
    Ping,
    Pong,
    Reject,
    Send,
    version_compatible,
)
from simkit.wire._base import DEFAULT_MAX_BODY, DecodeError, EncodeError, FrameTooLarge
from simkit.wire._body import (
    body_size,
    decode_action,
    encode_action,
    encode_action_bytes,
    encode_message,
)
from simkit.wire._buffer import canonical_digest, packb, unpackb
from simkit.wire._message import Message, SerializedMessage, message_type, registered_types
from simkit.wire._pack import pack_value
from simkit.wire._registry import register_codec
from simkit.wire._unpack import unpack_value

__all__ = [
    "DEFAULT_MAX_BODY",
    "PROTOCOL_VERSION",
    "Accept",
    "ActionMessage",
    "DecodeError",
    "Drop",
    "EncodeError",
    "FrameTooLarge",
    "Join",
    "Message",
    "Ping",
    "Pong",
    "Reject",
    "Send",
    "SerializedMessage",
    "body_size",
    "canonical_digest",
    "decode_action",
    "encode_action",
    "encode_action_bytes",
    "encode_message",
    "message_type",
    "pack_value",
    "packb",
    "register_codec",
    "registered_types",
    "unpack_value",
    "unpackb",
    "version_compatible",
]
