"""Msgpack encoding of values, with numpy arrays carried out of band.

A value encodes to one msgpack *document* plus a *data section* that holds the
raw bytes of every array in it. The document refers to arrays by offset, so
an array's bytes are never copied into msgpack (whose ``ExtType`` copies on
both pack and unpack): encoding keeps a ``memoryview`` of each array, and
decoding returns read-only ``np.frombuffer`` views of the received buffer.

Values: ``None``, ``bool``, ``int`` (64-bit), ``float``, ``str``, ``bytes``,
``list``, ``tuple`` (decodes as a list), ``dict`` with ``str`` or ``int`` keys,
numpy arrays and scalars of kinds bool/int/uint/float/complex, torch tensors
(sent as arrays), :class:`~simkit.messages.Message` instances and objects of
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

import hashlib
import math
import re
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import msgpack
import numpy as np

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

T = TypeVar("T")

DEFAULT_MAX_BODY: Final = 1 << 30
"""Default limit, in bytes, of an encoded body."""

EXT_ARRAY: Final = 1
EXT_OBJECT: Final = 2
EXT_SCALAR: Final = 3

_U32: Final = struct.Struct(">I")
_ZEROS: Final = memoryview(bytes(8))
_INT_MIN: Final = -(1 << 63)
_INT_MAX: Final = (1 << 63) - 1
_UINT_MAX: Final = (1 << 64) - 1
_MAX_DEPTH: Final = 100
_MAX_NDIM: Final = 32
_WIRE_DTYPE_RE: Final = re.compile(r"[<>|][biufc][0-9]{1,2}")


class DecodeError(ValueError):
    """Input that does not decode: malformed, truncated, oversized or of unknown type."""


class EncodeError(TypeError):
    """A value that cannot be encoded; the message names its path and type."""


class FrameTooLarge(EncodeError):
    """An encoded body is larger than the allowed limit."""


# ----------------------------------------------------------------------------- registry


@dataclass(frozen=True, slots=True)
class _Codec:
    cls: type[Any]
    name: str
    to_obj: Callable[[Any], Any]
    from_obj: Callable[[Any], Any]
    fields: bool  # to_obj returns a field map (error paths read ``.field``)


_BY_NAME: dict[str, _Codec] = {}
_BY_TYPE: dict[type[Any], _Codec] = {}


def register_codec(
    cls: type[T], name: str, to_obj: Callable[[T], Any], from_obj: Callable[[Any], T]
) -> None:
    """Make instances of ``cls`` encodable, as ext 2 objects named ``name``.

    Args:
        cls: The exact type to encode (subclasses are not covered).
        name: The type's name on the wire; unique among codecs and messages.
        to_obj: Turns an instance into an encodable value (arrays allowed).
        from_obj: Rebuilds an instance from the decoded value; whatever it
            raises becomes a :class:`DecodeError` (the input was bad).

    Raises:
        ValueError: ``name`` is taken by another class, or ``cls`` already
            has another name.
    """
    owner = _registered_class(name)
    if owner is not None and owner is not cls:
        raise ValueError(
            f"codec name {name!r} is already registered for {_qualname(owner)}; "
            f"cannot register {_qualname(cls)} under it"
        )
    current = _BY_TYPE.get(cls)
    if current is not None and current.name != name:
        raise ValueError(f"{_qualname(cls)} is already registered as {current.name!r}")
    _install(cls, name, to_obj, from_obj, fields=False)


def _install(
    cls: type[Any],
    name: str,
    to_obj: Callable[[Any], Any],
    from_obj: Callable[[Any], Any],
    *,
    fields: bool,
) -> None:
    """Register without checks (messages check names their own way)."""
    codec = _Codec(cls, name, to_obj, from_obj, fields)
    _BY_NAME[name] = codec
    _BY_TYPE[cls] = codec


def _registered_class(name: str) -> type[Any] | None:
    codec = _BY_NAME.get(name)
    return None if codec is None else codec.cls


def _qualname(cls: type[Any]) -> str:
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


# ----------------------------------------------------------------------------- dtypes

_WIRE_NAMES: dict[np.dtype[Any], str] = {}
_WIRE_DTYPES: dict[str, np.dtype[Any]] = {}


def _wire_name(dtype: np.dtype[Any]) -> str:
    """The dtype's wire name, or ``_Unsupported`` for kinds that may not travel."""
    name = _WIRE_NAMES.get(dtype)
    if name is None:
        if not _portable(dtype):
            raise _Unsupported(
                f"cannot encode numpy dtype {dtype} (only bool, int, uint, "
                "float up to 64 bits and complex up to 128 bits)"
            )
        name = _WIRE_NAMES[dtype] = dtype.str
    return name


