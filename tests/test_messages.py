"""Action messages, application messages and the body format."""

from __future__ import annotations

import hashlib
import struct
import tracemalloc
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, ClassVar

import msgpack
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from simkit.codec import DEFAULT_MAX_BODY, DecodeError, EncodeError, FrameTooLarge, register_codec
from simkit.messages import (
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
    message_type,
    registered_types,
    version_compatible,
)
from simkit.wire._body import _decode_action, _decode_send_fast


@dataclass(frozen=True, slots=True)
class Update(Message):
    round: int
    client: str
    weights: dict[str, np.ndarray[Any, Any]]
    shape: tuple[int, ...] = ()
    pairs: list[tuple[int, str]] = field(default_factory=list)
    loss: float | None = None


@dataclass(frozen=True, slots=True)
class Envelope(Message):
    typename: ClassVar[str] = "test.envelope"
    inner: Update
    extra: Any = None


@dataclass(frozen=True, slots=True)
class Positive(Message):
    n: int

    def __post_init__(self) -> None:
        if self.n <= 0:
            raise ValueError(f"n must be positive, got {self.n}")


def send_body(msg: Message) -> bytes:
    return encode_action_bytes(Send(msg.typename, msg))


def received(msg: Message) -> SerializedMessage:
    sent = decode_action(send_body(msg))
    assert isinstance(sent, Send)
    assert isinstance(sent.payload, SerializedMessage)
    return sent.payload


def update(**overrides: Any) -> Update:
    fields: dict[str, Any] = {
        "round": 3,
        "client": "c07",
        "weights": {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.zeros(3)},
        "shape": (2, 3),
        "pairs": [(1, "a"), (2, "b")],
        "loss": 0.25,
    }
    return Update(**{**fields, **overrides})


def assert_same_update(a: Update, b: Update) -> None:
    assert (a.round, a.client, a.shape, a.pairs, a.loss) == (
        b.round,
        b.client,
        b.shape,
        b.pairs,
        b.loss,
    )
    assert a.weights.keys() == b.weights.keys()
    for key, array in a.weights.items():
        assert b.weights[key].dtype == array.dtype
        assert np.array_equal(b.weights[key], array)


# ----------------------------------------------------------------------------- registration


def test_messages_register_automatically_as_final_slotted_classes() -> None:
    assert message_type("Update") is Update
    assert message_type("test.envelope") is Envelope
    assert Update.typename == "Update"
    assert not hasattr(update(), "__dict__")
    assert {"Update", "test.envelope", "Positive"} <= set(registered_types())
    assert registered_types() == sorted(registered_types())


def test_a_second_class_of_a_taken_class_name_gets_its_qualified_name() -> None:
    @dataclass(frozen=True, slots=True)
    class Update(Message):  # same class name as the module's Update, no typename
        x: int

    qualified = f"{__name__}.{Update.__qualname__}"
    assert Update.typename == qualified
    assert qualified.endswith(
        "test_messages.test_a_second_class_of_a_taken_class_name_gets_its_qualified_name.<locals>.Update"
    )
    assert message_type(qualified) is Update
    assert message_type("Update") is globals()["Update"]
    back = received(Update(7))
    assert back.type == qualified
    assert back.decode() == Update(7)


def test_an_explicit_typename_held_by_another_is_a_type_error() -> None:
    with pytest.raises(
        TypeError, match=r"'test\.envelope'.*test_messages\.Envelope.*test_messages\..*Other"
    ):

        @dataclass(frozen=True, slots=True)
        class Other(Message):
            typename: ClassVar[str] = "test.envelope"


def define(name: str, *, module: str | None = None, typename: str | None = None) -> Any:
    """A message class ``name``, in ``module`` (default: this one), with a typename or not."""
    namespace: dict[str, Any] = {"__annotations__": {"x": int}}
    if module is not None:
        namespace["__module__"] = module
    if typename is not None:
        namespace["typename"] = typename
        namespace["__annotations__"]["typename"] = ClassVar[str]
    return dataclass(frozen=True, slots=True)(type(name, (Message,), namespace))


