"""Hostile replies (issue 14): a malformed reply fails its sender, never the server.

A hostile client takes c009's place in the 10-client quickstart and answers
every training request with one broken reply (a variant of
:data:`hostile.VARIANTS`). Whatever it sends, the run completes its 5 rounds
with the 9 honest clients, the hostile one counted failed in each, and the
server logs why. The in-memory runs carry the same encoded bodies as TCP;
one run over loopback TCP checks several variants for real.
"""

from __future__ import annotations

import time
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols.fedavg import PLUGIN as FEDAVG
from protocols.fedavg import FedAvgCore, FedAvgOptions
from protocols.fedbuff import PLUGIN as FEDBUFF
from protocols.fedbuff import FedBuffCore, FedBuffOptions
from protocols.fedbuff._core import Job
from protocols.messages import Error, TrainReply, expect_train
from simkit.actors import Received
from simkit.codec import DecodeError
from simkit.messages import Send, SerializedMessage, decode_action, registered_types
from simkit.runner import RunResult, run_scenario
from simkit.scenario import build, load_scenario
from simkit.training import (
    Effort,
    MeanState,
    ModelUpdates,
    ScaffoldAuxVar,
    TrainResult,
    Weights,
)
from simkit.validation import Bad, Expect, Invalid, Late, check_reply, check_weights_like

from .hostile import VARIANTS, Crafted, Header, HostilePlugin, Obj, Tree, body_of, craft, encode

QUICKSTART = Path(__file__).parents[2] / "scenarios" / "quickstart.toml"
HOSTILE = "c009"
HONEST = tuple(f"c{i:03d}" for i in range(9))
WEIGHTS = Weights({"bias": np.zeros(5), "weights": np.zeros((20, 5))})


def quickstart(protocol: dict[str, Any] | None = None) -> dict[str, Any]:
    with QUICKSTART.open("rb") as handle:
        table = tomllib.load(handle)
    if protocol is not None:
        table["protocol"] = protocol
    return table


def received(crafted: Crafted, src: str = HOSTILE) -> Received:
    """What the server's mailbox holds for ``crafted``: decoded from the body a channel carries."""
    send = decode_action(body_of(crafted))
    assert isinstance(send, Send)
    assert isinstance(send.payload, SerializedMessage)
    return Received(src, send.payload, 0.0)


def logged(result: RunResult, text: str) -> list[str]:
    return [e.info for e in result.trace.events if e.kind == "log" and text in e.info]


# ----------------------------------------------------------------------------- the crafting


def test_there_are_at_least_35_variants() -> None:
    assert len(VARIANTS) >= 35


def test_the_honest_crafted_reply_is_what_simkit_encodes() -> None:
    tree = Tree(3, WEIGHTS)
    reply = TrainReply(
        3,
        TrainResult(
            3,
            ModelUpdates(Weights({n: np.zeros_like(a) for n, a in WEIGHTS.items()}), 1.0),
            {},
            {"loss": MeanState(0.5, 1.0)},
            Effort(1, 2, 20, 0.0),
        ),
    )
    ours = SerializedMessage.from_message(reply)
    crafted = tree.crafted()
    assert (crafted.payload, crafted.data) == (bytes(ours.payload), bytes(ours.data))
    assert check_reply(received(crafted), expect_train(3, WEIGHTS, {})) == reply


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_variant_is_refused_with_a_reason(variant: str) -> None:
    got = check_reply(received(craft(variant, 3, WEIGHTS)), expect_train(3, WEIGHTS, {}))
    if variant == "unknown_message_type":
        assert isinstance(got, Bad)
        assert "unexpected message type 'NoSuchReply'" in got.reason
        return
    assert isinstance(got, Bad), got
    assert got.src == HOSTILE
    assert got.reason
    assert "\n" not in got.reason
    assert "unexpectedly" not in got.reason  # every variant is caught by a named check


