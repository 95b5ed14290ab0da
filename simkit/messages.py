"""Action messages, application messages, and the body format a channel carries.

The messages of :mod:`simkit.wire`, under their historical module name: this
module only re-exports (see :mod:`simkit.wire._body` for the body format,
:mod:`simkit.wire._message` for :class:`Message` and its type names, and
docs/wire-protocol.md for the specification).
"""

from __future__ import annotations

from simkit.wire import (
    PROTOCOL_VERSION,
    Accept,
    ActionMessage,
    Drop,
    Join,
    Message,
    Ping,
    Pong,
    Reject,
    Send,
    SerializedMessage,
    body_size,
    decode_action,
    encode_action,
    encode_action_bytes,
    encode_message,
    message_type,
    registered_types,
    version_compatible,
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