@pytest.mark.parametrize("builtin_first", [True, False])
def test_a_builtin_message_keeps_its_class_name_whatever_is_imported_first(
    builtin_first: bool,
) -> None:
    name = f"Shipped{int(builtin_first)}"
    if builtin_first:
        builtin = define(name, module="protocols.fake_messages")
        user = define(name)
    else:
        user = define(name)
        assert user.typename == name  # first: the class name, for now
        builtin = define(name, module="protocols.fake_messages")
    assert builtin.typename == name
    assert user.typename == f"{__name__}.{name}"
    assert message_type(name) is builtin
    assert message_type(user.typename) is user
    assert received(user(1)).decode() == user(1)  # the moved class still travels


def test_an_explicit_typename_moves_a_class_that_took_it_by_default() -> None:
    first = define("Claimed")
    chosen = define("Chooser", typename="Claimed")
    assert (chosen.typename, first.typename) == ("Claimed", f"{__name__}.Claimed")
    assert message_type("Claimed") is chosen
    with pytest.raises(TypeError, match=r"'Claimed' is already registered"):
        define("Late", typename="Claimed")
    define("Claimed")  # the first class, defined again: it stays where it moved
    assert message_type("Claimed") is chosen


def test_a_codec_name_moves_a_class_that_took_it_by_default() -> None:
    message = define("Coded")

    class Thing:
        pass

    register_codec(Thing, "Coded", lambda t: 0, lambda v: Thing())
    assert message.typename == f"{__name__}.Coded"
    with pytest.raises(KeyError):
        message_type("Coded")  # a codec, not a message


def test_the_shipped_messages_keep_their_class_names() -> None:
    import protocols.messages
    import simkit.secagg

    user_error = define("Error")
    assert protocols.messages.Error.typename == "Error"
    assert user_error.typename == f"{__name__}.Error"
    shipped = [protocols.messages.TrainRequest, protocols.messages.TrainReply]
    shipped += [simkit.secagg.SecAggSetup, simkit.secagg.SecAggAbort]
    assert [cls.typename for cls in shipped] == [cls.__name__ for cls in shipped]


def test_redefining_the_same_class_replaces_it() -> None:
    def define() -> type[Any]:
        @dataclass(frozen=True, slots=True)
        class Redefined(Message):
            x: int

        return Redefined

    first: Any = define()
    second: Any = define()
    assert isinstance(received(second(1)).decode(), second)
    assert first is not second
    assert message_type("Redefined") is second


def test_a_name_taken_by_a_registered_codec_is_a_type_error() -> None:
    class Thing:
        pass

    register_codec(Thing, "test.thing", lambda t: 0, lambda v: Thing())
    with pytest.raises(TypeError, match=r"test\.thing"):

        class Clash(Message):
            typename = "test.thing"


def test_unknown_message_type_is_a_key_error() -> None:
    with pytest.raises(KeyError, match=r"no\.such"):
        message_type("no.such")


def test_a_message_that_is_not_a_dataclass_cannot_be_encoded() -> None:
    class Plain(Message):
        pass

    with pytest.raises(TypeError, match="not a dataclass"):
        Plain().fields()


