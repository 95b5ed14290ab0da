"""The failure detector, driven synchronously (no event loop)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simkit.heartbeat import HeartbeatConfig, LivenessMonitor


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="interval"):
        HeartbeatConfig(interval=0)
    with pytest.raises(ValueError, match="misses"):
        HeartbeatConfig(misses=0)
    with pytest.raises(ValueError, match="one late heartbeat is not a dead peer"):
        HeartbeatConfig(misses=1)
    assert HeartbeatConfig(interval=2.0, misses=3).silence_limit == 6.0


def test_pings_only_when_idle() -> None:
    mon = LivenessMonitor(HeartbeatConfig(interval=1.0), now=0.0)
    assert mon.ping_due(0.5) is None
    assert mon.ping_due(1.0) == 1
    mon.sent(1.5)  # data counts as a heartbeat
    assert mon.ping_due(2.0) is None
    assert mon.ping_due(2.5) == 2


def test_pong_measures_round_trip() -> None:
    mon = LivenessMonitor(HeartbeatConfig(interval=1.0), now=0.0)
    seq = mon.ping_due(1.0)
    assert seq is not None
    mon.pong(seq, 1.25)
    assert mon.rtt == pytest.approx(0.25)


def test_disabled_never_pings_nor_declares() -> None:
    mon = LivenessMonitor(HeartbeatConfig(enabled=False), now=0.0)
    assert mon.ping_due(100.0) is None
    assert not mon.is_gone(1e9)


@given(
    interval=st.floats(0.1, 10.0),
    misses=st.integers(2, 6),
    crash=st.floats(0.0, 100.0),
    phase=st.floats(0.0, 1.0),
)
def test_silent_crash_is_declared_within_bounds(
    interval: float, misses: int, crash: float, phase: float
) -> None:
    # The peer speaks every `interval` (offset by `phase`) until it crashes.
    cfg = HeartbeatConfig(interval=interval, misses=misses)
    mon = LivenessMonitor(cfg, now=0.0)
    t = phase * interval
    while t <= crash:
        mon.heard(t)
        t += interval
    declared = mon.gone_at()
    assert crash + interval * (misses - 1) - 1e-6 <= declared <= crash + interval * misses + 1e-6
    assert mon.is_gone(declared)
    assert not mon.is_gone(declared - 1e-3)
