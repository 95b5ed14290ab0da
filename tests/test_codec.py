"""Values through the codec: round trips, zero copy, canonical digests, errors."""

from __future__ import annotations

import math
import struct
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from fractions import Fraction
from typing import Any

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as npst

from simkit.codec import (
    DecodeError,
    EncodeError,
    canonical_digest,
    pack_value,
    packb,
    register_codec,
    unpack_value,
    unpackb,
)
from simkit.wire._pack import NEEDS_HOOK, pack, pack_fields

# ----------------------------------------------------------------------------- strategies

NUMERIC_DTYPES = (
    npst.boolean_dtypes()
    | npst.integer_dtypes(endianness="?")
    | npst.unsigned_integer_dtypes(endianness="?")
    | npst.floating_dtypes(endianness="?", sizes=(16, 32, 64))
    | npst.complex_number_dtypes(endianness="?", sizes=(64, 128))
)
ARRAYS = npst.arrays(
    dtype=NUMERIC_DTYPES,
    shape=npst.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4),
)
LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(1 << 63), max_value=(1 << 64) - 1)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.binary(max_size=20)
    | ARRAYS
)
VALUES = st.recursive(
    LEAVES,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


def same(a: Any, b: Any) -> bool:
    """Exact equality: same types, bit-identical floats (nan included), arrays alike."""
    if isinstance(a, np.ndarray):
        return (
            type(b) is np.ndarray
            and a.dtype.str == b.dtype.str
            and a.shape == b.shape
            and a.tobytes() == b.tobytes()
        )
    if isinstance(a, np.generic):
        return type(a) is type(b) and a.tobytes() == b.tobytes()
    if isinstance(a, float):
        return type(b) is float and struct.pack("<d", a) == struct.pack("<d", b)
    if isinstance(a, list | tuple):
        return type(b) is list and len(a) == len(b) and all(map(same, a, b))
    if isinstance(a, dict):
        return type(b) is dict and list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def round_trip(value: Any) -> Any:
    doc, parts, data_len = pack_value(value)
    data = b"".join(parts)
    assert len(data) == data_len
    return unpack_value(doc, memoryview(data))


# ----------------------------------------------------------------------------- round trips


@given(VALUES)
def test_nested_values_round_trip(value: Any) -> None:
    assert same(value, round_trip(value))
    assert same(value, unpackb(packb(value)))


@given(ARRAYS)
def test_arrays_of_every_numeric_dtype_round_trip(array: np.ndarray[Any, Any]) -> None:
    back = unpackb(packb(array))
    assert same(array, back)
    assert not back.flags.writeable


@pytest.mark.parametrize(
    "scalar",
    [
        np.bool_(True),
        np.int8(-3),
        np.int16(300),
        np.int32(-70000),
        np.int64(-(1 << 62)),
        np.uint8(255),
        np.uint16(65535),
        np.uint32(1 << 31),
        np.uint64((1 << 64) - 1),
        np.float16(1.5),
        np.float32(math.nan),
        np.float64(-0.0),
        np.complex64(1 - 2j),
        np.complex128(complex(math.inf, 3)),
    ],
)
def test_numpy_scalars_keep_their_exact_type(scalar: np.generic) -> None:
    assert same(scalar, round_trip(scalar))


def test_tuples_and_native_subclasses_decode_as_plain_values() -> None:
    from collections import OrderedDict
    from enum import IntEnum

    class Level(IntEnum):
        HIGH = 2

    value = {"t": (1, (2, 3)), "o": OrderedDict(a=1), "e": Level.HIGH, "s": np.str_("x")}
    back = round_trip(value)
    assert back == {"t": [1, [2, 3]], "o": {"a": 1}, "e": 2, "s": "x"}
    assert type(back["e"]) is int
    assert type(back["s"]) is str


def test_int_keys_and_large_ints() -> None:
    value = {1: "a", -2: "b", "k": [(1 << 64) - 1, -(1 << 63)]}
    assert round_trip(value) == {1: "a", -2: "b", "k": [(1 << 64) - 1, -(1 << 63)]}


@pytest.mark.parametrize(
    "array",
    [
        np.arange(12, dtype="<f8").reshape(3, 4).T,  # Fortran order
        np.arange(20, dtype=">i4")[::3],  # strided
        np.zeros((0, 5), dtype="<c8"),
        np.array(7, dtype="<u2"),  # 0-d
    ],
)
def test_non_contiguous_empty_and_0d_arrays(array: np.ndarray[Any, Any]) -> None:
    back = round_trip(array)
    assert back.dtype.str == array.dtype.str
    assert np.array_equal(back, array)


# ----------------------------------------------------------------------------- zero copy


def test_encoding_keeps_a_view_of_the_array() -> None:
    array = np.arange(1000, dtype=np.float32)
    _, parts, _ = pack_value({"w": array})
    assert any(np.shares_memory(np.frombuffer(p, np.uint8), array) for p in parts)


def test_decoded_arrays_are_read_only_views_of_the_buffer() -> None:
    buffer = bytearray(packb({"a": np.arange(10, dtype="<i8"), "b": np.ones(3, dtype=">f4")}))
    value = unpackb(buffer)
    view = np.frombuffer(buffer, np.uint8)
    for array in value.values():
        assert np.shares_memory(array, view)
        assert not array.flags.writeable
        with pytest.raises(ValueError, match="read-only"):
            array[0] = 1


def test_arrays_are_8_aligned_in_the_data_section() -> None:
    value = [np.ones(3, dtype="|u1"), np.ones(5, dtype="<f8"), np.ones(1, dtype="|b1")]
    doc, parts, _ = pack_value(value)
    data = memoryview(b"".join(parts))
    for ext in msgpack.unpackb(doc, ext_hook=lambda code, raw: msgpack.unpackb(raw)):
        assert ext[2] % 8 == 0
    assert same(value, unpack_value(doc, data))


# ----------------------------------------------------------------------------- torch


def test_torch_tensors_encode_as_arrays() -> None:
    torch = pytest.importorskip("torch")
    tensor = torch.arange(6, dtype=torch.float32, requires_grad=True).reshape(2, 3)
    back = round_trip({"t": tensor})["t"]
    assert type(back) is np.ndarray
    assert back.dtype == np.float32
    assert np.array_equal(back, tensor.detach().numpy())


# ----------------------------------------------------------------------------- registered types


@dataclass(frozen=True)
class Point:
    label: str
    coords: np.ndarray[Any, Any]


register_codec(Point, "test_codec.Point", lambda p: [p.label, p.coords], lambda v: Point(*v))
register_codec(
    Fraction, "test_codec.Fraction", lambda f: [f.numerator, f.denominator], lambda v: Fraction(*v)
)


def test_registered_types_round_trip_with_arrays_in_the_shared_data_section() -> None:
    coords = np.arange(4, dtype=np.float64)
    value = {"p": Point("a", coords), "q": [Point("b", coords * 2)], "f": Fraction(1, 3)}
    doc, parts, data_len = pack_value(value)
    assert data_len == 64
    back = unpack_value(doc, memoryview(b"".join(parts)))
    assert back["f"] == Fraction(1, 3)
    assert back["p"].label == "a"
    assert np.array_equal(back["q"][0].coords, coords * 2)


def test_register_codec_rejects_a_taken_name_or_a_second_name() -> None:
    class Other:
        pass

    with pytest.raises(ValueError, match=r"test_codec\.Point.*already registered.*Other"):
        register_codec(Other, "test_codec.Point", lambda o: 0, lambda v: Other())
    with pytest.raises(ValueError, match=r"already registered as 'test_codec\.Fraction'"):
        register_codec(Fraction, "other name", lambda f: 0, lambda v: Fraction())
    register_codec(Point, "test_codec.Point", lambda p: [p.label, p.coords], lambda v: Point(*v))


def test_unknown_registered_type_and_failing_from_obj_are_decode_errors() -> None:
    inner = msgpack.packb(["no.such.type", 1])
    doc = msgpack.packb(msgpack.ExtType(2, inner))
    with pytest.raises(DecodeError, match=r"unknown registered type 'no\.such\.type'"):
        unpack_value(doc, memoryview(b""))
    bad = msgpack.packb(msgpack.ExtType(2, msgpack.packb(["test_codec.Fraction", [1, 0]])))
    with pytest.raises(DecodeError, match=r"cannot rebuild test_codec\.Fraction"):
        unpack_value(bad, memoryview(b""))


# ----------------------------------------------------------------------------- encode errors


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"w": {1, 2}}, r"value\['w'\]: cannot encode object of type set"),
        ([1, [2, object()]], r"value\[1\]\[1\]: cannot encode object of type object"),
        ({"a": np.array(["x"])}, r"value\['a'\]: cannot encode numpy dtype <U1"),
        (np.array([None], dtype=object), "value: cannot encode numpy dtype object"),
        (np.zeros(2, dtype="V4"), "cannot encode numpy dtype"),
        (np.zeros(2, dtype=np.longdouble), "cannot encode numpy dtype"),
        (np.ma.masked_array([1, 2], mask=[False, True]), "masked arrays"),
        ({"n": 1 << 64}, r"value\['n'\]: integer 18446744073709551616 exceeds 64 bits"),
        (1j, "cannot encode object of type complex"),
        (
            {(1, frozenset({2})): 0},
            r"value key \(1, frozenset\(\{2\}\)\)\[1\]: cannot encode object of type frozenset",
        ),
    ],
)
def test_encode_errors_name_the_path_and_the_type(value: Any, message: str) -> None:
    with pytest.raises(EncodeError, match=message):
        pack_value(value)


