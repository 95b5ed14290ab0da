"""The self-contained form: one buffer holding a document and its data section."""

from __future__ import annotations

import hashlib
from typing import Any

from simkit.wire._base import U32, ZEROS, DecodeError, byte_view
from simkit.wire._pack import pack
from simkit.wire._unpack import unpack_value

# ----------------------------------------------------------------------------- self-contained form


def _join(doc: bytes, parts: list[memoryview], data_len: int) -> list[bytes | memoryview]:
    pad = -(U32.size + len(doc)) % 8 if data_len else 0
    return [U32.pack(len(doc)), doc, ZEROS[:pad], *parts]


def packb(obj: Any, *, canonical: bool = False) -> bytes:
    """Encode a value into one self-contained buffer (for digests and checkpoints).

    Args:
        obj: The value.
        canonical: Sort dict keys (when all are str or all are int) and write
            arrays and numpy scalars little-endian, so equal values encode
            to equal bytes on every machine.

    Returns:
        ``u32be doc_len | doc | pad | data``.

    Raises:
        EncodeError: Some part of ``obj`` cannot be encoded.
    """
    doc, parts, data_len = pack(obj, "value", canonical=canonical)
    return b"".join(_join(doc, parts, data_len))


def unpackb(data: bytes | bytearray | memoryview) -> Any:
    """Decode a buffer produced by :func:`packb`.

    Arrays are read-only views of ``data``.

    Raises:
        DecodeError: The buffer is malformed or truncated.
    """
    view = byte_view(data)
    size = len(view)
    if size < U32.size:
        raise DecodeError(f"buffer of {size} bytes ends inside the document length")
    doc_end = U32.size + U32.unpack_from(view)[0]
    if doc_end > size:
        raise DecodeError(f"buffer of {size} bytes ends inside the document (ends at {doc_end})")
    data_start = doc_end + (-doc_end % 8 if doc_end < size else 0)
    if data_start > size or any(view[doc_end:data_start]):
        raise DecodeError(f"bad padding after the document in a buffer of {size} bytes")
    return unpack_value(view[U32.size : doc_end], view[data_start:])


def canonical_digest(obj: Any) -> str:
    """The sha256 hex digest of ``packb(obj, canonical=True)``.

    Equal values give equal digests on every machine (see :func:`packb`).

    Raises:
        EncodeError: Some part of ``obj`` cannot be encoded.
    """
    doc, parts, data_len = pack(obj, "value", canonical=True)
    digest = hashlib.sha256()
    for part in _join(doc, parts, data_len):
        digest.update(part)
    return digest.hexdigest()
