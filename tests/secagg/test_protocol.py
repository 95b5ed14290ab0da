"""The SecAgg / SecAgg+ cores driven synchronously under hypothesis-drawn dropout schedules."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from simkit.rng import SeedTree
from simkit.secagg import (
    OsEntropy,
    SecAggClient,
    SecAggConfig,
    SecAggMaskedInput,
    SecAggServer,
    SecAggStage,
    SecAggUnmaskShares,
)

from .harness import Round, drive, make_inputs, names_for, predict

STAGE_OF = {
    1: SecAggStage.ADVERTISE_KEYS,
    2: SecAggStage.SHARE_KEYS,
    3: SecAggStage.MASKED_INPUT,
    4: SecAggStage.UNMASKING,
}
PROTOCOL = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check_round(run: Round, drops: dict[str, int]) -> None:
    """The invariants of every round, whatever its outcome."""
    pred = predict(run.server, drops)
    result = run.result
    event(f"ok={result.ok} aborted_in={result.aborted_in}")
    if pred.ok:
        assert result.ok, result.reason
        assert set(result.survivors) == pred.survivors
        expected = np.zeros(run.server.config.length, dtype=np.uint64)
        for name in result.survivors:
            expected += run.inputs[name]
        expected &= np.uint64((1 << run.server.config.bits) - 1)
        assert result.total is not None
        np.testing.assert_array_equal(result.total, expected)
    else:
        assert not result.ok
        assert result.total is None
        assert result.reason
        assert result.aborted_in is STAGE_OF[pred.aborted_in or 4]
        if result.aborted_in is not SecAggStage.UNMASKING:  # no share was ever asked for
            assert not any(isinstance(m, SecAggUnmaskShares) for _, m in run.server.received)
        for name, client in run.clients.items():
            if name not in drops:
                assert client.stage is SecAggStage.ABORTED
                assert client.abort_reason
    check_never_both(run)
    check_shrinking_sets(run)


def check_never_both(run: Round) -> None:
    b_owners: set[str] = set()
    sk_owners: set[str] = set()
    for _, msg in run.server.received:
        if isinstance(msg, SecAggUnmaskShares):
            b_owners.update(msg.b_owners)
            sk_owners.update(msg.sk_owners)
    assert not b_owners & sk_owners


def check_shrinking_sets(run: Round) -> None:
    sets = [set(s) for s in run.result.stages]
    assert all(a >= b for a, b in itertools.pairwise(sets))
    masked = {n for n, m in run.server.received if isinstance(m, SecAggMaskedInput)}
    if run.result.ok:
        assert set(run.result.survivors) == set(sets[2]) <= masked


@st.composite
def schedules(draw: st.DrawFn, n: int) -> tuple[dict[str, int], set[str]]:
    rate = draw(st.sampled_from([0.0, 0.1, 0.3, 0.6]))
    drops: dict[str, int] = {}
    for name in names_for(n):
        if draw(st.floats(0, 1)) < rate:
            drops[name] = draw(st.integers(1, 4))
    late = {n for n in drops if draw(st.booleans())}
    return drops, late


@st.composite
def full_rounds(draw: st.DrawFn) -> tuple[SecAggConfig, int, dict[str, int], set[str], int]:
    n = draw(st.integers(3, 40))
    t = draw(st.integers(max(2, n // 2 + 1), n))
    bits = draw(st.sampled_from([8, 16, 32, 62]))
    prg = draw(st.sampled_from(["philox", "pcg64", "aes-ctr"]))
    config = SecAggConfig(threshold=t, bits=bits, length=draw(st.integers(1, 6)), prg=prg)
    drops, late = draw(schedules(n))
    return config, n, drops, late, draw(st.integers(0, 2**32))


@st.composite
def sparse_rounds(draw: st.DrawFn) -> tuple[SecAggConfig, int, dict[str, int], set[str], int]:
    n = draw(st.integers(6, 40))
    k = draw(st.integers(2, n - 3))
    k_even = k + k % 2
    t = draw(st.integers(max(2, k_even // 2 + 1), k_even + 1))
    config = SecAggConfig(threshold=t, bits=32, length=3, mode="secagg+", degree=k)
    drops, late = draw(schedules(n))
    return config, n, drops, late, draw(st.integers(0, 2**32))


@PROTOCOL
@given(full_rounds())
def test_secagg_sum_is_exact_or_round_aborts(case: tuple) -> None:
    config, n, drops, late, seed = case
    run = drive(config, names_for(n), drops, late=late, seed=seed)
    assert run.server.graph.is_complete
    check_round(run, drops)


@PROTOCOL
@given(sparse_rounds())
def test_secagg_plus_sum_is_exact_or_round_aborts(case: tuple) -> None:
    config, n, drops, late, seed = case
    run = drive(config, names_for(n), drops, late=late, seed=seed)
    check_round(run, drops)


@pytest.mark.parametrize("stage", [1, 2, 3, 4])
def test_abort_when_too_few_survive_a_stage(stage: int) -> None:
    config = SecAggConfig(threshold=4, bits=16, length=2)
    drops = {"c00": stage, "c01": stage}
    run = drive(config, names_for(5), drops)
    assert not run.result.ok
    assert run.result.aborted_in is STAGE_OF[stage]
    assert "threshold 4" in (run.result.reason or "")


@pytest.mark.parametrize("stage", [2, 3, 4])
def test_drop_in_each_stage_recovers(stage: int) -> None:
    config = SecAggConfig(threshold=3, bits=20, length=4)
    run = drive(config, names_for(6), {"c02": stage, "c04": stage})
    survivors = {"c00", "c01", "c03", "c05"} | ({"c02", "c04"} if stage == 4 else set())
    assert run.result.ok
    assert set(run.result.survivors) == survivors


def test_dropped_after_masking_needs_key_shares() -> None:
    """A client of U2 \\ U3 has its s_sk rebuilt; survivors' b seeds are rebuilt."""
    config = SecAggConfig(threshold=3, bits=32, length=5)
    run = drive(config, names_for(5), {"c01": 3})
    shares = [m for _, m in run.server.received if isinstance(m, SecAggUnmaskShares)]
    assert {o for m in shares for o in m.sk_owners} == {"c01"}
    assert {o for m in shares for o in m.b_owners} == {"c00", "c02", "c03", "c04"}