def _portable(dtype: np.dtype[Any]) -> bool:
    kind, size = dtype.kind, dtype.itemsize
    if dtype.fields is not None or dtype.subdtype is not None or kind not in "biufc":
        return False
    return size <= (16 if kind == "c" else 8)


def _wire_dtype(name: object) -> np.dtype[Any]:
    """Parse a dtype name received from the wire (exact ``dtype.str`` form only)."""
    dtype = _WIRE_DTYPES.get(name) if type(name) is str else None
    if dtype is not None:
        return dtype
    if type(name) is not str or not _WIRE_DTYPE_RE.fullmatch(name):
        raise DecodeError(f"unsupported array dtype {name!r}")
    try:
        dtype = np.dtype(name)
    except TypeError as exc:
        raise DecodeError(f"unsupported array dtype {name!r}") from exc
    if dtype.str != name or not _portable(dtype):
        raise DecodeError(f"unsupported array dtype {name!r}")
    _WIRE_DTYPES[name] = dtype
    return dtype


# ----------------------------------------------------------------------------- packing


class _Unsupported(TypeError):
    """Raised by the packing hook; turned into an EncodeError with a path."""


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
    raise _Unsupported(f"cannot encode object of type {_qualname(type(obj))}")


def _is_tensor(cls: type[Any]) -> bool:
    return cls.__module__.startswith("torch") and hasattr(cls, "detach")


def _tensor_to_numpy(tensor: Any) -> np.ndarray[Any, Any]:
    try:
        array = tensor.detach().cpu().resolve_conj().resolve_neg().numpy()
    except (TypeError, RuntimeError) as exc:
        raise _Unsupported(f"cannot convert torch tensor to numpy: {exc}") from exc
    if not isinstance(array, np.ndarray):
        raise _Unsupported(f"torch tensor converted to {type(array).__name__}, not an ndarray")
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
        codec = _BY_TYPE.get(cls)
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
        dtype = _wire_name(array.dtype)
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
            self.parts.append(_ZEROS[:pad])
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
        meta = _META_PACKER.pack([_wire_name(array.dtype), array.tobytes()])
        return msgpack.ExtType(EXT_SCALAR, meta)

    def registered(self, codec: _Codec, obj: Any) -> msgpack.ExtType:
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
        raise _Unsupported("cannot encode masked arrays (the mask would be lost)")
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


