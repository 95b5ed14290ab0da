"""Msgpack encoding of values, with numpy arrays carried out of band (packing).

A value encodes to one msgpack *document* plus a *data section* that holds the
raw bytes of every array in it. The document refers to arrays by offset, so
an array's bytes are never copied into msgpack (whose ``ExtType`` copies on
both pack and unpack): encoding keeps a ``memoryview`` of each array, and
decoding returns read-only ``np.frombuffer`` views of the received buffer.

Values: ``None``, ``bool``, ``int`` (64-bit), ``float``, ``str``, ``bytes``,
``list``, ``tuple`` (decodes as a list), ``dict`` with ``str`` or ``int`` keys,
numpy arrays and scalars of kinds bool/int/uint/float/complex, torch tensors
(sent as arrays), :class:`~simkit.wire.Message` instances and objects of
types given to :func:`register_codec`. Extension types inside the document:

* ext 1, array: ``[dtype, shape, offset, nbytes]``; ``dtype`` is numpy's
  ``dtype.str`` (``"<f4"``, ``"|b1"``, ``">c16"``), ``offset`` is relative
  to the data section start and a multiple of 8.
* ext 2, registered object: ``[type_name, value]``; a message's value is its
  field map, another type's value is what its ``to_obj`` returned.
* ext 3, numpy scalar: ``[dtype, raw_bytes]``.

Self-contained form (:func:`packb`): ``u32be doc_len | doc | pad | data``,
where ``pad`` (present only when ``data`` is not empty) zero-fills to the
next multiple of 8 from the buffer start.

Decoding raises :class:`DecodeError` and nothing else for any malformed,
truncated, oversized or unknown input.
"""

from __future__ import annotations

import threading
from typing import Any, Final

import msgpack
import numpy as np

from simkit.wire._base import (
    EXT_ARRAY,
    EXT_OBJECT,
    EXT_SCALAR,
    INT_MIN,
    MAX_DEPTH,
    UINT_MAX,
    ZEROS,
    EncodeError,
    Unsupported,
    qualname,
)
from simkit.wire._dtypes import wire_name
from simkit.wire._registry import BY_TYPE, Codec

# ----------------------------------------------------------------------------- packing


_META_PACKER: Final = msgpack.Packer(use_bin_type=True, autoreset=True)


def _native(obj: Any) -> Any:
    """Subclasses of native types (str/int enums, OrderedDict, namedtuple) as plain values."""
    if isinstance(obj, str):
        return str.__str__(obj)
    if isinstance(obj, int):
        return int.__int__(obj)
    if isinstance(obj, float):
        return float.__float__(obj)
    if isinstance(obj, bytes):
        return bytes.__bytes__(obj)
    if isinstance(obj, dict):
        return dict(obj)
    if isinstance(obj, list | tuple):
        return list(obj)
    raise Unsupported(f"cannot encode object of type {qualname(type(obj))}")


def _is_tensor(cls: type[Any]) -> bool:
    return cls.__module__.startswith("torch") and hasattr(cls, "detach")


def _tensor_to_numpy(tensor: Any) -> np.ndarray[Any, Any]:
    try:
        array = tensor.detach().cpu().resolve_conj().resolve_neg().numpy()
    except (TypeError, RuntimeError) as exc:
        raise Unsupported(f"cannot convert torch tensor to numpy: {exc}") from exc
    if not isinstance(array, np.ndarray):
        raise Unsupported(f"torch tensor converted to {type(array).__name__}, not an ndarray")
    return array