@pytest.mark.parametrize(
    ("variant", "needle"),
    [
        ("ext_bad_dtype", "unsupported array dtype '<U8'"),
        ("ext_more_bytes_than_present", "outside the data section of 800 bytes"),
        ("ext_offset_outside_data", "outside the data section"),
        ("ext_33_dims", "at most 32 ints"),
        ("ext_huge_shape", "header says 0"),
        ("deeply_nested_list", "nested too deeply"),
        ("deeply_nested_objects", "nested deeper than 100 levels"),
        ("list_payload", "expected a field map, got list"),
        ("unknown_registered_type", "unknown registered type 'training.NoSuchType'"),
        ("update_broadcast_shape", "shape (1,), the global weights' is (5,)"),
        ("weight_name_missing", "missing ['bias']"),
        ("weight_name_extra", "unexpected ['zz_extra']"),
        ("update_wrong_dtype", "dtype float32, the global weights' is float64"),
        ("update_nan_value", "NaN or infinite"),
        ("weight_nan", "weight must be finite"),
        ("aux_unknown_module", "no module 'bogus' takes an auxiliary variable"),
        ("loss_as_float", "must map a str to a MetricState, got float"),
        ("string_round", "TrainReply.round: expected int, got str"),
        ("reply_before_request", "answers round 4 before its request (round 3 is outstanding)"),
        ("result_round_mismatch", "result.round is 10000, the request's is 3"),
    ],
)
def test_reasons_name_the_problem(variant: str, needle: str) -> None:
    got = check_reply(received(craft(variant, 3, WEIGHTS)), expect_train(3, WEIGHTS, {}))
    assert isinstance(got, Bad)
    assert needle in got.reason


def test_scaffold_aux_is_accepted_only_where_the_server_takes_it() -> None:
    tree = Tree(2, WEIGHTS)
    VARIANTS["aux_unknown_module"](tree)
    aux = tree.result["aux"]
    tree.result["aux"] = {"scaffold": aux["bogus"]}
    item = received(tree.crafted())
    ok = check_reply(item, expect_train(2, WEIGHTS, {"scaffold": ScaffoldAuxVar}))
    assert isinstance(ok, TrainReply)
    refused = check_reply(item, expect_train(2, WEIGHTS, {}))
    assert isinstance(refused, Bad)
    assert "known: none" in refused.reason


# ----------------------------------------------------------------------------- check_reply


def test_nothing_outstanding_is_late_without_decoding() -> None:
    got = check_reply(received(Crafted("TrainReply", b"\xc1")), expect_train(None, WEIGHTS, {}))
    assert got == Late(HOSTILE, "TrainReply", None)


def test_an_earlier_round_is_late_and_an_error_of_this_round_passes() -> None:
    late = check_reply(received(craft("honest", 2, WEIGHTS)), expect_train(3, WEIGHTS, {}))
    assert late == Late(HOSTILE, "TrainReply", 2)
    error = encode({"round": 3, "stage": "train", "text": "ValueError: x"}, "Error")
    assert check_reply(received(error), expect_train(3, WEIGHTS, {})) == Error(
        3, "train", "ValueError: x"
    )


class _Exploding:
    src = HOSTILE
    type = "TrainReply"

    def decode(self) -> Any:
        raise RecursionError("deep")


def test_whatever_decoding_or_a_check_raises_is_the_senders_failure() -> None:
    got = check_reply(_Exploding(), expect_train(1, WEIGHTS, {}))
    assert isinstance(got, Bad)
    assert got.reason == "undecodable (unexpectedly): RecursionError: deep"

    def check(msg: Any) -> None:
        raise KeyError("boom")

    item = received(craft("honest", 1, WEIGHTS))
    got = check_reply(item, Expect((TrainReply,), 1, {TrainReply: check}))
    assert isinstance(got, Bad)
    assert "KeyError" in got.reason


def test_serialized_decode_raises_only_decode_errors() -> None:
    # A payload whose field check trips on a deep value: still a DecodeError.
    message = SerializedMessage("Error", b"\x83\xa5round\x01\xa5stage" + b"\x91" * 900 + b"\xc0")
    with pytest.raises(DecodeError):
        message.decode()


def test_weights_check_names_shapes_dtypes_and_finiteness() -> None:
    check_weights_like(WEIGHTS, WEIGHTS, "w")
    big = Weights({"bias": np.full(5, 1e308), "weights": np.full((20, 5), 1e308)})
    check_weights_like(big, WEIGHTS, "w")  # a sum that overflows is not a NaN
    with pytest.raises(Invalid, match=r"w\['bias'\]: holds NaN"):
        check_weights_like(Weights({**WEIGHTS.to_dict(), "bias": np.full(5, np.nan)}), WEIGHTS, "w")
    with pytest.raises(Invalid, match="must be Weights, got dict"):
        check_weights_like({"bias": 1}, WEIGHTS, "w")


