"""Each invariant passes on a good run and explains a bad one."""

from __future__ import annotations

import numpy as np
import pytest

from simkit.heartbeat import HeartbeatConfig
from simkit.protocol import RoundRecord
from simkit.testing import (
    InvariantViolation,
    RuntimeRules,
    check_no_clear_update,
    check_rounds,
    check_secure_sum,
    check_terminates,
    check_weighted_mean,
)
from simkit.trace import Event


def events(*rows: tuple[float, str, str, str, str]) -> list[Event]:
    return [
        Event(t, seq, kind, src, dst, "Chat", 10, digest)
        for seq, (t, kind, src, dst, digest) in enumerate(rows)
    ]


def feed(rows: list[Event], **kw: object) -> RuntimeRules:
    rules = RuntimeRules(**kw)  # type: ignore[arg-type]
    rules.feed(rows)
    return rules


def test_a_clean_trace_passes() -> None:
    rules = feed(
        events(
            (0.0, "send", "a", "b", "d1"),
            (0.0, "send", "a", "b", "d2"),
            (0.1, "deliver", "a", "b", "d1"),
            (0.2, "lost", "a", "b", "d2"),
        )
    )
    rules.check_resolved(older_than=10.0)


def test_time_going_back_is_caught() -> None:
    with pytest.raises(InvariantViolation, match="time went back from 2 to 1 s"):
        feed(events((2.0, "send", "a", "b", "d"), (1.0, "deliver", "a", "b", "d")))


def test_delivery_to_a_crashed_actor_is_caught() -> None:
    rows = events(
        (0.0, "send", "a", "b", "d"), (0.0, "crash", "b", "", ""), (0.1, "deliver", "a", "b", "d")
    )
    with pytest.raises(InvariantViolation, match="delivered to crashed actor b"):
        feed(rows)


def test_reordering_is_caught_unless_allowed() -> None:
    rows = events(
        (0.0, "send", "a", "b", "d1"),
        (0.0, "send", "a", "b", "d2"),
        (0.1, "deliver", "a", "b", "d2"),
    )
    with pytest.raises(InvariantViolation, match="before 1 message"):
        feed(rows)
    feed(rows, fifo=False)


def test_a_vanished_message_is_caught() -> None:
    rules = feed(events((1.0, "send", "a", "b", "d")))
    rules.check_resolved(older_than=1.0)
    with pytest.raises(InvariantViolation, match=r"1 message.* from a to b vanished"):
        rules.check_resolved(older_than=1.5)


def test_a_delivery_without_send_is_caught() -> None:
    with pytest.raises(InvariantViolation, match="never sent"):
        feed(events((0.0, "deliver", "a", "b", "x")))


def detection(declared_at: float) -> list[Event]:
    return [
        Event(0.0, 0, "peer_up", "hub", "a"),
        Event(1.0, 1, "crash", "a", "", info="silent"),
        Event(declared_at, 2, "peer_down", "hub", "a", info="silent for 3 s (heartbeat)"),
    ]


def test_heartbeat_detection_bounds() -> None:
    hb = HeartbeatConfig(interval=1.0, misses=2)
    feed(detection(2.5), heartbeat=hb, watcher="hub")
    with pytest.raises(InvariantViolation, match=r"outside the heartbeat bounds \[1, 2\]"):
        feed(detection(3.5), heartbeat=hb, watcher="hub")
    with pytest.raises(InvariantViolation, match=r"outside the heartbeat bounds \[1, 2\]"):
        feed(detection(1.5), heartbeat=hb, watcher="hub")
    rules = feed(detection(2.5)[:2], heartbeat=hb, watcher="hub")
    rules.check_pending(3.0)
    with pytest.raises(InvariantViolation, match=r"had not declared it gone at t=3\.5"):
        rules.check_pending(3.5)


def rec(n: int, sampled: str, replied: str, failed: str, **kw: object) -> RoundRecord:
    return RoundRecord(
        n, tuple(sampled.split()), tuple(replied.split()), tuple(failed.split()), **kw
    )  # type: ignore[arg-type]


def test_rounds_pass_and_fail_with_reasons() -> None:
    good = [
        rec(1, "a b c", "a b c", "", t_start=0, t_end=5),
        rec(2, "a b c", "a", "b c", t_start=5, t_end=9, aborted=True, reason="1 of 2"),
    ]
    check_rounds(good, min_replies=2, crashed_at={"b": 6.0})
    cases = [
        ([rec(2, "a", "a", "")], "round 1 is numbered 2"),
        ([rec(1, "b a", "b a", "")], "sampled is not sorted"),
        ([rec(1, "a b", "a", "")], "differ from sampled on"),
        ([rec(1, "a b", "a b", "b")], "both replied and failed"),
        ([rec(1, "a b", "a", "b", aborted=True)], "aborted without a reason"),
        ([rec(1, "a b", "a", "b")], "below min_replies 2"),
    ]
    for rounds, text in cases:
        with pytest.raises(InvariantViolation, match=text):
            check_rounds(rounds, min_replies=2)
    with pytest.raises(InvariantViolation, match=r"\['a'\] replied although they crashed"):
        check_rounds([rec(1, "a", "a", "", t_start=2.0, t_end=3.0)], crashed_at={"a": 1.0})


def test_weighted_mean() -> None:
    parts = {"a": (np.array([1.0, 2.0]), 1.0), "b": (np.array([3.0, 6.0]), 3.0)}
    check_weighted_mean(np.array([2.5, 5.0]), parts)
    with pytest.raises(InvariantViolation, match="not the weighted mean of"):
        check_weighted_mean(np.array([2.0, 4.0]), parts)


def test_secure_sum_exactness() -> None:
    inputs = {"a": np.array([250, 3]), "b": np.array([10, 4]), "c": np.array([1, 1])}
    check_secure_sum(np.array([4, 7]), inputs, ["a", "b"], modulus=256)
    with pytest.raises(InvariantViolation, match=r"differs .* at 1 of 2 coordinates"):
        check_secure_sum(np.array([4, 8]), inputs, ["a", "b"], modulus=256)
    with pytest.raises(InvariantViolation, match="aborted although"):
        check_secure_sum(None, inputs, ["a"], modulus=256)


def test_no_clear_update() -> None:
    secret = {"a": np.array([0.5, -1.0, 2.0])}
    check_no_clear_update({"a": [np.array([17.0, 3.0, 9.0])]}, secret)
    check_no_clear_update({"a": [np.zeros(3)]}, {"a": np.zeros(3)})  # zeros hide nothing
    with pytest.raises(InvariantViolation, match="received a's update in clear"):
        check_no_clear_update({"a": [np.array([[0.5, -1.0, 2.0]])]}, secret)


def test_termination_bound() -> None:
    check_terminates(10.0, 10.0)
    with pytest.raises(InvariantViolation, match="ended at t=11 s, after its bound of 10 s"):
        check_terminates(11.0, 10.0)
