"""Hostile clients for the protocol tests: malformed replies crafted byte by byte.

A :class:`HostileClient` joins like an honest client and answers every
``TrainRequest`` with a reply built from an honest one (a zero update of the
right names, dtypes and shapes) and then broken in one way: a *variant* of
:data:`VARIANTS`. The payload and data section are written here with msgpack
directly, not through simkit's encoder, so anything can be said: bad array
headers, unknown registered types, fields of the wrong type, nesting too
deep. The in-memory channel and TCP carry the same bodies.

:class:`HostilePlugin` wraps a protocol plugin: the scenario's clients are
built as usual except the hostile ones, which are added under their names.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np

from protocols.messages import EvaluationRequest, TrainRequest
from simkit.actors import Actor, Context, PeerGone, Rejected
from simkit.messages import SerializedMessage
from simkit.protocol import ProtocolPlugin, ProtocolRun, ScenarioSetup
from simkit.simulation import Simulation
from simkit.training import Weights

# ----------------------------------------------------------------------------- encoding


@dataclass(frozen=True)
class Obj:
    """A registered object (ext 2): ``[name, value]``."""

    name: str
    value: Any


@dataclass(frozen=True)
class Header:
    """An array header (ext 1) written as given; no bytes are added to the data section."""

    meta: Any


@dataclass(frozen=True)
class Crafted:
    """One reply as sent: its Send type, payload document and data section."""

    type: str
    payload: bytes
    data: bytes = b""


def encode(tree: Any, type_name: str = "TrainReply") -> Crafted:
    """Encode ``tree`` as simkit's codec would, arrays in the data section."""
    data = bytearray()

    def hook(obj: Any) -> Any:
        if isinstance(obj, np.ndarray):
            data.extend(bytes(-len(data) % 8))
            offset = len(data)
            data.extend(obj.tobytes())
            meta = [obj.dtype.str, list(obj.shape), offset, obj.nbytes]
            return msgpack.ExtType(1, msgpack.packb(meta))
        if isinstance(obj, Obj):
            return msgpack.ExtType(2, msgpack.packb([obj.name, obj.value], default=hook))
        if isinstance(obj, Header):
            return msgpack.ExtType(1, msgpack.packb(obj.meta))
        raise TypeError(f"cannot encode {obj!r}")

    payload = msgpack.packb(tree, default=hook, use_bin_type=True)
    return Crafted(type_name, payload, bytes(data))


class RawReply(SerializedMessage):
    """Crafted bytes that ``Context.send`` forwards unchanged (as a received message)."""

    __slots__ = ()

    @property
    def typename(self) -> str:
        return self.type


# ----------------------------------------------------------------------------- replies


class Tree:
    """An honest ``TrainReply`` of ``round`` as a tree to break: a zero update, weight 1."""

    def __init__(self, round: int, weights: Weights) -> None:
        self.round = round
        self.weights = weights
        self.arrays: dict[str, Any] = {n: np.zeros_like(a) for n, a in weights.items()}
        self.updates: dict[str, Any] = {
            "updates": Obj("training.Weights", self.arrays),
            "weight": 1.0,
        }
        self.loss: dict[str, Any] = {"total": 0.5, "count": 1.0}
        self.metrics: dict[str, Any] = {"loss": Obj("training.MeanState", self.loss)}
        self.effort: dict[str, Any] = {"n_epoch": 1, "n_steps": 2, "n_samples": 20, "t_spent": 0.0}
        self.result: dict[str, Any] = {
            "round": round,
            "updates": Obj("training.ModelUpdates", self.updates),
            "aux": {},
            "metrics": self.metrics,
            "effort": Obj("training.Effort", self.effort),
        }
        self.reply: dict[str, Any] = {
            "round": round,
            "result": Obj("training.TrainResult", self.result),
        }

    @property
    def first(self) -> str:
        """The first weight name."""
        return self.weights.names[0]

    def template(self) -> np.ndarray[Any, Any]:
        return np.asarray(self.weights[self.first])

    def header(self, **changes: Any) -> Header:
        """The first array's header with ``changes`` (dtype, shape, offset, nbytes)."""
        ref = self.template()
        meta = {"dtype": ref.dtype.str, "shape": list(ref.shape), "offset": 0, "nbytes": ref.nbytes}
        meta.update(changes)
        return Header([meta["dtype"], meta["shape"], meta["offset"], meta["nbytes"]])

    def crafted(self) -> Crafted:
        return encode(self.reply)


Variant = Callable[[Tree], Crafted | None]
"""Breaks an honest reply tree in place (returns ``None``) or returns the bytes to send."""


