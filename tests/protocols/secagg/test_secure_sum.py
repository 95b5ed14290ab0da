"""secure_sum and secure_contribute over simulated actors: sums, dropouts, aborts, replay."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence

import numpy as np
import pytest

from protocols.secagg import (
    STAGES,
    SecAggSettings,
    cap_weight,
    flatten_fields,
    release,
    secure_contribute,
    secure_sum,
    unflatten_fields,
)
from simkit.actors import Actor, Context
from simkit.channels import Constant, LinkModel, NetworkModel
from simkit.heartbeat import HeartbeatConfig
from simkit.rng import SeedTree
from simkit.secagg import SecAggConfig, SecAggMaskedInput, SecAggServer
from simkit.simulation import Simulation
from simkit.testing import InvariantViolation, check_no_clear_update, check_secure_sum
from simkit.trace import Event
from simkit.training import ModelUpdates, Weights, sum_in_order

from .kit import (
    SERVER,
    SumClient,
    SumServer,
    crash_in,
    expect_exact_sum,
    names_for,
    run_sum,
)

STAGE_NAMES = [stage.value for stage in STAGES]


def sent(trace: Iterable[Event], type_name: str) -> int:
    return sum(1 for e in trace if e.kind == "send" and e.type == type_name)


# ----------------------------------------------------------------------------- fault-free


def test_fault_free_sum_is_exact_and_every_stage_is_marked() -> None:
    run = run_sum(6, SecAggSettings())
    expect_exact_sum(run)
    out = run.outcome()
    assert out.survivors == tuple(run.names)
    assert out.dropped == {}
    assert out.stale == 0
    assert out.late == 0
    assert list(out.stages) == STAGE_NAMES
    assert all(members == tuple(run.names) for members in out.stages.values())
    assert all(run.client(c).completed == {1: True} for c in run.names)
    marks = [e.info for e in run.result.trace if e.kind == "mark" and e.type == "secagg"]
    assert marks == [*STAGE_NAMES, "done"]


def test_the_server_never_holds_an_input_in_clear() -> None:
    cores: list[SecAggServer] = []

    def keep(config: SecAggConfig, names: Sequence[str], seeds: SeedTree) -> SecAggServer:
        cores.append(SecAggServer(config, names, seeds))
        return cores[-1]

    run = run_sum(5, SecAggSettings(), factory=keep)
    out = run.outcome()
    assert out.quantizer is not None
    received: dict[str, list[np.ndarray]] = {}
    for src, msg in cores[0].received:
        if isinstance(msg, SecAggMaskedInput):
            received.setdefault(src, []).append(msg.masked)
    assert sorted(received) == run.names
    quantized = {c: out.quantizer.quantize(x) for c, x in run.inputs.items()}
    check_no_clear_update(received, quantized)
    check_no_clear_update(received, run.inputs)


@pytest.mark.parametrize("prg", ["philox", "pcg64", "aes-ctr"])
def test_every_mask_generator_and_a_narrow_ring(prg: str) -> None:
    run = run_sum(4, SecAggSettings(prg=prg, bits=16, clip=1.0))  # type: ignore[arg-type]
    expect_exact_sum(run)
    assert run.outcome().quantizer.bits == 16  # type: ignore[union-attr]


def test_values_beyond_the_clip_are_clipped_and_logged() -> None:
    run = run_sum(4, SecAggSettings(clip=0.25), scale=1.0)
    expect_exact_sum(run)  # the sum of the clipped inputs, within the bound
    logs = [e for e in run.result.trace if e.kind == "log" and "clipped to +-0.25" in e.info]
    assert sorted(e.src for e in logs) == run.names


# ----------------------------------------------------------------------------- dropouts


@pytest.mark.parametrize("mode", ["silent", "loud"])
@pytest.mark.parametrize("stage", STAGE_NAMES)
def test_a_dropout_in_any_stage_leaves_the_survivors_sum(stage: str, mode: str) -> None:
    run = run_sum(7, SecAggSettings(), faults=[crash_in(stage, "c03", mode)])
    expect_exact_sum(run)
    out = run.outcome()
    assert out.dropped == {"c03": stage}
    # a client that drops while unmasking already sent its masked input: it is in the sum
    assert ("c03" in out.survivors) == (stage == "unmasking")
    survivors_completed = {c: run.client(c).completed[1] for c in run.names if c != "c03"}
    assert all(survivors_completed.values())


def test_dropouts_in_every_stage_of_one_round() -> None:
    drops = {
        "c01": "advertise-keys",
        "c03": "share-keys",
        "c05": "masked-input",
        "c07": "unmasking",
    }
    faults = [crash_in(stage, c) for c, stage in drops.items()]
    run = run_sum(10, SecAggSettings(), faults=faults)  # t = 6: U4 has exactly 6
    expect_exact_sum(run)
    out = run.outcome()
    assert out.dropped == drops
    assert out.survivors == tuple(c for c in run.names if c not in ("c01", "c03", "c05"))
    assert [len(out.stages[s]) for s in STAGE_NAMES] == [9, 8, 7, 6]
    # the pairwise masks of c05 (dropped after sharing keys) were rebuilt from its key shares
    assert sent(run.result.trace, "SecAggUnmaskShares") == 6


def test_a_stage_timeout_drops_a_slow_client_and_its_stale_replies_are_ignored() -> None:
    # c04 -> server: every reply comes after its stage closed
    slow = LinkModel(latency=Constant(2.5))
    network = NetworkModel(links={("c04", SERVER): slow})
    run = run_sum(
        5,
        SecAggSettings(stage_timeout=2.0),
        rounds=(1, 2),
        network=network,
        heartbeat=HeartbeatConfig(interval=1.0, misses=10),
    )
    for r in (1, 2):
        expect_exact_sum(run, r)
        assert run.outcome(r).dropped == {"c04": "advertise-keys"}
    assert run.outcome(2).stale >= 1  # round 1's reply, come during round 2, never fed to it
    assert run.client("c04").completed == {1: False, 2: False}
    released = [e for e in run.result.trace if e.kind == "log" and e.src == "c04"]
    assert any("left out of round 1" in e.info for e in released), [e.info for e in released]


# ----------------------------------------------------------------------------- aborts


@pytest.mark.parametrize(
    ("stage", "reason"),
    [
        ("advertise-keys", "3 clients answered in stage advertise-keys, threshold 4"),
        ("share-keys", "3 clients answered in stage share-keys, threshold 4"),
        ("masked-input", "3 clients answered in stage masked-input, threshold 4"),
        ("unmasking", "3 clients answered in stage unmasking, threshold 4"),
    ],
)
def test_below_the_threshold_the_round_aborts_and_reveals_nothing(stage: str, reason: str) -> None:
    faults = [crash_in(stage, c) for c in ("c00", "c02", "c04")]
    run = run_sum(6, SecAggSettings(), faults=faults)  # t = 4
    out = run.outcome()
    assert out.aborted
    assert out.total is None
    assert out.total_int is None
    assert out.aborted_in == stage
    assert out.reason == reason
    assert {c: out.dropped[c] for c in ("c00", "c02", "c04")} == dict.fromkeys(
        ("c00", "c02", "c04"), stage
    )
    # in the last stage the others sent their shares before the server gave up
    done = stage == "unmasking"
    assert all(run.client(c).completed == {1: done} for c in ("c01", "c03", "c05"))
    trace = list(run.result.trace)
    if stage != "unmasking":
        assert sent(trace, "SecAggUnmaskShares") == 0  # no share of any secret left a client
    marks = [e.info for e in trace if e.kind == "mark" and e.type == "secagg"]
    assert marks[-1] == "aborted"
    with pytest.raises(ValueError, match="aborted"):
        out.error_bound()


def test_a_threshold_the_cohort_cannot_meet_aborts_at_setup_and_releases_everyone() -> None:
    run = run_sum(4, SecAggSettings(threshold=5))
    out = run.outcome()
    assert out.aborted_in == "setup"
    assert out.stages == {}
    assert out.dropped == {}
    assert out.reason == (
        "cannot set up round 1 among 4 clients: threshold 5 exceeds the cohort of 4 clients"
    )
    assert all(run.client(c).completed == {1: False} for c in run.names)
    assert run.result.end_time < 1.0  # released at once, not after a timeout


# ----------------------------------------------------------------------------- SecAgg+


def test_secagg_plus_sums_exactly_over_a_sparse_graph() -> None:
    settings = SecAggSettings(mode="secagg+", neighbours=4)  # t = 3 of 5 in each neighbourhood
    faults = [crash_in("share-keys", "c02"), crash_in("masked-input", "c07")]
    run = run_sum(12, settings, faults=faults)
    expect_exact_sum(run)
    out = run.outcome()
    assert out.config is not None
    assert out.config.mode == "secagg+"
    assert out.config.threshold == 3
    assert out.dropped == {"c02": "share-keys", "c07": "masked-input"}
    full = run_sum(12, SecAggSettings(), faults=faults)
    plus_bytes = sum(e.nbytes for e in run.result.trace if e.kind == "send")
    full_bytes = sum(e.nbytes for e in full.result.trace if e.kind == "send")
    assert plus_bytes < full_bytes  # keys and shares for 4 neighbours, not 11


# ----------------------------------------------------------------------------- replay


def test_the_same_seed_gives_the_same_trace() -> None:
    faults = [crash_in("masked-input", "c01"), crash_in("share-keys", "c04", "loud")]
    a = run_sum(6, SecAggSettings(mode="secagg+", neighbours=4), faults=faults, seed=5)
    b = run_sum(6, SecAggSettings(mode="secagg+", neighbours=4), faults=faults, seed=5)
    c = run_sum(6, SecAggSettings(mode="secagg+", neighbours=4), faults=faults, seed=6)
    assert a.result.digest == b.result.digest
    assert np.array_equal(a.outcome().total_int, b.outcome().total_int)  # type: ignore[arg-type]
    assert a.result.digest != c.result.digest


# ----------------------------------------------------------------------------- a buggy server


class ForgetfulServer(SecAggServer):
    """Forgets the clients that dropped between ShareKeys and MaskedInput."""

    def _masks_to_recover(self, u2: frozenset[str], u3: frozenset[str]) -> frozenset[str]:
        return frozenset()


def test_a_server_that_skips_mask_recovery_sums_wrong() -> None:
    fine = run_sum(6, SecAggSettings(), factory=ForgetfulServer)
    expect_exact_sum(fine)  # without that dropout the bug does not show
    late = [crash_in("unmasking", "c02")]
    elsewhere = run_sum(6, SecAggSettings(), factory=ForgetfulServer, faults=late)
    expect_exact_sum(elsewhere)
    masked = [crash_in("masked-input", "c02")]
    run = run_sum(6, SecAggSettings(), factory=ForgetfulServer, faults=masked)
    out = run.outcome()
    assert not out.aborted
    assert out.quantizer is not None
    quantized = {c: out.quantizer.quantize(run.inputs[c]) for c in out.survivors}
    with pytest.raises(InvariantViolation, match="unmasked sum differs from the survivors' sum"):
        check_secure_sum(out.total_int, quantized, out.survivors, modulus=1 << out.quantizer.bits)
    honest = run_sum(6, SecAggSettings(), faults=masked)
    expect_exact_sum(honest)  # ... and the same schedule with the real server is right


# ----------------------------------------------------------------------------- integration


class PartialServer(Actor):
    """Leaves ``left_out`` out of the round and releases them."""

    def __init__(self, clients: Collection[str], left_out: Collection[str]) -> None:
        self.name = SERVER
        self.clients = sorted(clients)
        self.left_out = sorted(left_out)
        self.settings = SecAggSettings()

    async def run(self, ctx: Context) -> None:
        ctx.listen()
        await ctx.wait_for_peers(len(self.clients), timeout=10.0)
        await release(ctx, self.left_out, 1, "your update came too late")
        cohort = [c for c in self.clients if c not in self.left_out]
        self.outcome = await secure_sum(ctx, cohort, 8, self.settings, ctx.seeds, 1)
        await ctx.sleep(100.0)  # stay connected: the released client must not wait for this


def test_a_released_client_stops_waiting_at_once() -> None:
    names = names_for(4)
    sim = Simulation(1)
    server = PartialServer(names, ["c03"])
    sim.add(server)
    clients = {n: SumClient(n, {1: np.full(8, 0.125)}, SecAggSettings()) for n in names}
    for client in clients.values():
        sim.add(client, start_at=0.01)
    result = sim.run()
    assert not result.errors
    assert server.outcome.total is not None
    assert server.outcome.total.tolist() == [0.375] * 8
    assert clients["c03"].completed == {1: False}
    (note,) = [e for e in result.trace if e.kind == "log" and e.src == "c03"]
    assert note.info == "secagg round 1: released: your update came too late"
    assert note.t < 1.0
    assert all(clients[c].completed == {1: True} for c in ("c00", "c01", "c02"))


class MisfitClient(Actor):
    name = "c01"

    async def run(self, ctx: Context) -> None:
        await ctx.connect(SERVER)
        await secure_contribute(ctx, SERVER, np.zeros(3), SecAggSettings(), ctx.seeds, 1)


def test_a_client_whose_vector_has_another_length_fails_loudly() -> None:
    sim = Simulation(2)
    sim.add(SumServer(names_for(3), 5, SecAggSettings()))
    sim.add(SumClient("c00", {1: np.ones(5)}, SecAggSettings()), start_at=0.01)
    sim.add(MisfitClient(), start_at=0.01)
    sim.add(SumClient("c02", {1: np.ones(5)}, SecAggSettings()), start_at=0.01)
    result = sim.run()
    assert [actor for actor, _ in result.errors] == ["c01"]
    assert "round 1 sums vectors of 5 values, this client has 3" in result.errors[0][1]
    server = result.actors[SERVER]
    assert isinstance(server, SumServer)
    out = server.outcomes[1]
    assert out.survivors == ("c00", "c02")
    assert out.total is not None
    assert out.total.tolist() == [2.0] * 5


def test_model_updates_through_a_secure_sum_give_the_weighted_mean() -> None:
    names = names_for(5)
    tree = SeedTree(9)
    base = Weights({"w": np.zeros((4, 3), dtype=np.float32), "b": np.zeros(3)})

    def update(client: str) -> Weights:
        rng = tree.numpy("u", client)
        return base.map(lambda a: rng.normal(0, 0.1, a.shape).astype(a.dtype))

    raw = {n: ModelUpdates.weighted(update(n), float(20 + 10 * i)) for i, n in enumerate(names)}
    capped = {n: cap_weight(u, 100.0) for n, u in raw.items()}
    template = ModelUpdates(base.zeros_like(), 0.0)
    _, spec = flatten_fields(template)
    sim = Simulation(3)
    settings = SecAggSettings(clip=1.0)
    sim.add(SumServer(names, spec.length, settings))
    for n in names:
        sim.add(SumClient(n, {1: flatten_fields(capped[n])[0]}, settings), start_at=0.01)
    result = sim.run()
    server = result.actors[SERVER]
    assert isinstance(server, SumServer)
    out = server.outcomes[1]
    assert out.total is not None
    total = unflatten_fields(out.total, spec, template)
    expected = sum_in_order(raw)
    assert total.weight == pytest.approx(expected.weight / 100.0, abs=out.error_bound())
    for name in base:
        got, want = total.mean()[name], expected.mean()[name]
        assert got.dtype == want.dtype
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_a_survivor_graph_split_in_two_aborts_before_any_share_is_revealed() -> None:
    # issue 14: 12 clients, k = 4, four crash at the masked-input stage in two gaps
    # of k/2 on the ring: unmasking would give the server each half's sum
    names = names_for(12)
    graph_seed = SeedTree(0).child("actor", SERVER).child("secagg", 1)
    ring = [names[i] for i in graph_seed.numpy("neighbour-graph").permutation(12)]
    gone = [ring[2], ring[3], ring[8], ring[9]]
    faults = [crash_in("masked-input", c) for c in gone]
    run = run_sum(12, SecAggSettings(mode="secagg+", neighbours=4), faults=faults)
    out = run.outcome()
    assert out.aborted_in == "masked-input"
    assert out.reason == (
        "the survivors' graph splits into 2 groups of sizes [4, 4]: "
        "unmasking would reveal each group's sum"
    )
    assert sent(run.result.trace, "SecAggUnmaskShares") == 0