def test_cycles_are_encode_errors() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(EncodeError, match="nest"):
        pack_value(loop)


# ----------------------------------------------------------------------------- canonical digest


def test_canonical_digest_ignores_key_order_and_byte_order() -> None:
    a = {"b": 1, "a": [np.arange(3, dtype="<f4"), {"y": 2, "x": 3}]}
    b = {"a": [np.arange(3, dtype=">f4"), {"x": 3, "y": 2}], "b": 1}
    assert canonical_digest(a) == canonical_digest(b)
    assert canonical_digest({2: "x", 1: "y"}) == canonical_digest({1: "y", 2: "x"})
    assert canonical_digest(a) != canonical_digest({**a, "b": 2})
    assert canonical_digest(np.float32(1)) != canonical_digest(np.float64(1))


def test_canonical_digest_is_pinned() -> None:
    # A change here breaks every recorded trace and weights digest: it must be deliberate.
    value = {"w": np.arange(4, dtype="<f4"), "n": 3, "s": "x", "t": (1.5, None, b"\x00")}
    expected = "24994617339e086065a76a49b9cdc98cd0bbf3fe8bd1bb5f830505872c7e7771"
    assert canonical_digest(value) == expected


def test_packb_preserves_order_and_canonical_packb_sorts() -> None:
    assert list(unpackb(packb({"b": 1, "a": 2}))) == ["b", "a"]
    assert list(unpackb(packb({"b": 1, "a": 2}, canonical=True))) == ["a", "b"]