# ----------------------------------------------------------------------------- whole runs


def run_with(
    plugin: Any, variants: list[str], table: dict[str, Any] | None = None, **kw: Any
) -> RunResult:
    hostile = HostilePlugin(plugin, {HOSTILE: variants})
    return run_scenario(table or quickstart(), plugin=hostile, **kw)


def assert_failed_every_round(result: RunResult) -> None:
    assert result.errors == []
    assert result.rounds_completed == 5
    for record in result.rounds:
        assert record.replied == HONEST, record
        assert HOSTILE in record.failed, record


def test_an_honest_crafted_reply_takes_part() -> None:
    result = run_with(FEDAVG, ["honest"])
    assert result.rounds_completed == 5
    assert [len(r.replied) for r in result.rounds] == [10] * 5


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_fedavg_fails_the_hostile_client_and_completes(variant: str) -> None:
    result = run_with(FEDAVG, [variant])
    assert_failed_every_round(result)
    if variant != "unknown_message_type":  # never taken: it fails by the round deadline
        reasons = logged(result, f"{HOSTILE} failed round 1 (train): bad ")
        assert len(reasons) == 1, logged(result, HOSTILE)
    assert np.isfinite(np.concatenate([a.ravel() for a in result.weights.values()])).all()


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_fedbuff_fails_the_hostile_client_and_completes(variant: str) -> None:
    table = quickstart({"name": "fedbuff", "buffer_size": 3})
    result = run_with(FEDBUFF, [variant], table)
    assert result.errors == []
    assert result.rounds_completed == 5
    assert all(HOSTILE not in r.replied for r in result.rounds)
    if variant != "unknown_message_type":
        assert any(HOSTILE in r.failed for r in result.rounds)
        assert logged(result, f"{HOSTILE} failed its request: bad ")


TCP_VARIANTS = [
    "ext_huge_shape",
    "weight_nan",
    "update_broadcast_shape",
    "list_payload",
    "reply_before_request",
]


def test_over_tcp_a_hostile_client_fails_each_round_and_the_run_completes() -> None:
    start = time.monotonic()
    result = run_with(FEDAVG, TCP_VARIANTS, transport="tcp")
    assert time.monotonic() - start < 15.0
    assert result.transport == "tcp"
    assert_failed_every_round(result)
    reasons = logged(result, f"{HOSTILE} failed round")
    assert len(reasons) == 5
    assert "header says 0" in reasons[0]
    assert "answers round 6 before its request" in reasons[4]


def test_over_tcp_fedbuff_fails_the_hostile_requests_and_completes() -> None:
    start = time.monotonic()
    table = quickstart({"name": "fedbuff", "buffer_size": 3})
    result = run_with(FEDBUFF, TCP_VARIANTS, table, transport="tcp")
    assert time.monotonic() - start < 15.0
    assert result.transport == "tcp"
    assert result.errors == []
    assert result.rounds_completed == 5
    assert all(HOSTILE not in r.replied for r in result.rounds)
    assert logged(result, f"{HOSTILE} failed its request: bad ")


# ----------------------------------------------------------------------------- generated


_LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(),
    st.text(max_size=8),
    st.binary(max_size=8),
)
_NAMES = st.sampled_from(
    [
        "training.Weights",
        "training.ModelUpdates",
        "training.MeanState",
        "training.Effort",
        "training.TrainResult",
        "training.EvalResult",
        "training.ScaffoldAuxVar",
        "training.NoSuchType",
        *registered_types(),
    ]
)
_DTYPES = st.sampled_from(["<f8", "<f4", ">f8", "|b1", "<i8", "<U8", "|O8", "<c16", 3, None])


def _header() -> st.SearchStrategy[Header]:
    dims = st.lists(st.integers(min_value=0, max_value=2**64 - 1) | st.just(5), max_size=34)
    count = st.integers(min_value=0, max_value=2**64 - 1) | st.sampled_from([0, 8, 40, 800])
    return st.builds(lambda *m: Header(list(m)), _DTYPES, dims, count, count)