# ----------------------------------------------------------------------------- action messages


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Join(1, "1.0"), "Join.name must be a str, got int"),  # type: ignore[arg-type]
        (lambda: Reject("f", None), "Reject.detail must be a str"),  # type: ignore[arg-type]
        (lambda: Drop(b"x"), "Drop.reason must be a str"),  # type: ignore[arg-type]
        (lambda: Ping(True), "Ping.seq must be an int, got bool"),
        (lambda: Pong(1.0), "Pong.seq must be an int"),  # type: ignore[arg-type]
        (lambda: Send(3, update()), "Send.type must be a str"),  # type: ignore[arg-type]
        (lambda: Send("Update", {"a": 1}), "Send.payload must be a Message"),  # type: ignore[arg-type]
    ],
)
def test_actions_validate_types(make: Any, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        make()


def test_actions_validate_values() -> None:
    with pytest.raises(ValueError, match=r"Ping.seq must be in \[0, 2\*\*64\)"):
        Ping(-1)
    with pytest.raises(ValueError, match=r"Send\.type is 'Other' but its payload is a 'Update'"):
        Send("Other", update())


ACTIONS = st.one_of(
    st.builds(Join, st.text(), st.text(), st.text()),
    st.just(Accept()),
    st.builds(Reject, st.text(), st.text()),
    st.builds(Ping, st.integers(0, (1 << 64) - 1)),
    st.builds(Pong, st.integers(0, (1 << 64) - 1)),
    st.builds(Drop, st.text()),
)


@given(ACTIONS)
def test_control_actions_round_trip(msg: ActionMessage) -> None:
    parts = encode_action(msg)
    assert len(parts) == 1
    assert isinstance(parts[0], bytes)
    assert decode_action(parts[0]) == msg
    assert decode_action(bytearray(parts[0])) == msg
    assert decode_action(memoryview(parts[0])) == msg


def test_control_action_heads_are_documented_arrays() -> None:
    body = encode_action_bytes(Join("c1", PROTOCOL_VERSION, "tok"))
    (head_len,) = struct.unpack(">I", body[:4])
    assert len(body) == 4 + head_len
    assert msgpack.unpackb(body[4:]) == [1, "c1", "1.0", "tok"]
    assert msgpack.unpackb(encode_action_bytes(Accept())[4:]) == [2]
    assert msgpack.unpackb(encode_action_bytes(Drop("bye"))[4:]) == [7, "bye"]


@pytest.mark.parametrize(
    ("ours", "theirs", "ok"),
    [
        ("1.0", "1.0", True),
        ("1.0", "1.7", True),
        ("1.3", "01.0", True),
        ("1.0", "2.0", False),
        ("1.0", "1", False),
        ("1.0", "1.0.0", False),
        ("1.0", "a.b", False),
        ("1.0", "", False),
        ("x", "1.0", False),
        ("1.0", " 1.0", False),
        ("1.0", None, False),
    ],
)
def test_version_compatible(ours: str, theirs: Any, ok: bool) -> None:
    assert version_compatible(ours, theirs) is ok


# ----------------------------------------------------------------------------- Send


def test_send_round_trip_converts_tuples_and_keeps_lists() -> None:
    msg = update()
    back = received(msg).decode()
    assert isinstance(back, Update)
    assert_same_update(msg, back)
    assert type(back.shape) is tuple
    assert type(back.pairs) is list
    assert type(back.pairs[0]) is tuple


def test_send_body_layout() -> None:
    msg = update()
    body = send_body(msg)
    (head_len,) = struct.unpack(">I", body[:4])
    code, type_name, payload_len, data_len = msgpack.unpackb(body[4 : 4 + head_len])
    assert (code, type_name) == (4, "Update")
    payload_end = 4 + head_len + payload_len
    data_start = payload_end + (-payload_end % 8)
    assert data_start % 8 == 0
    assert body[payload_end:data_start] == bytes(data_start - payload_end)
    assert len(body) == data_start + data_len
    fields = msgpack.unpackb(body[4 + head_len : payload_end], ext_hook=lambda c, d: (c, d))
    assert sorted(fields) == ["client", "loss", "pairs", "round", "shape", "weights"]


def test_small_send_is_one_bytes_part_without_padding() -> None:
    parts = encode_action(Send("Positive", Positive(5)))
    assert len(parts) == 1
    assert isinstance(parts[0], bytes)
    head_len = struct.unpack(">I", parts[0][:4])[0]
    assert msgpack.unpackb(parts[0][4 : 4 + head_len])[3] == 0


def test_serialized_message_type_size_and_digest() -> None:
    message = received(update())
    assert message.type == "Update"
    payload, data = bytes(message.payload), bytes(message.data)
    assert message.nbytes == len(payload) + len(data)
    assert message.digest() == hashlib.sha256(payload + data).hexdigest()
    assert message.digest() == SerializedMessage.from_message(update()).digest()
    assert "Update" in repr(message)


def test_forwarding_re_encodes_the_same_body_without_decoding() -> None:
    body = send_body(update())
    message = received(update())
    parts = encode_action(Send(message.type, message))
    assert b"".join(parts) == body
    assert any(isinstance(p, memoryview) and p.obj is message.data.obj for p in parts)
    unknown = SerializedMessage("not.registered", message.payload, message.data)
    forwarded = decode_action(encode_action_bytes(Send(unknown.type, unknown)))
    assert isinstance(forwarded, Send)
    assert forwarded.type == "not.registered"


def test_nested_messages_share_the_data_section() -> None:
    inner = update()
    msg = Envelope(inner, extra={"more": np.ones(2, dtype=np.int16), "t": (1, 2)})
    back = received(msg).decode()
    assert isinstance(back, Envelope)
    assert_same_update(inner, back.inner)
    assert back.extra["t"] == [1, 2]  # Any: tuples stay lists
    assert np.array_equal(back.extra["more"], np.ones(2, dtype=np.int16))


def test_torch_tensor_fields_travel_as_arrays() -> None:
    torch = pytest.importorskip("torch")
    msg = update(weights={"w": torch.ones(2, 2, dtype=torch.float64)})
    back = received(msg).decode()
    assert isinstance(back, Update)
    assert type(back.weights["w"]) is np.ndarray
    assert np.array_equal(back.weights["w"], np.ones((2, 2)))


def test_encode_errors_name_the_field() -> None:
    with pytest.raises(EncodeError, match=r"payload\.weights\['w'\]: cannot encode .* set"):
        encode_action(Send("Update", update(weights={"w": {1}})))


# ----------------------------------------------------------------------------- zero copy


def test_large_array_crosses_with_one_copy() -> None:
    weights = np.arange(10**7, dtype=np.float32)
    msg = update(weights={"w": weights})
    parts = encode_action(Send(msg.typename, msg))
    assert any(np.shares_memory(np.frombuffer(p, np.uint8), weights) for p in parts)
    tracemalloc.start()
    try:
        body = b"".join(parts)
        back = decode_action(body)
        assert isinstance(back, Send)
        assert isinstance(back.payload, SerializedMessage)
        decoded = back.payload.decode()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert weights.nbytes <= peak < weights.nbytes * 1.05  # the join, and nothing else
    assert isinstance(decoded, Update)
    array = decoded.weights["w"]
    assert np.shares_memory(array, np.frombuffer(body, np.uint8))
    assert not array.flags.writeable
    assert np.array_equal(array[-3:], weights[-3:])


# ----------------------------------------------------------------------------- limits


def test_frame_too_large() -> None:
    msg = update(weights={"w": np.zeros(1000)})
    with pytest.raises(FrameTooLarge, match=r"Send of Update encodes to \d+ bytes, above .* 1000"):
        encode_action(Send(msg.typename, msg), max_body=1000)
    with pytest.raises(FrameTooLarge, match="Join encodes to"):
        encode_action(Join("x" * 100, "1.0"), max_body=50)


def test_oversized_body_is_rejected_before_decoding() -> None:
    body = send_body(update())
    with pytest.raises(DecodeError, match=f"body of {len(body)} bytes exceeds the limit of 100"):
        decode_action(body, max_body=100)


# ----------------------------------------------------------------------------- decode errors


def head_body(head: list[Any], rest: bytes = b"") -> bytes:
    packed = msgpack.packb(head)
    return struct.pack(">I", len(packed)) + packed + rest


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"\x00\x00", "body of 2 bytes ends inside the head length"),
        (b"\x00\x00\x00\x0c\x93", r"body of 5 bytes ends inside the head \(head_len=12\)"),
        (head_body([9]), "unknown action code 9"),
        (head_body([True]), "unknown action code True"),
        (head_body([]), "head must be a non-empty array"),
        (head_body({"a": 1}), "head must be a non-empty array"),  # type: ignore[arg-type]
        (head_body([2], b"\x00"), "1 trailing bytes after a Accept head"),
        (head_body([5, -1]), "invalid Ping"),
        (head_body([5, "1"]), "invalid Ping: Ping.seq must be an int"),
        (head_body([1, "a", "1.0"]), "Join head must have 3 fields"),
        (head_body([4, "T", 5, 0]), "ends inside the payload"),
        (head_body([4, "T", 0, 9]), "ends inside the data section"),
        (head_body([4, "T", 1, 0], b"\xc0\x00"), "1 trailing bytes"),
        (head_body([4, 7, 0, 0]), "Send type must be a str"),
        (head_body([4, "T", -1, 0]), "payload_len must be a non-negative int"),
        (head_body([4, "T", 0]), r"Send head must be \[4, type, payload_len, data_len\]"),
        (head_body([4, "T", 1, 1], b"\xc0\x00\x00\x00\x00\x01\x07"), "padding .* not zero"),
        (struct.pack(">I", 2) + b"\x91\xc1", "head: document of 2 bytes is malformed"),
        (struct.pack(">I", 3) + b"\xd4\x01\x00", "head: unexpected ext type 1"),
    ],
)
def test_malformed_bodies_say_what_is_wrong(body: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        decode_action(body)


def raw_send(type_name: str, fields: Any) -> SerializedMessage:
    return SerializedMessage(type_name, msgpack.packb(fields))


@pytest.mark.parametrize(
    ("message", "error"),
    [
        (raw_send("no.such", {}), "unknown message type 'no.such'"),
        (raw_send("Positive", [1]), "Positive: expected a field map, got list"),
        (raw_send("Positive", {}), "Positive: missing field.*'n'"),
        (raw_send("Positive", {"n": 1, "m": 2}), "Positive: unknown field 'm'"),
        (raw_send("Positive", {"n": "1"}), "Positive.n: expected int, got str"),
        (raw_send("Positive", {"n": True}), "Positive.n: expected int, got bool"),
        (raw_send("Positive", {"n": -1}), "Positive: invalid fields: n must be positive"),
        (
            raw_send("Update", {"round": 1, "client": "c", "weights": {"w": 1}}),
            r"Update.weights\['w'\]: expected numpy.ndarray\[Any, Any\], got int",
        ),
        (
            raw_send("Update", {"round": 1, "client": "c", "weights": {}, "pairs": [[1, 2]]}),
            r"Update.pairs\[0\]\[1\]: expected str, got int",
        ),
        (
            raw_send("Update", {"round": 1, "client": "c", "weights": {}, "loss": "x"}),
            "Update.loss: expected float | None, got str",
        ),
        (SerializedMessage("Positive", b"\x81\xa1n"), "Positive payload: .* malformed"),
        (SerializedMessage("Positive", b""), "Positive payload"),
    ],
)
def test_bad_payloads_are_decode_errors_naming_type_and_field(
    message: SerializedMessage, error: str
) -> None:
    with pytest.raises(DecodeError, match=error):
        message.decode()


def test_tuple_fields_check_their_length() -> None:
    @dataclass(frozen=True, slots=True)
    class Pair(Message):
        xy: tuple[int, float]

    assert received(Pair((1, 2.5))).decode() == Pair((1, 2.5))
    with pytest.raises(DecodeError, match=r"Pair.xy: expected tuple\[int, float\], got list of 3"):
        raw_send("Pair", {"xy": [1, 2, 3]}).decode()


VALID_BODIES = [
    send_body(update()),
    send_body(Envelope(update(), extra=[np.float32(1), np.ones((2, 0))])),
    send_body(Positive(7)),
    encode_action_bytes(Join("client", "1.0", "t")),
    encode_action_bytes(Ping(12345)),
]


def mutate(body: bytes, data: st.DataObject) -> bytes:
    buffer = bytearray(body)
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        kind = data.draw(st.sampled_from(["flip", "truncate", "extend", "splice"]))
        i = data.draw(st.integers(0, max(0, len(buffer) - 1)))
        if kind == "flip" and buffer:
            buffer[i] ^= data.draw(st.integers(1, 255))
        elif kind == "truncate":
            del buffer[i:]
        elif kind == "extend":
            buffer += data.draw(st.binary(min_size=1, max_size=16))
        else:
            other = data.draw(st.sampled_from(VALID_BODIES))
            j = data.draw(st.integers(0, len(other)))
            buffer[i:] = other[j:]
    return bytes(buffer)


def decode_fully(body: bytes) -> None:
    try:
        msg = decode_action(body)
        if isinstance(msg, Send):
            assert isinstance(msg.payload, SerializedMessage)
            msg.payload.digest()
            msg.payload.decode()
    except DecodeError:
        pass


@settings(deadline=timedelta(milliseconds=500))
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_decode_error(body: bytes) -> None:
    decode_fully(body)


@settings(deadline=timedelta(milliseconds=500), max_examples=300)
@given(st.sampled_from(VALID_BODIES), st.data())
def test_mutated_bodies_raise_only_decode_error(body: bytes, data: st.DataObject) -> None:
    decode_fully(mutate(body, data))


def test_body_size_counts_bytes_and_views() -> None:
    assert body_size([b"abc", np.zeros(2).data.cast("B")]) == 19


# ----------------------------------------------------------------------------- fast paths


def same_send(a: ActionMessage, b: ActionMessage) -> bool:
    if not (isinstance(a, Send) and isinstance(b, Send)):
        return a == b
    x, y = a.payload, b.payload
    assert isinstance(x, SerializedMessage)
    assert isinstance(y, SerializedMessage)
    return (a.type, x.type, bytes(x.payload), bytes(x.data), x.nbytes) == (
        b.type,
        y.type,
        bytes(y.payload),
        bytes(y.data),
        y.nbytes,
    )


def general_decode(body: bytes) -> ActionMessage:
    try:
        return _decode_action(memoryview(body), DEFAULT_MAX_BODY)
    except DecodeError:
        raise
    except Exception as exc:
        raise DecodeError(str(exc)) from exc


def assert_fast_path_agrees(body: bytes) -> None:
    """The Send fast path accepts only what the general path accepts, alike."""
    fast = _decode_send_fast(memoryview(body), DEFAULT_MAX_BODY)
    if fast is not None:
        assert same_send(fast, general_decode(body))


@pytest.mark.parametrize("body", VALID_BODIES)
def test_the_send_fast_path_decodes_valid_sends(body: bytes) -> None:
    fast = _decode_send_fast(memoryview(body), DEFAULT_MAX_BODY)
    assert (fast is not None) is body.startswith(b"\x94\x04", 4)
    assert_fast_path_agrees(body)
    for view in (bytearray(body), memoryview(body)):
        assert same_send(decode_action(view), general_decode(body))


@settings(deadline=timedelta(milliseconds=500), max_examples=300)
@given(st.sampled_from(VALID_BODIES), st.data())
def test_the_send_fast_path_agrees_on_mutated_bodies(body: bytes, data: st.DataObject) -> None:
    assert_fast_path_agrees(mutate(body, data))


def test_heads_in_longer_msgpack_forms_decode_alike() -> None:
    body = send_body(Positive(5))
    (head_len,) = struct.unpack(">I", body[:4])
    _, type_name, payload_len, data_len = msgpack.unpackb(body[4 : 4 + head_len])
    name = type_name.encode()
    head = b"\x94\xcc\x04\xd9" + bytes([len(name)]) + name  # uint8 4, str8 type
    head += struct.pack(">BHBI", 0xCD, payload_len, 0xCE, data_len)  # uint16, uint32
    longer = struct.pack(">I", len(head)) + head + body[4 + head_len :]
    assert _decode_send_fast(memoryview(longer), DEFAULT_MAX_BODY) is None
    assert same_send(decode_action(longer), decode_action(body))


@dataclass(frozen=True, slots=True)
class Defaults(Message):
    a: int
    b: Any = None
    c: tuple[int, ...] = ()
    d: list[int] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Derived(Message):
    a: int
    total: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "total", self.a * 2)


