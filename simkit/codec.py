"""Msgpack encoding of values, with numpy arrays carried out of band.

The value codec of :mod:`simkit.wire`, under its historical name: this module
only re-exports (see :mod:`simkit.wire._pack` for the format of values and
docs/wire-protocol.md for the specification).
"""

from __future__ import annotations

from simkit.wire import (
    DEFAULT_MAX_BODY,
    DecodeError,
    EncodeError,
    FrameTooLarge,
    canonical_digest,
    pack_value,
    packb,
    register_codec,
    unpack_value,
    unpackb,
)

__all__ = [
    "DEFAULT_MAX_BODY",
    "DecodeError",
    "EncodeError",
    "FrameTooLarge",
    "canonical_digest",
    "pack_value",
    "packb",
    "register_codec",
    "unpack_value",
    "unpackb",
]