def _little_endian(array: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    if array.dtype.str[0] != ">":
        return array
    return array.astype(array.dtype.newbyteorder("<"))


class _Packing:
    """One encoding in progress: the hook msgpack calls for non-native values.

    Arrays met by the hook are appended to ``parts`` (the data section) as
    memoryviews, without copying their bytes.
    """

    __slots__ = ("canonical", "packer", "parts", "size")

    def __init__(self) -> None:
        self.parts: list[memoryview] = []
        self.size = 0
        self.canonical = False
        self.packer = msgpack.Packer(
            default=self.default, use_bin_type=True, strict_types=True, autoreset=True
        )

    def default(self, obj: Any) -> Any:
        cls = type(obj)
        if cls is np.ndarray:
            return self.array(obj)
        if cls is tuple:
            return list(obj)
        codec = BY_TYPE.get(cls)
        if codec is not None:
            return self.registered(codec, obj)
        if isinstance(obj, np.generic):
            return self.scalar(obj)
        if isinstance(obj, np.ndarray):
            return self.array(_plain_array(obj))
        if _is_tensor(cls):
            return self.array(_tensor_to_numpy(obj))
        return _native(obj)

    def array(self, array: np.ndarray[Any, Any]) -> msgpack.ExtType:
        if self.canonical:
            array = _little_endian(array)
        dtype = wire_name(array.dtype)
        if not array.flags.c_contiguous:
            array = np.ascontiguousarray(array)
        offset = self.append(array)
        meta = _META_PACKER.pack([dtype, list(array.shape), offset, array.nbytes])
        return msgpack.ExtType(EXT_ARRAY, meta)

    def append(self, array: np.ndarray[Any, Any]) -> int:
        """Add ``array``'s bytes to the data section; return their offset."""
        if array.nbytes == 0:
            return 0
        pad = -self.size % 8
        if pad:
            self.parts.append(ZEROS[:pad])
            self.size += pad
        offset = self.size
        self.parts.append(array.data.cast("B"))
        self.size += array.nbytes
        return offset

    def scalar(self, obj: np.generic) -> Any:
        if isinstance(obj, str | bytes):
            return _native(obj)
        array = np.asarray(obj)
        if self.canonical:
            array = _little_endian(array)
        meta = _META_PACKER.pack([wire_name(array.dtype), array.tobytes()])
        return msgpack.ExtType(EXT_SCALAR, meta)

    def registered(self, codec: Codec, obj: Any) -> msgpack.ExtType:
        value = codec.to_obj(obj)
        if self.canonical:
            value = _canonical(value)
        # A fresh packer: this one is busy with the enclosing document.
        inner = msgpack.packb(
            [codec.name, value], default=self.default, use_bin_type=True, strict_types=True
        )
        return msgpack.ExtType(EXT_OBJECT, inner)


def _plain_array(array: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    if isinstance(array, np.ma.MaskedArray):
        raise Unsupported("cannot encode masked arrays (the mask would be lost)")
    return np.asarray(array)


_local = threading.local()


def _acquire() -> _Packing:
    """This thread's idle packing state, or a new one when it is in use (reentrancy)."""
    packing: _Packing | None = getattr(_local, "idle", None)
    if packing is None:
        return _Packing()
    _local.idle = None
    return packing


def _release(packing: _Packing) -> None:
    packing.parts = []
    packing.size = 0
    packing.canonical = False
    _local.idle = packing


def pack(
    obj: Any, root: str, *, fields: bool = False, canonical: bool = False
) -> tuple[bytes, list[memoryview], int]:
    """Encode ``obj``; ``root`` names it in errors, ``fields`` if it is a field map."""
    packing = _acquire()
    packing.canonical = canonical
    try:
        doc: bytes = packing.packer.pack(_canonical(obj) if canonical else obj)
        return doc, packing.parts, packing.size
    except Exception as exc:
        raise _encode_error(obj, root, fields, exc) from exc
    finally:
        _release(packing)


class _PlainPacker(threading.local):
    """This thread's packer of values made only of msgpack's own types.

    Most field maps hold no arrays, tuples or objects: packing them without
    the hook skips its per-call state. One packer per thread, as a packer's
    buffer must not be shared by two packings at once.
    """

    def __init__(self) -> None:
        self.packer = msgpack.Packer(use_bin_type=True, strict_types=True, autoreset=True)


_PLAIN: Final = _PlainPacker()

# Message classes one of whose field maps needed the hook: theirs go straight
# to it, as a failed plain attempt costs more than the hook saves.
NEEDS_HOOK: set[type[Any]] = set()


def pack_fields(fields: dict[str, Any], cls: type[Any]) -> tuple[bytes, list[memoryview], int]:
    """:func:`pack` the field map of a ``cls`` (errors name ``payload.<field>``)."""
    if cls not in NEEDS_HOOK:
        try:
            return _PLAIN.packer.pack(fields), [], 0
        except Exception:  # a value that needs the hook, or cannot be encoded (the
            # packer has reset itself)
            NEEDS_HOOK.add(cls)
    return pack(fields, "payload", fields=True)


def pack_value(obj: Any) -> tuple[bytes, list[memoryview], int]:
    """Encode a value into a msgpack document and its data section.

    Args:
        obj: The value (see the module docstring for what is supported).

    Returns:
        ``(doc, parts, data_len)``: the document, the data section as
        memoryviews (array bytes, uncopied, and zero padding) and its length.

    Raises:
        EncodeError: Some part of ``obj`` cannot be encoded.
    """
    return pack(obj, "value")


# ----------------------------------------------------------------------------- encode errors


def _encode_error(obj: Any, root: str, fields: bool, exc: Exception) -> EncodeError:
    try:
        found = _locate(obj, root, fields, 0)
    except Exception:  # the value misbehaves twice: report the first failure
        found = None
    if found is None:
        return EncodeError(f"{root}: cannot encode: {exc}")
    path, problem = found
    return EncodeError(f"{path}: {problem}")


def _locate(obj: Any, path: str, fields: bool, depth: int) -> tuple[str, str] | None:
    """Find the first part of ``obj`` the packing hook rejects: ``(path, problem)``."""
    if depth > MAX_DEPTH:
        return path, f"nesting deeper than {MAX_DEPTH} levels (a cycle?)"
    cls = type(obj)
    if obj is None or cls in (bool, float, str, bytes, bytearray, memoryview):
        return None
    if cls is int:
        return None if INT_MIN <= obj <= UINT_MAX else (path, f"integer {obj} exceeds 64 bits")
    codec = BY_TYPE.get(cls)
    if codec is not None:
        return _locate(codec.to_obj(obj), path, codec.fields, depth + 1)
    if isinstance(obj, dict):
        return _locate_items(obj, path, fields, depth)
    if isinstance(obj, list | tuple):
        children = ((item, f"{path}[{i}]") for i, item in enumerate(obj))
        return _first(children, depth)
    try:
        _Packing().default(obj)
    except Exception as exc:
        return path, str(exc)
    return None


def _locate_items(
    obj: dict[Any, Any], path: str, fields: bool, depth: int
) -> tuple[str, str] | None:
    for key, value in obj.items():
        found = _locate(key, f"{path} key {key!r}", False, depth + 1)
        child = f"{path}.{key}" if fields else f"{path}[{key!r}]"
        found = found or _locate(value, child, False, depth + 1)
        if found is not None:
            return found
    return None


def _first(children: Any, depth: int) -> tuple[str, str] | None:
    for item, path in children:
        found = _locate(item, path, False, depth + 1)
        if found is not None:
            return found
    return None


# ----------------------------------------------------------------------------- canonical form


def _canonical(obj: Any) -> Any:
    """``obj`` with dict keys sorted (when all str or all int) and tuples as lists."""
    if isinstance(obj, dict):
        keys = list(obj)
        if all(type(k) is str for k in keys) or all(type(k) is int for k in keys):
            keys.sort()
        return {k: _canonical(obj[k]) for k in keys}
    if isinstance(obj, list | tuple):
        return [_canonical(item) for item in obj]
    return obj
