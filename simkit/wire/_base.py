"""Errors, limits and small helpers shared by the wire modules."""

from __future__ import annotations

import struct
from typing import Any, Final

DEFAULT_MAX_BODY: Final = 1 << 30
"""Default limit, in bytes, of an encoded body."""

EXT_ARRAY: Final = 1
EXT_OBJECT: Final = 2
EXT_SCALAR: Final = 3

U32: Final = struct.Struct(">I")
ZEROS: Final = memoryview(bytes(8))
INT_MIN: Final = -(1 << 63)
INT_MAX: Final = (1 << 63) - 1
UINT_MAX: Final = (1 << 64) - 1
MAX_DEPTH: Final = 100
MAX_NDIM: Final = 32


class DecodeError(ValueError):
    """Input that does not decode: malformed, truncated, oversized or of unknown type."""


class EncodeError(TypeError):
    """A value that cannot be encoded; the message names its path and type."""


class FrameTooLarge(EncodeError):
    """An encoded body is larger than the allowed limit."""


class Unsupported(TypeError):
    """Raised by the packing hook; turned into an EncodeError with a path."""


def qualname(cls: type[Any]) -> str:
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def byte_view(buf: bytes | bytearray | memoryview) -> memoryview:
    """A flat unsigned-byte view of ``buf``."""
    try:
        view = memoryview(buf)
        return view if view.format == "B" and view.ndim == 1 else view.cast("B")
    except (TypeError, ValueError) as exc:
        raise DecodeError(f"cannot read the input as contiguous bytes: {exc}") from exc


def tname(value: object) -> str:
    """The name of ``value``'s type, for error messages."""
    return type(value).__name__
