"""The dtypes arrays may travel with, and their wire names."""

from __future__ import annotations

import re
from typing import Any, Final

import numpy as np

from simkit.wire._base import DecodeError, Unsupported

_WIRE_DTYPE_RE: Final = re.compile(r"[<>|][biufc][0-9]{1,2}")

# ----------------------------------------------------------------------------- dtypes

_WIRE_NAMES: dict[np.dtype[Any], str] = {}
_WIRE_DTYPES: dict[str, np.dtype[Any]] = {}


def wire_name(dtype: np.dtype[Any]) -> str:
    """The dtype's wire name, or ``Unsupported`` for kinds that may not travel."""
    name = _WIRE_NAMES.get(dtype)
    if name is None:
        if not _portable(dtype):
            raise Unsupported(
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


def wire_dtype(name: object) -> np.dtype[Any]:
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