@dataclass(frozen=True)
class Unslotted(Message):
    a: int
    b: str = "b"


@dataclass(frozen=True, slots=True)
class KeywordOnly(Message):
    b: int = field(kw_only=True)
    a: int


@dataclass(frozen=True, slots=True, init=False)
class HandMade(Message):
    a: int

    def __init__(self, a: int) -> None:
        object.__setattr__(self, "a", a + 1)


@dataclass(frozen=True, slots=True)
class Failing(Message):
    a: int

    def __post_init__(self) -> None:
        raise KeyError("a")


@pytest.mark.parametrize(
    "msg",
    [
        Defaults(1),
        Defaults(1, {"x": [1]}, (1, 2), [3]),
        Derived(4),
        Unslotted(1),
        Unslotted(1, "c"),
        KeywordOnly(1, b=2),
    ],
)
def test_every_kind_of_message_class_round_trips(msg: Message) -> None:
    back = received(msg).decode()
    assert type(back) is type(msg)
    assert back == msg
    assert back.fields() == msg.fields()


def test_messages_are_made_as_their_class_makes_them() -> None:
    assert HandMade(1).a == 2
    assert received(HandMade(1)).decode() == HandMade(2)  # its __init__ ran again: 3
    assert received(Derived(4)).decode().total == 8  # type: ignore[attr-defined]
    with pytest.raises(DecodeError, match="Failing: invalid fields: 'a'"):
        raw_send("Failing", {"a": 1}).decode()


