"""Active-adversary mode through ``secure_sum``: honest rounds sum, a split-view liar is caught."""

from __future__ import annotations

import numpy as np
import pytest

from protocols.secagg import SecAggSettings
from protocols.secagg._attack import SplitViewServer, split_view
from simkit.secagg import (
    ACTIVE_STAGES,
    SecAggConfig,
    SecAggServer,
    SecAggSignedKeyList,
)

from .kit import crash_in, expect_exact_sum, run_sum

ACTIVE = SecAggSettings(adversary="active")


def _shares_sent(run) -> int:  # type: ignore[no-untyped-def]
    return sum(1 for e in run.result.trace if e.kind == "send" and e.type == "SecAggUnmaskShares")


def test_an_honest_active_round_sums_exactly_with_a_consistency_stage() -> None:
    run = run_sum(9, ACTIVE, faults=[crash_in("masked-input", "c04")])
    expect_exact_sum(run)
    out = run.outcome()
    assert out.config is not None
    assert (out.config.adversary, out.config.threshold) == ("active", 7)  # > 2n/3
    assert list(out.stages) == [s.value for s in ACTIVE_STAGES]
    assert out.dropped == {"c04": "masked-input"}
    marks = [e.info for e in run.result.trace if e.kind == "mark" and e.type == "secagg"]
    assert marks == [*(s.value for s in ACTIVE_STAGES), "done"]


def test_an_honest_active_secagg_plus_round_sums_exactly() -> None:
    settings = SecAggSettings(mode="secagg+", neighbours=8, adversary="active")  # t = 7 of 9
    run = run_sum(24, settings, faults=[crash_in("share-keys", "c05")])
    expect_exact_sum(run)


def test_a_client_leaving_in_the_consistency_check_does_not_stop_the_round() -> None:
    from simkit.faults import Crash, Trigger

    trigger = Trigger(kind="deliver", dst="c02", type="SecAggConsistencyCheck")
    run = run_sum(10, ACTIVE, faults=[Crash(on=trigger, actor="c02", mode="silent")])
    expect_exact_sum(run)
    assert "c02" in run.outcome().survivors  # its masked input is in the sum
    assert run.outcome().dropped == {"c02": "consistency-check"}


def test_passive_mode_loses_an_input_to_the_split_view_attack() -> None:
    # the limit of passive mode, at its default strict majority (n = 10, t = 6)
    cores: list[SecAggServer] = []
    attacker = split_view("c03")

    def keep(config: SecAggConfig, names, seeds):  # type: ignore[no-untyped-def]
        cores.append(attacker(config, names, seeds))
        return cores[-1]

    run = run_sum(10, SecAggSettings(), factory=keep)
    core = cores[0]
    assert isinstance(core, SplitViewServer)
    assert list(core.stolen) == ["c03"]
    out = run.outcome()
    assert out.quantizer is not None
    assert np.array_equal(core.stolen["c03"], out.quantizer.quantize(run.inputs["c03"]))
    assert out.reason == "attack: the server recovered the input of c03"


def test_active_mode_catches_the_split_view_attack_and_reveals_nothing() -> None:
    run = run_sum(10, SecAggSettings(adversary="active", attack="split-view:c03"))
    out = run.outcome()
    assert out.aborted_in == "unmasking"
    assert out.reason == "0 clients answered in stage unmasking, threshold 7"
    assert _shares_sent(run) == 0
    refusals = [e.info for e in run.result.trace if e.kind == "log" and "signed its" in e.info]
    assert len(refusals) == 10
    logs = [e.info for e in run.result.trace if e.kind == "log" and "attack on" in e.info]
    assert logs == ["secagg round 1: attack on c03: recovered no input"]


class KeySwapper(SecAggServer):
    """Replaces c01's masking key with its own in everyone's key list (a man in the middle)."""

    def _after_advertise(self, u1):  # type: ignore[no-untyped-def]
        sends = super()._after_advertise(u1)
        for v, msg in sends.items():
            if isinstance(msg, SecAggSignedKeyList) and "c01" in msg.names:
                i = msg.names.index("c01")
                s_pks = (*msg.s_pks[:i], bytes(range(32)), *msg.s_pks[i + 1 :])
                sends[v] = SecAggSignedKeyList(
                    msg.round_id, msg.names, msg.c_pks, s_pks, msg.signatures
                )
        return sends


def test_active_mode_catches_a_swapped_key() -> None:
    run = run_sum(6, ACTIVE, factory=KeySwapper)
    out = run.outcome()
    assert out.aborted_in == "share-keys"
    logs = [e.info for e in run.result.trace if e.kind == "log" and "not signed by 'c01'" in e.info]
    assert len(logs) == 6
    assert _shares_sent(run) == 0


@pytest.mark.parametrize(
    ("settings", "needle"),
    [
        (SecAggSettings(adversary="active", threshold=6), "is not more than 2/3 of the cohort"),
        (SecAggSettings(adversary="active", threshold=0.6), "needs >= 7"),
    ],
)
def test_active_mode_needs_more_than_two_thirds(settings: SecAggSettings, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        settings.check_cohort(10)


def test_active_mode_over_real_sockets_needs_seeded_identities() -> None:
    run = run_sum(4, ACTIVE, mode="real")
    refusals = [e.info for e in run.result.trace if e.kind == "log" and "needs a PKI" in e.info]
    assert len(refusals) == 4
    assert run.outcome().aborted