# ----------------------------------------------------------------------------- decode errors


@settings(deadline=timedelta(milliseconds=500))
@given(st.binary(max_size=200), st.binary(max_size=64))
def test_random_documents_raise_only_decode_error(doc: bytes, data: bytes) -> None:
    try:
        unpack_value(doc, memoryview(data))
    except DecodeError:
        pass


@settings(deadline=timedelta(milliseconds=500))
@given(VALUES, st.data())
def test_mutated_buffers_raise_only_decode_error(value: Any, data: st.DataObject) -> None:
    buffer = bytearray(packb(value))
    for _ in range(data.draw(st.integers(1, 4))):
        if buffer:
            i = data.draw(st.integers(0, len(buffer) - 1))
            buffer[i] ^= data.draw(st.integers(1, 255))
    cut = data.draw(st.integers(0, len(buffer) + 8))
    buffer = buffer[:cut] + bytes(max(0, cut - len(buffer)))
    try:
        unpackb(buffer)
    except DecodeError:
        pass


@pytest.mark.parametrize(
    ("meta", "message"),
    [
        (["<f4", [2], 0, 4], "has 8 bytes, header says 4"),
        (["<f4", [2], 8, 8], r"outside|not 8-aligned"),
        (["<f4", [1], 4, 4], "not 8-aligned"),
        (["O", [1], 0, 8], "unsupported array dtype 'O'"),
        (["<f16", [1], 0, 16], "unsupported array dtype '<f16'"),
        (["f4", [1], 0, 4], "unsupported array dtype 'f4'"),
        (["<f4", [-1], 0, 4], "array dimension must be a non-negative int"),
        (["<f4", [0, 1 << 63], 0, 0], "above 2\\*\\*63 - 1"),
        (["<f4", [1] * 40, 0, 4], "at most 32"),
        (["<f4", [1]], r"\[dtype, shape, offset, nbytes\]"),
    ],
)
def test_bad_array_headers(meta: list[Any], message: str) -> None:
    doc = msgpack.packb(msgpack.ExtType(1, msgpack.packb(meta)))
    with pytest.raises(DecodeError, match=message):
        unpack_value(doc, memoryview(bytes(8)))