def test_decoded_fields_are_checked_on_the_fast_path() -> None:
    back = raw_send("Defaults", {"a": 1, "b": (1,), "c": [1, 2], "d": [3]}).decode()
    assert back == Defaults(1, [1], (1, 2), [3])
    assert type(back.c) is tuple  # type: ignore[attr-defined]
    with pytest.raises(DecodeError, match=r"Defaults\.d\[1\]: expected int, got str"):
        raw_send("Defaults", {"a": 1, "b": 2, "c": [], "d": [1, "x"]}).decode()
    with pytest.raises(DecodeError, match=r"Defaults\.a: expected int, got bool"):
        raw_send("Defaults", {"a": True, "b": 2, "c": [], "d": []}).decode()


def test_a_message_class_that_is_not_a_dataclass_is_a_decode_error() -> None:
    class Loose(Message):
        pass

    with pytest.raises(DecodeError, match=r"Loose: .* is not a dataclass"):
        raw_send("Loose", {}).decode()


# ----------------------------------------------------------------------------- name claims

CLAIMS = st.lists(
    st.tuples(
        st.sampled_from(["simkit.a", "protocols.b", "user", "other.mod"]),  # module
        st.sampled_from(["A", "B"]),  # class name
        st.sampled_from([None, "A", "B", "user.A", "x.A"]),  # explicit typename
    ),
    min_size=1,
    max_size=6,
    unique_by=lambda claim: (claim[0], claim[1]),  # one class per module and name
)