def _set(target: Callable[[Tree], dict[str, Any]], key: str, value: Any) -> Variant:
    def variant(t: Tree) -> None:
        target(t)[key] = value() if callable(value) else value

    return variant


def _delete(target: Callable[[Tree], dict[str, Any]], key: str) -> Variant:
    def variant(t: Tree) -> None:
        del target(t)[key]

    return variant


def _array(make: Callable[[Tree], Any]) -> Variant:
    def variant(t: Tree) -> None:
        t.arrays[t.first] = make(t)

    return variant


def _filled(value: float) -> Callable[[Tree], Any]:
    def make(t: Tree) -> Any:
        array = np.zeros_like(t.template())
        array.flat[0] = value
        return array

    return make


def _early(t: Tree) -> None:
    t.reply["round"] = t.result["round"] = t.round + 1


def _list_payload(t: Tree) -> Crafted:
    return Crafted("TrainReply", msgpack.packb([t.round, "result"]))


def _deep_list(t: Tree) -> Crafted:
    # 3,000 nested arrays: deeper than msgpack (and Python's recursion) allow.
    head = b"\x82" + msgpack.packb("round") + msgpack.packb(t.round) + msgpack.packb("result")
    return Crafted("TrainReply", head + b"\x91" * 3000 + b"\xc0")


def _deep_objects(t: Tree) -> None:
    value: Any = 0.5
    for _ in range(150):
        value = Obj("training.MeanState", {"total": value, "count": 1.0})
    t.metrics["loss"] = value


def _garbage(t: Tree) -> Crafted:
    return Crafted("TrainReply", b"\xc1\xff\x00\x13")


def _bad_error(t: Tree) -> Crafted:
    return encode({"round": t.round, "stage": "bogus", "text": "x"}, "Error")


def _unknown_message(t: Tree) -> Crafted:
    crafted = t.crafted()
    return Crafted("NoSuchReply", crafted.payload, crafted.data)


def _scaffold(module: str) -> Variant:
    def variant(t: Tree) -> None:
        delta = Obj("training.Weights", {n: np.zeros_like(a) for n, a in t.weights.items()})
        t.result["aux"] = {module: Obj("training.ScaffoldAuxVar", {"delta": delta, "n_clients": 1})}

    return variant


VARIANTS: dict[str, Variant] = {
    "result_extra_field": _set(lambda t: t.result, "bonus", 1),
    "result_missing_effort": _delete(lambda t: t.result, "effort"),
    "reply_extra_field": _set(lambda t: t.reply, "extra", 0),
    "reply_missing_result": _delete(lambda t: t.reply, "result"),
    "weight_nan": _set(lambda t: t.updates, "weight", math.nan),
    "weight_inf": _set(lambda t: t.updates, "weight", math.inf),
    "weight_negative": _set(lambda t: t.updates, "weight", -1.0),
    "weight_string": _set(lambda t: t.updates, "weight", "1.0"),
    "weight_bool": _set(lambda t: t.updates, "weight", True),
    "updates_not_weights": _set(lambda t: t.updates, "updates", 5),
    "update_wrong_shape": _array(lambda t: np.zeros(t.template().size + 1, t.template().dtype)),
    "update_broadcast_shape": _array(
        lambda t: np.zeros((1,) * t.template().ndim, t.template().dtype)
    ),
    "update_wrong_dtype": _array(lambda t: t.template().astype(np.float32) * 0),
    "update_nan_value": _array(_filled(math.nan)),
    "update_inf_value": _array(_filled(-math.inf)),
    "weight_name_missing": _delete(lambda t: t.arrays, "bias"),
    "weight_name_extra": _set(lambda t: t.arrays, "zz_extra", lambda: np.zeros(3)),
    "aux_unknown_module": _scaffold("bogus"),
    "aux_not_an_auxvar": _set(lambda t: t.result, "aux", {"scaffold": 3}),
    "loss_as_float": _set(lambda t: t.metrics, "loss", 0.5),
    "metric_string_total": _set(lambda t: t.loss, "total", "0.5"),
    "metric_nan_total": _set(lambda t: t.loss, "total", math.nan),
    "effort_string_steps": _set(lambda t: t.effort, "n_steps", "2"),
    "effort_negative_samples": _set(lambda t: t.effort, "n_samples", -20),
    "ext_bad_dtype": _array(lambda t: t.header(dtype="<U8")),
    "ext_more_bytes_than_present": _array(
        lambda t: t.header(shape=[1 << 20], nbytes=(1 << 20) * t.template().itemsize)
    ),
    "ext_offset_outside_data": _array(lambda t: t.header(offset=1 << 40)),
    "ext_33_dims": _array(lambda t: t.header(shape=[1] * 33, nbytes=t.template().itemsize)),
    "ext_huge_shape": _array(lambda t: t.header(shape=[1 << 62, 1 << 62], nbytes=0)),
    "unknown_registered_type": _set(lambda t: t.reply, "result", Obj("training.NoSuchType", {})),
    "wrong_registered_type": _set(lambda t: t.reply, "result", Obj("training.Effort", {})),
    "unknown_message_type": _unknown_message,
    "list_payload": _list_payload,
    "string_round": _set(lambda t: t.reply, "round", "1"),
    "bool_round": _set(lambda t: t.reply, "round", True),
    "deeply_nested_list": _deep_list,
    "deeply_nested_objects": _deep_objects,
    "reply_before_request": _early,
    "result_round_mismatch": _set(lambda t: t.result, "round", 10_000),
    "garbage_payload": _garbage,
    "error_bad_stage": _bad_error,
}
"""Each way a reply is broken (issue 14 lists 35 kinds; a few more here)."""