def test_document_errors_say_what_is_wrong() -> None:
    with pytest.raises(DecodeError, match="trailing bytes"):
        unpack_value(msgpack.packb(1) + b"\x01", memoryview(b""))
    with pytest.raises(DecodeError, match="malformed"):
        unpack_value(b"\x92\x01", memoryview(b""))
    with pytest.raises(DecodeError, match="unknown ext type 9"):
        unpack_value(msgpack.packb(msgpack.ExtType(9, b"")), memoryview(b""))
    with pytest.raises(DecodeError, match="not hashable"):
        unpack_value(b"\x81\x91\x01\x01", memoryview(b""))
    with pytest.raises(DecodeError, match="ends inside the document"):
        unpackb(b"\x00\x00\x00\x09\x01")
    with pytest.raises(DecodeError, match="nested too deeply"):
        unpack_value(b"\x91" * 100_000 + b"\x01", memoryview(b""))


def test_nested_object_depth_is_bounded() -> None:
    obj: Any = 0
    for _ in range(150):
        obj = msgpack.ExtType(2, msgpack.packb(["test_codec.Fraction", obj]))
    with pytest.raises(DecodeError, match="nested deeper than 100"):
        unpack_value(msgpack.packb(obj), memoryview(b""))


@pytest.mark.parametrize(
    "doc",
    [
        b"\xdd\xff\xff\xff\xff",  # array of 2**32 - 1 items
        b"\xdf\xff\xff\xff\xff",  # map of 2**32 - 1 pairs
        b"\xdb\xff\xff\xff\xff",  # str of 4 GiB
        b"\xc6\xff\xff\xff\xff",  # bin of 4 GiB
        b"\xc9\xff\xff\xff\xff\x01",  # ext of 4 GiB
    ],
)
def test_lengths_are_bounded_by_the_document(doc: bytes) -> None:
    tracemalloc.start()
    try:
        with pytest.raises(DecodeError, match=f"document of {len(doc)} bytes is malformed"):
            unpack_value(doc, memoryview(b""))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


# ----------------------------------------------------------------------------- plain fast path


class Fresh:
    """Stands for a message class none of whose field maps has needed the hook."""


def pack_fresh(fields: dict[str, Any]) -> tuple[bytes, list[memoryview], int]:
    NEEDS_HOOK.discard(Fresh)
    return pack_fields(fields, Fresh)


@given(st.dictionaries(st.text(max_size=8), VALUES, max_size=4))
def test_field_maps_pack_alike_with_or_without_the_hook(fields: dict[str, Any]) -> None:
    fast = pack_fresh(fields)
    slow = pack(fields, "payload", fields=True)
    assert fast[0] == slow[0]
    assert fast[2] == slow[2]
    assert [bytes(p) for p in fast[1]] == [bytes(p) for p in slow[1]]


def test_field_maps_that_need_the_hook_take_it() -> None:
    from enum import IntEnum

    class Level(IntEnum):
        HIGH = 2

    array = np.arange(3, dtype=np.int16)
    doc, parts, data_len = pack_fresh({"t": (1, 2), "e": Level.HIGH, "a": array})
    assert data_len == array.nbytes
    assert Fresh in NEEDS_HOOK  # its next field maps go straight to the hook
    assert pack_fields({"i": 1}, Fresh)[0] == msgpack.packb({"i": 1})
    assert same(unpack_value(doc, memoryview(b"".join(parts)))["a"], array)
    with pytest.raises(EncodeError, match=r"payload\.s: cannot encode .* set"):
        pack_fresh({"s": {1}})
    with pytest.raises(EncodeError, match=r"payload\.n: integer .* exceeds 64 bits"):
        pack_fresh({"n": 1 << 64})


def test_plain_packing_is_safe_across_threads() -> None:
    values = [{"i": i, "s": "x" * i, "b": bytes(i)} for i in range(200)]
    expected = [msgpack.packb(v) for v in values]

    def pack_all(_: int) -> list[bytes]:
        return [pack_fields(v, Fresh)[0] for v in values for _ in range(20)][::20]

    NEEDS_HOOK.discard(Fresh)
    with ThreadPoolExecutor(4) as pool:
        for result in pool.map(pack_all, range(8)):
            assert result == expected