def _values() -> st.SearchStrategy[Any]:
    return st.recursive(
        _LEAF | _header(),
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(
                st.text(max_size=6) | st.sampled_from(["round", "bias", "weight"]),
                inner,
                max_size=3,
            )
            | st.builds(Obj, _NAMES, inner)
        ),
        max_leaves=12,
    )


def _paths(tree: Tree) -> list[tuple[dict[str, Any], str]]:
    """Every (container, key) of an honest reply tree that a mutation may replace or drop."""
    out = []
    for table in (
        tree.reply,
        tree.result,
        tree.updates,
        tree.arrays,
        tree.loss,
        tree.effort,
        tree.metrics,
    ):
        out += [(table, key) for key in table]
    return out


@st.composite
def malformed(draw: st.DrawFn) -> Crafted:
    """An honest reply with a few fields replaced, dropped or added, or a named variant."""
    round = draw(st.integers(min_value=1, max_value=5))
    if draw(st.integers(0, 4)) == 0:
        return craft(draw(st.sampled_from(sorted(VARIANTS))), round, WEIGHTS)
    tree = Tree(round, WEIGHTS)
    for _ in range(draw(st.integers(1, 3))):
        table, key = draw(st.sampled_from(_paths(tree)))
        action = draw(st.sampled_from(["replace", "drop", "add"]))
        if action == "drop":
            table.pop(key, None)
        elif action == "add":
            table[draw(st.text(max_size=6))] = draw(_values())
        else:
            table[key] = draw(_values())
    return tree.crafted()


def _core() -> FedAvgCore:
    setup = build(load_scenario(quickstart())).setup
    return FedAvgCore(setup, FedAvgOptions.from_table({}, "x"))


def _check_generated(crafted: Crafted, core: FedAvgCore) -> None:
    """The property: checking never raises; what passes, the core can aggregate."""
    got = check_reply(received(crafted), expect_train(3, core.weights, core.aux_types()))
    if isinstance(got, Bad):
        assert got.reason
        assert "unexpectedly" not in got.reason, got.reason
        return
    if isinstance(got, Late):
        return
    assert isinstance(got, TrainReply), got
    before = core.weights
    outcome = core.aggregate({HOSTILE: got.result})
    assert outcome.updated or got.result.updates.weight == 0
    for name, array in core.weights.items():
        assert array.shape == before[name].shape
        assert np.isfinite(array).all()


_CORE: list[FedAvgCore] = []


def _shared_core() -> FedAvgCore:
    if not _CORE:
        _CORE.append(_core())
    return _CORE[0]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(malformed())
def test_generated_malformed_replies_never_escape(crafted: Crafted) -> None:
    _check_generated(crafted, _shared_core())


_BUFFERED: list[FedBuffCore] = []


def _check_generated_fedbuff(crafted: Crafted) -> None:
    """FedBuff: what passes the check, its core buffers and applies (K = 1)."""
    if not _BUFFERED:
        table = quickstart({"name": "fedbuff", "buffer_size": 1})
        setup = build(load_scenario(table)).setup
        _BUFFERED.append(FedBuffCore(setup, FedBuffOptions.from_table({"buffer_size": 1}, "x")))
    core = _BUFFERED[0]
    core.jobs[HOSTILE] = Job(session=1, round=3, base=core.version)
    got = check_reply(received(crafted), expect_train(3, core.weights, {}))
    if isinstance(got, Bad):
        assert "unexpectedly" not in got.reason, got.reason
    elif isinstance(got, TrainReply):
        core.on_reply(HOSTILE, got, 0.0)
        assert all(np.isfinite(a).all() for a in core.weights.values())
    core.jobs.pop(HOSTILE, None)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(malformed())
def test_generated_malformed_replies_never_escape_fedbuff(crafted: Crafted) -> None:
    _check_generated_fedbuff(crafted)


@pytest.mark.slow
@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(malformed())
def test_generated_malformed_replies_never_escape_fedbuff_many(crafted: Crafted) -> None:
    _check_generated_fedbuff(crafted)


@pytest.mark.slow
@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(malformed())
def test_generated_malformed_replies_never_escape_many(crafted: Crafted) -> None:
    _check_generated(crafted, _shared_core())