def test_secagg_plus_default_degree_caps_at_complete() -> None:
    config = SecAggConfig(threshold=5, bits=32, length=2, mode="secagg+")
    run = drive(config, names_for(12), {})
    assert run.server.graph.is_complete
    assert run.result.ok


def test_same_seed_same_transcript() -> None:
    config = SecAggConfig(threshold=4, bits=32, length=8, mode="secagg+", degree=6)
    drops = {"c03": 3, "c07": 2, "c11": 4}
    first = drive(config, names_for(16), drops, seed=11)
    again = drive(config, names_for(16), drops, seed=11)
    other = drive(config, names_for(16), drops, seed=12)
    assert first.transcript == again.transcript
    assert first.transcript != other.transcript
    assert first.result.total is not None
    assert again.result.total is not None
    np.testing.assert_array_equal(first.result.total, again.result.total)


def test_inputs_are_hidden_from_the_server() -> None:
    """A masked input looks nothing like the input it hides."""
    config = SecAggConfig(threshold=3, bits=32, length=64)
    zeros = {n: np.zeros(64, dtype=np.uint64) for n in names_for(4)}
    run = drive(config, names_for(4), {}, inputs=zeros)
    for _, msg in run.server.received:
        if isinstance(msg, SecAggMaskedInput):
            assert np.count_nonzero(msg.masked) > 60
    assert run.result.total is not None
    assert not run.result.total.any()


def test_os_entropy_clients_complete_a_round() -> None:
    """The switch a real deployment makes: keys and seeds from os.urandom."""
    config = SecAggConfig(threshold=3, bits=32, length=4)
    names = names_for(5)
    inputs = make_inputs(names, 4, 32, seed=1)
    server = SecAggServer(config, names, SeedTree(0))
    clients = {n: SecAggClient(n, OsEntropy(), inputs[n]) for n in names}
    sends = server.start()
    while server.result is None:
        replies = {n: clients[n].receive(m) for n, m in sends.items() if n != "c02"}
        sends = server.step({n: r for n, r in replies.items() if r is not None}, names)
    assert server.result.total is not None
    expected = sum(inputs[n] for n in names if n != "c02") & np.uint64(2**32 - 1)
    np.testing.assert_array_equal(server.result.total, expected)
