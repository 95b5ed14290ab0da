"""A lying SecAgg server through ``secure_sum``: honest clients refuse, nothing leaks."""

from __future__ import annotations

import contextlib
from typing import Any

import msgpack
import numpy as np
import pytest

from protocols.secagg import SecAggSettings
from simkit.actors import Actor, Context, PeerGone
from simkit.secagg import (
    SecAggAbort,
    SecAggCiphertexts,
    SecAggClient,
    SecAggMaskedInput,
    SecAggSetup,
    SecAggStage,
    SecAggUnmaskShares,
)
from simkit.secagg import _client as client_core
from simkit.simulation import Simulation

from ..hostile import RawReply
from .kit import SERVER, Run, SumClient, SumServer, expect_exact_sum, inputs_for, run_sum
from .liars import liar, pair_lie, split_lie, stolen_inputs

CASES = [
    pytest.param(10, SecAggSettings(mode="secagg"), id="secagg-n10-t6"),
    pytest.param(20, SecAggSettings(mode="secagg"), id="secagg-n20-t11"),
    pytest.param(30, SecAggSettings(mode="secagg+", neighbours=8), id="secagg+-n30-k8-t5"),
]


def _shares_sent(run: Run) -> int:
    return sum(1 for e in run.result.trace if e.kind == "send" and e.type == "SecAggUnmaskShares")


def _quantized(run: Run, name: str) -> np.ndarray:
    out = run.outcome()
    assert out.quantizer is not None
    return out.quantizer.quantize(run.inputs[name])


def _refusals(run: Run) -> list[str]:
    return [e.info for e in run.result.trace if e.kind == "log" and "refusing" in e.info]


@pytest.mark.parametrize(("n", "settings"), CASES)
def test_the_pair_lie_is_refused_by_every_client(n: int, settings: SecAggSettings) -> None:
    factory = liar(pair_lie("c03"))
    run = run_sum(n, settings, factory=factory)
    core = factory.built[0]  # type: ignore[attr-defined]
    out = run.outcome()
    assert out.aborted
    assert out.aborted_in == "unmasking"
    assert _shares_sent(run) == 0  # a refusal reveals nothing
    assert not any(isinstance(m, SecAggUnmaskShares) for _, m in core.received)
    assert stolen_inputs(core) == {}
    assert len(_refusals(run)) == n
    assert all(run.client(c).completed == {1: False} for c in run.names)


def test_the_split_lie_cannot_get_both_share_kinds_at_a_strict_majority() -> None:
    factory = liar(split_lie("c03"))
    run = run_sum(10, SecAggSettings(mode="secagg"), factory=factory)  # t = 6
    core = factory.built[0]  # type: ignore[attr-defined]
    assert run.outcome().aborted
    assert stolen_inputs(core) == {}
    b_of_target = sk_of_target = 0
    for _, msg in core.received:
        if isinstance(msg, SecAggUnmaskShares):
            b_of_target += "c03" in msg.b_owners
            sk_of_target += "c03" in msg.sk_owners
    # every client answered with one kind; with t > n/2 both kinds cannot reach t
    assert (b_of_target, sk_of_target) == (6, 4)


def test_the_split_lie_steals_an_input_below_a_strict_majority() -> None:
    # why a weak threshold is refused unless the scenario insists (docs/secagg.md)
    factory = liar(split_lie("c03"))
    run = run_sum(
        10, SecAggSettings(mode="secagg", threshold=4, allow_weak_threshold=True), factory=factory
    )
    stolen = stolen_inputs(factory.built[0])  # type: ignore[attr-defined]
    assert "c03" in stolen
    assert np.array_equal(stolen["c03"], _quantized(run, "c03"))


def test_a_client_sending_a_malformed_masked_input_fails_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    honest = SecAggClient._on_ciphertexts

    def short(self: SecAggClient, msg: Any) -> Any:
        reply = honest(self, msg)
        if self.name == "c02" and reply is not None:
            return SecAggMaskedInput(reply.round_id, reply.sender, reply.masked[:3])
        return reply

    key = (SecAggStage.SHARE_KEYS, SecAggCiphertexts)
    monkeypatch.setitem(client_core._TRANSITIONS, key, (short, SecAggStage.MASKED_INPUT))
    run = run_sum(6, SecAggSettings())
    out = run.outcome()
    assert not out.aborted, out.reason
    assert out.dropped == {"c02": "masked-input"}
    assert "c02" not in out.survivors
    expect_exact_sum(run)
    logs = [e.info for e in run.result.trace if e.kind == "log" and "c02 failed" in e.info]
    assert logs == ["secagg round 1: c02 failed: c02 sent a masked input of shape (3,)"]


class HostileSecAggClient(Actor):
    """Joins, then answers the round's setup with a crafted AdvertiseKeys reply."""

    def __init__(self, name: str, payload: bytes) -> None:
        self.name = name
        self.payload = payload

    async def run(self, ctx: Context) -> None:
        await ctx.connect(SERVER)
        await ctx.recv((SecAggSetup,), src=SERVER)
        await ctx.send(SERVER, RawReply("SecAggAdvertiseKeys", self.payload, b""))  # type: ignore[arg-type]
        with contextlib.suppress(PeerGone, TimeoutError):
            await ctx.recv((SecAggAbort,), src=SERVER, timeout=120.0)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\xc1\xff", "undecodable"),
        (msgpack.packb([1, 2, 3]), "undecodable"),
        (
            msgpack.packb({"round_id": 1, "sender": "c05", "c_pk": b"x", "s_pk": b"y"}),
            "items are 32 bytes",
        ),
    ],
    ids=["garbage", "list", "short-keys"],
)
def test_an_undecodable_client_reply_fails_that_client_only(payload: bytes, reason: str) -> None:
    names = [f"c{i:02d}" for i in range(5)]
    inputs = inputs_for(names, 8)
    settings = SecAggSettings()
    sim = Simulation(0, max_time=3600.0)
    sim.add(SumServer([*names, "c05"], 8, settings))
    for name in names:
        sim.add(SumClient(name, {1: inputs[name]}, settings), start_at=0.01)
    sim.add(HostileSecAggClient("c05", payload), start_at=0.01)
    result = sim.run()
    assert not result.errors, result.errors
    server = result.actors[SERVER]
    assert isinstance(server, SumServer)
    out = server.outcomes[1]
    assert not out.aborted, out.reason
    assert out.survivors == tuple(names)
    assert out.dropped == {"c05": "advertise-keys"}
    logs = [e.info for e in result.trace if e.kind == "log" and "from c05" in e.info]
    assert len(logs) == 1
    assert reason in logs[0]
