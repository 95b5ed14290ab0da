"""Wire codec benchmarks. Prints one JSON object; asserts nothing.

Microseconds per call (best of several runs) of the three steps a message
takes through the runtime: ``encode_action`` of a ``Send``, ``decode_action``
of its body, and ``SerializedMessage.decode`` of the payload, for

1. ``small``: a 200-byte body carrying ``Blob(seq: int, data: bytes)`` with
   180 bytes of data, against bare ``msgpack.packb`` / ``unpackb`` of the
   equivalent dict (and a reused ``msgpack.Packer``);
2. ``big_array``: a message holding a 10^6-element float32 array (4 MB),
   against bare msgpack of the same bytes (which copies them on both sides;
   simkit copies them only where the caller joins the parts).

Usage: ``python bench/bench_codec.py [--quick]``
"""

from __future__ import annotations

import argparse
import json
import timeit
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np

from simkit.messages import (
    Message,
    Send,
    SerializedMessage,
    decode_action,
    encode_action,
    encode_action_bytes,
)


@dataclass(frozen=True, slots=True)
class Blob(Message):
    seq: int
    data: bytes


@dataclass(frozen=True, slots=True)
class Tensor(Message):
    array: np.ndarray[Any, Any]


def per_call_us(fn: Callable[[], object], repeat: int) -> float:
    """Best time of ``repeat`` runs, in µs per call (each run lasts at least 0.2 s)."""
    timer = timeit.Timer(fn)
    number, _ = timer.autorange()
    return min(timer.repeat(repeat=repeat, number=number)) / number * 1e6


def codec_steps(msg: Message, repeat: int) -> dict[str, Any]:
    """Time encode_action, decode_action and the payload decode of ``Send(msg)``."""
    send = Send(msg.typename, msg)
    body = encode_action_bytes(send)
    received = decode_action(body)
    assert isinstance(received, Send)
    assert isinstance(received.payload, SerializedMessage)
    payload = received.payload
    steps = {
        "encode_action_us": per_call_us(lambda: encode_action(send), repeat),
        "decode_action_us": per_call_us(lambda: decode_action(body), repeat),
        "payload_decode_us": per_call_us(payload.decode, repeat),
    }
    return {
        "body_bytes": len(body),
        **{k: round(v, 3) for k, v in steps.items()},
        "total_us": round(sum(steps.values()), 3),
    }


def bare_msgpack(value: dict[str, Any], repeat: int) -> dict[str, float]:
    """Time msgpack alone on ``value``: packb, unpackb, and a reused Packer."""
    packed = msgpack.packb(value)
    packer = msgpack.Packer(autoreset=True)
    packb = per_call_us(lambda: msgpack.packb(value), repeat)
    unpackb = per_call_us(lambda: msgpack.unpackb(packed), repeat)
    return {
        "packb_us": round(packb, 3),
        "unpackb_us": round(unpackb, 3),
        "total_us": round(packb + unpackb, 3),
        "packer_pack_us": round(per_call_us(lambda: packer.pack(value), repeat), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer runs")
    args = parser.parse_args()
    repeat = 3 if args.quick else 7
    data = bytes(range(180))
    array = np.arange(10**6, dtype=np.float32)
    report = {
        "small": {
            "simkit": codec_steps(Blob(7, data), repeat),
            "bare_msgpack": bare_msgpack({"seq": 7, "data": data}, repeat),
        },
        "big_array": {
            "simkit": codec_steps(Tensor(array), repeat),
            "bare_msgpack": bare_msgpack({"array": array.data.cast("B")}, repeat),
        },
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