def _pack(
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
_NEEDS_HOOK: set[type[Any]] = set()


def _pack_fields(fields: dict[str, Any], cls: type[Any]) -> tuple[bytes, list[memoryview], int]:
    """:func:`_pack` the field map of a ``cls`` (errors name ``payload.<field>``)."""
    if cls not in _NEEDS_HOOK:
        try:
            return _PLAIN.packer.pack(fields), [], 0
        except Exception:  # a value that needs the hook, or cannot be encoded (the
            # packer has reset itself)
            _NEEDS_HOOK.add(cls)
    return _pack(fields, "payload", fields=True)


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
    return _pack(obj, "value")


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
    if depth > _MAX_DEPTH:
        return path, f"nesting deeper than {_MAX_DEPTH} levels (a cycle?)"
    cls = type(obj)
    if obj is None or cls in (bool, float, str, bytes, bytearray, memoryview):
        return None
    if cls is int:
        return None if _INT_MIN <= obj <= _UINT_MAX else (path, f"integer {obj} exceeds 64 bits")
    codec = _BY_TYPE.get(cls)
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


# ----------------------------------------------------------------------------- unpacking


def _unpack_doc(doc: bytes | memoryview, ext_hook: Callable[[int, bytes], Any]) -> Any:
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


def _reject_ext(code: int, data: bytes) -> Any:
    raise DecodeError(f"unexpected ext type {code} ({len(data)} bytes)")


class _Decoding:
    """The ext hook of one decode: resolves arrays against the data section."""

    __slots__ = ("data", "depth")

    def __init__(self, data: memoryview) -> None:
        self.data = data
        self.depth = 0

    def __call__(self, code: int, raw: bytes) -> Any:
        if code == EXT_ARRAY:
            return self.array(_unpack_doc(raw, _reject_ext))
        if code == EXT_OBJECT:
            return self.registered(raw)
        if code == EXT_SCALAR:
            return _scalar(_unpack_doc(raw, _reject_ext))
        raise DecodeError(f"unknown ext type {code}")

    def array(self, meta: Any) -> np.ndarray[Any, Any]:
        if type(meta) is not list or len(meta) != 4:
            raise DecodeError(f"array header must be [dtype, shape, offset, nbytes], got {meta!r}")
        dtype = _wire_dtype(meta[0])
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
        if self.depth > _MAX_DEPTH:
            raise DecodeError(f"objects nested deeper than {_MAX_DEPTH} levels")
        item = _unpack_doc(raw, self)
        self.depth -= 1
        if type(item) is not list or len(item) != 2 or type(item[0]) is not str:
            raise DecodeError("registered object must be [type_name, value]")
        codec = _BY_NAME.get(item[0])
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
    if type(value) is not list or len(value) > _MAX_NDIM:
        raise DecodeError(f"array shape must be a list of at most {_MAX_NDIM} ints, got {value!r}")
    shape = tuple(_count(dim, "array dimension") for dim in value)
    if any(dim > _INT_MAX for dim in shape):
        raise DecodeError(f"array shape {shape} has a dimension above 2**63 - 1")
    return shape


def _scalar(meta: Any) -> np.generic:
    if type(meta) is not list or len(meta) != 2 or type(meta[1]) is not bytes:
        raise DecodeError(f"numpy scalar must be [dtype, raw_bytes], got {meta!r}")
    dtype = _wire_dtype(meta[0])
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
    return _unpack_doc(doc, _Decoding(data))


# ----------------------------------------------------------------------------- self-contained form


def _byte_view(buf: bytes | bytearray | memoryview) -> memoryview:
    """A flat unsigned-byte view of ``buf``."""
    try:
        view = memoryview(buf)
        return view if view.format == "B" and view.ndim == 1 else view.cast("B")
    except (TypeError, ValueError) as exc:
        raise DecodeError(f"cannot read the input as contiguous bytes: {exc}") from exc


def _join(doc: bytes, parts: list[memoryview], data_len: int) -> list[bytes | memoryview]:
    pad = -(_U32.size + len(doc)) % 8 if data_len else 0
    return [_U32.pack(len(doc)), doc, _ZEROS[:pad], *parts]


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
    doc, parts, data_len = _pack(obj, "value", canonical=canonical)
    return b"".join(_join(doc, parts, data_len))


def unpackb(data: bytes | bytearray | memoryview) -> Any:
    """Decode a buffer produced by :func:`packb`.

    Arrays are read-only views of ``data``.

    Raises:
        DecodeError: The buffer is malformed or truncated.
    """
    view = _byte_view(data)
    size = len(view)
    if size < _U32.size:
        raise DecodeError(f"buffer of {size} bytes ends inside the document length")
    doc_end = _U32.size + _U32.unpack_from(view)[0]
    if doc_end > size:
        raise DecodeError(f"buffer of {size} bytes ends inside the document (ends at {doc_end})")
    data_start = doc_end + (-doc_end % 8 if doc_end < size else 0)
    if data_start > size or any(view[doc_end:data_start]):
        raise DecodeError(f"bad padding after the document in a buffer of {size} bytes")
    return unpack_value(view[_U32.size : doc_end], view[data_start:])


def canonical_digest(obj: Any) -> str:
    """The sha256 hex digest of ``packb(obj, canonical=True)``.

    Equal values give equal digests on every machine (see :func:`packb`).

    Raises:
        EncodeError: Some part of ``obj`` cannot be encoded.
    """
    doc, parts, data_len = _pack(obj, "value", canonical=True)
    digest = hashlib.sha256()
    for part in _join(doc, parts, data_len):
        digest.update(part)
    return digest.hexdigest()