def _claim_all(claims: list[tuple[type[Any], str | None]]) -> dict[type[Any], str] | None:
    """Register the classes in order in an empty registry: their names, or None if one fails."""
    from simkit.wire import _registry

    saved = _registry.BY_NAME, _registry.BY_TYPE
    _registry.BY_NAME, _registry.BY_TYPE = {}, {}
    try:
        for cls, typename in claims:
            rank = _registry.rank_of(cls, explicit=typename is not None)
            codec = _registry.Codec(cls, typename or cls.__name__, str, str, True, rank)
            cls.typename = _registry.claim(codec, lambda old, new: old is new)
        assert len(_registry.BY_NAME) == len(claims)  # one name each
        return {cls: codec.name for cls, codec in _registry.BY_TYPE.items()}
    except _registry.NameTaken:
        return None
    finally:
        _registry.BY_NAME, _registry.BY_TYPE = saved


@given(CLAIMS, st.randoms(use_true_random=False))
@settings(max_examples=300, deadline=None)
def test_builtin_and_explicit_names_do_not_depend_on_the_import_order(
    specs: list[tuple[str, str, str | None]], random: Any
) -> None:
    # Out of scope: an explicit name spelling another class's qualified name (the
    # default class it displaces may have nowhere left to go, in some orders).
    qualified = {f"{module}.{name}" for module, name, typename in specs if typename is None}
    assume(not qualified & {typename for _, _, typename in specs})
    classes = [
        (type(name, (), {"__module__": module}), typename) for module, name, typename in specs
    ]
    shuffled = list(classes)
    random.shuffle(shuffled)
    first, second = _claim_all(classes), _claim_all(shuffled)
    assert (first is None) == (second is None)
    if first is None or second is None:
        return
    for cls, typename in classes:
        if typename is not None or cls.__module__.split(".")[0] in ("simkit", "protocols"):
            assert first[cls] == second[cls] == (typename or cls.__name__)
        else:
            assert first[cls] in (cls.__name__, f"{cls.__module__}.{cls.__qualname__}")


def test_simkit_codec_and_messages_re_export_the_wire() -> None:
    import simkit.codec
    import simkit.messages
    import simkit.wire

    for module in (simkit.codec, simkit.messages):
        assert all(getattr(module, name) is getattr(simkit.wire, name) for name in module.__all__)
    assert sorted({*simkit.codec.__all__, *simkit.messages.__all__}) == sorted(simkit.wire.__all__)
