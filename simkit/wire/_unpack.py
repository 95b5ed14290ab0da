"""Unpacking a msgpack document, resolving arrays against its data section."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import msgpack
import numpy as np

from simkit.wire._base import (
    EXT_ARRAY,
    EXT_OBJECT,
    EXT_SCALAR,
    INT_MAX,
    MAX_DEPTH,
    MAX_NDIM,
    DecodeError,
)
from simkit.wire._dtypes import wire_dtype
from simkit.wire._registry import BY_NAME

# ----------------------------------------------------------------------------- unpacking


def unpack_doc(doc: bytes | memoryview, ext_hook: Callable[[int, bytes], Any]) -> Any:
    """Unpack exactly one document; every failure becomes a :class:`DecodeError`."""
    try:
        # unpackb bounds every length (str, bin, array, map, ext) by len(doc)
        # (msgpack >= 1.0), so hostile input cannot make it allocate much;
        # passing those limits again would only cost time.
        return msgpack.unpackb(doc, ext_hook=ext_hook, strict_map_key=False)
    except DecodeError:
        raise
    except msgpack.ExtraData as exc:
        raise DecodeError(
            f"document of {len(doc)} bytes has {len(getattr(exc, 'extra', b''))} trailing bytes"
        ) from exc
    except Exception as exc:
        raise DecodeError(f"document of {len(doc)} bytes is malformed: {_describe(exc)}") from exc


def _describe(exc: Exception) -> str:
    if isinstance(exc, msgpack.StackError | RecursionError):
        return "nested too deeply"
    if isinstance(exc, TypeError) and "unhashable" in str(exc):
        return f"map key is not hashable ({exc})"
    return str(exc) or type(exc).__name__


def reject_ext(code: int, data: bytes) -> Any:
    raise DecodeError(f"unexpected ext type {code} ({len(data)} bytes)")


class Decoding:
    """The ext hook of one decode: resolves arrays against the data section."""

    __slots__ = ("data", "depth")

    def __init__(self, data: memoryview) -> None:
        self.data = data
        self.depth = 0

    def __call__(self, code: int, raw: bytes) -> Any:
        if code == EXT_ARRAY:
            return self.array(unpack_doc(raw, reject_ext))
        if code == EXT_OBJECT:
            return self.registered(raw)
        if code == EXT_SCALAR:
            return _scalar(unpack_doc(raw, reject_ext))
        raise DecodeError(f"unknown ext type {code}")

    def array(self, meta: Any) -> np.ndarray[Any, Any]:
        if type(meta) is not list or len(meta) != 4:
            raise DecodeError(f"array header must be [dtype, shape, offset, nbytes], got {meta!r}")
        dtype = wire_dtype(meta[0])
        shape = _shape(meta[1])
        offset, nbytes = _count(meta[2], "array offset"), _count(meta[3], "array nbytes")
        count = math.prod(shape)
        if count * dtype.itemsize != nbytes:
            raise DecodeError(
                f"array of shape {shape} and dtype {dtype.str} has {count * dtype.itemsize} "
                f"bytes, header says {nbytes}"
            )
        if count and offset + nbytes > len(self.data):
            raise DecodeError(
                f"array bytes [{offset}, {offset + nbytes}) lie outside the data section "
                f"of {len(self.data)} bytes"
            )
        if count and offset % 8:
            raise DecodeError(f"array offset {offset} is not 8-aligned")
        if not count:
            array = np.empty(shape, dtype)
        else:
            array = np.frombuffer(self.data, dtype, count, offset).reshape(shape)
        array.flags.writeable = False
        return array

    def registered(self, raw: bytes) -> Any:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise DecodeError(f"objects nested deeper than {MAX_DEPTH} levels")
        item = unpack_doc(raw, self)
        self.depth -= 1
        if type(item) is not list or len(item) != 2 or type(item[0]) is not str:
            raise DecodeError("registered object must be [type_name, value]")
        codec = BY_NAME.get(item[0])
        if codec is None:
            raise DecodeError(f"unknown registered type {item[0]!r}")
        try:
            return codec.from_obj(item[1])
        except DecodeError:
            raise
        except Exception as exc:  # from_obj is user code: whatever it raises, the input is bad
            raise DecodeError(f"cannot rebuild {codec.name}: {type(exc).__name__}: {exc}") from exc


def _count(value: Any, what: str) -> int:
    if type(value) is not int or value < 0:
        raise DecodeError(f"{what} must be a non-negative int, got {value!r}")
    return value


def _shape(value: Any) -> tuple[int, ...]:
    if type(value) is not list or len(value) > MAX_NDIM:
        raise DecodeError(f"array shape must be a list of at most {MAX_NDIM} ints, got {value!r}")
    shape = tuple(_count(dim, "array dimension") for dim in value)
    if any(dim > INT_MAX for dim in shape):
        raise DecodeError(f"array shape {shape} has a dimension above 2**63 - 1")
    return shape


def _scalar(meta: Any) -> np.generic:
    if type(meta) is not list or len(meta) != 2 or type(meta[1]) is not bytes:
        raise DecodeError(f"numpy scalar must be [dtype, raw_bytes], got {meta!r}")
    dtype = wire_dtype(meta[0])
    if len(meta[1]) != dtype.itemsize:
        raise DecodeError(f"numpy scalar of dtype {dtype.str} needs {dtype.itemsize} bytes")
    value: np.generic = np.frombuffer(meta[1], dtype)[0]
    return value


def unpack_value(doc: bytes | memoryview, data: memoryview) -> Any:
    """Decode a document produced by :func:`pack_value`.

    Arrays come back as **read-only** views of ``data`` (no copy): they keep
    the buffer alive, and must be copied (``arr.copy()``) to be modified.

    Args:
        doc: The msgpack document; it must end exactly where the value does.
        data: The data section the document's arrays refer to.

    Returns:
        The value; tuples come back as lists.

    Raises:
        DecodeError: The input is malformed, truncated or names an unknown type.
    """
    return unpack_doc(doc, Decoding(data))