def _poison(t: Tree) -> None:
    t.updates["weight"] = 1e3  # claims many samples, and moves each weight by 1e3
    for name, array in t.weights.items():
        t.arrays[name] = np.full_like(array, 1e6)


def craft(variant: str, round: int, weights: Weights) -> Crafted:
    """The bytes of ``variant`` for ``round``.

    ``"honest"``: the unbroken reply (a zero update); ``"poison"``: a
    well-formed reply whose update is huge (what robust aggregators resist).
    """
    tree = Tree(round, weights)
    if variant == "honest":
        return tree.crafted()
    if variant == "poison":
        _poison(tree)
        return tree.crafted()
    made = VARIANTS[variant](tree)
    return made if made is not None else tree.crafted()


# ----------------------------------------------------------------------------- actors


class HostileClient(Actor):
    """Joins, then answers every training request with a broken reply.

    Args:
        name: Its client name.
        variants: The variants it sends, one per request, in a cycle.
        server: The server's name.
    """

    def __init__(self, name: str, variants: Sequence[str], server: str = "server") -> None:
        self.name = name
        self.variants = list(variants)
        self.server = server
        self.sent: list[tuple[int, str]] = []  # (round, variant)

    async def run(self, ctx: Context) -> None:
        try:
            await ctx.connect(self.server, timeout=30.0)
        except (Rejected, TimeoutError):
            return
        weights: Weights | None = None
        while True:
            try:
                got = await ctx.recv((TrainRequest, EvaluationRequest), src=self.server)
                request = got.decode()
                if not isinstance(request, TrainRequest):
                    continue
                weights = request.weights if request.weights is not None else weights
                assert weights is not None, "the server never sent the weights"
                variant = self.variants[len(self.sent) % len(self.variants)]
                crafted = craft(variant, request.round, weights)
                self.sent.append((request.round, variant))
                await ctx.send(self.server, RawReply(crafted.type, crafted.payload, crafted.data))  # type: ignore[arg-type]
            except PeerGone:
                return


class HostilePlugin:
    """``plugin`` with some clients replaced by :class:`HostileClient` actors.

    Args:
        plugin: The protocol plugin (FedAvg, FedBuff ...).
        hostile: Client name -> the variants it sends (one per request, cycled).
    """

    def __init__(self, plugin: ProtocolPlugin, hostile: Mapping[str, Sequence[str]]) -> None:
        self.plugin = plugin
        self.name = plugin.name
        self.hostile = dict(hostile)
        self.actors: dict[str, HostileClient] = {}

    def validate(self, table: Mapping[str, Any], source: str) -> None:
        self.plugin.validate(table, source)

    def build(
        self, setup: ScenarioSetup, sim: Simulation, only: Collection[str] | None = None
    ) -> ProtocolRun:
        names = ["server", *setup.client_names] if only is None else list(only)
        run = self.plugin.build(setup, sim, [n for n in names if n not in self.hostile])
        for name in sorted(self.hostile):
            if name in names:
                self.actors[name] = HostileClient(name, self.hostile[name])
                sim.add(self.actors[name], daemon=True)
        return run


def body_of(crafted: Crafted) -> bytes:
    """The Send body a channel carries for ``crafted`` (for tests of the raw bytes)."""
    head = msgpack.packb([4, crafted.type, len(crafted.payload), len(crafted.data)])
    start = struct.pack(">I", len(head)) + head + crafted.payload
    pad = bytes(-len(start) % 8) if crafted.data else b""
    return start + pad + crafted.data
