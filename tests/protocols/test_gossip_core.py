"""The gossip peer's sans-I/O core, driven synchronously: no event loop, time passed in."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from protocols.gossip import (
    RETRY,
    Arrived,
    Command,
    Connect,
    Connected,
    GossipCore,
    Listen,
    LocalRound,
    Look,
    Peers,
    Record,
    Send,
    Sent,
    Share,
    Stop,
    Train,
    Trained,
    Wait,
)
from simkit.training import Weights


def w(x: float) -> Weights:
    return Weights({"w": np.array([x], dtype=np.float64)})


def value(weights: Weights) -> float:
    return float(weights["w"][0])


def started(
    name: str = "b", neighbours: tuple[str, ...] = ("a", "c"), rounds: int = 3, **kw: bool
) -> GossipCore:
    """A core past listening and gathering, about to train round 1 (every neighbour up)."""
    core = GossipCore(name, neighbours, w(0.0), rounds=rounds, timeout=5.0, **kw)
    assert core.next_command(0.0) == Listen(tuple(sorted(neighbours)))
    assert core.next_command(0.0) == Look()
    lower = frozenset(n for n in neighbours if n < name)
    core.handle(Peers(lower), 0.0)
    for peer in sorted(n for n in neighbours if n > name):
        assert core.next_command(0.0) == Connect(peer)  # only higher names are dialled
        core.handle(Connected(peer, True), 0.0)
    return core


def train_and_share(core: GossipCore, now: float, trained: float) -> None:
    command = core.next_command(now)
    assert isinstance(command, Train)
    core.handle(Trained(command.round, w(trained), 0.5), now)
    sent = core.next_command(now)
    assert isinstance(sent, Send)
    assert sent.message.round == command.round
    core.handle(Sent(()), now)


def test_a_round_averages_the_trained_weights_with_the_neighbours_shares() -> None:
    core = started()
    train_and_share(core, 1.0, 2.0)
    assert core.next_command(1.0) == Wait(("a", "c"), 5.0, joins=True)
    core.handle(Arrived("a", Share(1, w(4.0))), 1.5)
    assert core.next_command(1.5) == Wait(("c",), 4.5, joins=True)
    core.handle(Arrived("c", Share(1, w(6.0))), 2.0)
    record = core.next_command(2.0)
    assert isinstance(record, Record)
    local = record.local
    assert (local.round, local.heard, local.skipped, local.loss) == (1, ("a", "c"), (), 0.5)
    assert value(local.weights) == 4.0  # (2 + 4 + 6) / 3
    assert core.next_command(2.0) == Look()  # round 2: look and redial first


def test_a_silent_neighbour_is_skipped_at_the_deadline() -> None:
    core = started()
    train_and_share(core, 1.0, 2.0)
    core.handle(Arrived("a", Share(1, w(4.0))), 2.0)
    assert core.next_command(2.0) == Wait(("c",), 4.0, joins=True)
    core.handle(Peers(frozenset({"a", "c"})), 6.0)  # the wait timed out
    record = core.next_command(6.0)
    assert isinstance(record, Record)
    assert (record.local.heard, record.local.skipped) == (("a",), ("c",))
    assert value(record.local.weights) == 3.0


def test_a_neighbour_that_went_away_is_not_waited_for() -> None:
    core = started()
    train_and_share(core, 1.0, 2.0)
    core.handle(Peers(frozenset({"c"})), 1.2)  # a went away
    assert core.next_command(1.2) == Wait(("c",), pytest.approx(4.8), joins=True)
    core.handle(Arrived("c", Share(1, w(2.0))), 1.3)
    record = core.next_command(1.3)
    assert isinstance(record, Record)
    assert record.local.skipped == ("a",)


def test_an_unreachable_neighbour_is_not_sent_to() -> None:
    core = started()
    command = core.next_command(1.0)
    assert isinstance(command, Train)
    core.handle(Trained(1, w(1.0)), 1.0)
    assert core.next_command(1.0) == Send(("a", "c"), Share(1, w(1.0)))
    core.handle(Sent(("c",)), 1.0)
    assert core.next_command(1.0) == Wait(("a",), 5.0, joins=True)


def test_a_neighbour_that_reconnects_mid_round_is_sent_the_share_again() -> None:
    core = started()
    train_and_share(core, 1.0, 2.0)
    # c restarted: its old connection (where our share went) is replaced by a new one
    core.handle(Peers(frozenset({"a", "c"}), {"a": 0, "c": 7}), 1.5)
    assert core.next_command(1.5) == Send(("c",), Share(1, w(2.0)))
    core.handle(Sent(()), 1.5)
    assert core.next_command(1.5) == Wait(("a", "c"), 4.5, joins=True)  # same deadline
    core.handle(Peers(frozenset({"a", "c"}), {"a": 0, "c": 7}), 2.0)
    assert core.next_command(2.0) == Wait(("a", "c"), 4.0, joins=True)  # no second copy


def test_late_and_repeated_shares_are_counted_and_ignored() -> None:
    core = started()
    train_and_share(core, 1.0, 2.0)
    core.handle(Arrived("a", Share(1, w(4.0))), 1.1)
    core.handle(Arrived("a", Share(1, w(100.0))), 1.2)  # a second share of round 1
    core.handle(Arrived("c", Share(1, w(6.0))), 1.3)
    record = core.next_command(1.3)
    assert isinstance(record, Record)
    assert value(record.local.weights) == 4.0
    assert record.local.late == 1
    assert core.next_command(2.0) == Look()
    core.handle(Peers(frozenset({"a", "c"})), 2.0)
    train_and_share(core, 2.0, 1.0)
    core.handle(Arrived("c", Share(1, w(9.0))), 2.1)  # round 1: stale now
    assert core.next_command(2.1) == Wait(("a", "c"), pytest.approx(4.9), joins=True)


def test_a_neighbour_in_a_later_round_counts_as_moved_on_and_is_kept() -> None:
    core = started()
    train_and_share(core, 1.0, 2.0)
    core.handle(Arrived("a", Share(1, w(4.0))), 1.1)
    core.handle(Arrived("c", Share(2, w(8.0))), 1.2)  # c did not wait for us
    record = core.next_command(1.2)
    assert isinstance(record, Record)
    assert record.local.skipped == ("c",)
    # round 2 starts with c's share of round 2 already heard
    assert core.next_command(1.2) == Look()
    core.handle(Peers(frozenset({"a", "c"})), 1.2)
    train_and_share(core, 2.0, 1.0)
    core.handle(Arrived("a", Share(2, w(3.0))), 2.1)
    record = core.next_command(2.1)
    assert isinstance(record, Record)
    assert record.local.heard == ("a", "c")
    assert value(record.local.weights) == 4.0


def test_a_peer_that_fell_behind_catches_up_from_its_neighbours() -> None:
    core = started(rounds=9)
    train_and_share(core, 1.0, 2.0)
    core.handle(Arrived("a", Share(5, w(10.0))), 1.1)
    core.handle(Arrived("c", Share(5, w(20.0))), 1.2)
    assert isinstance(core.next_command(1.2), Record)
    assert core.next_command(1.2) == Look()
    core.handle(Peers(frozenset({"a", "c"})), 1.2)
    assert core.next_command(1.2) == Train(5, w(15.0))  # jumped to round 5, from the mean
    core.handle(Trained(5, w(15.0)), 2.0)
    assert core.next_command(2.0) == Send(("a", "c"), Share(5, w(15.0)))
    core.handle(Sent(()), 2.0)
    record = core.next_command(2.0)  # both shares of round 5 are already heard
    assert isinstance(record, Record)
    assert (record.local.round, record.local.caught_up, record.local.heard) == (5, 2, ("a", "c"))


def test_a_restarted_peer_gathers_until_a_share_tells_it_the_round() -> None:
    core = GossipCore("b", ("a", "c"), w(0.0), rounds=9, timeout=5.0, rejoining=True)
    assert isinstance(core.next_command(0.0), Listen)
    assert core.next_command(0.0) == Look()
    core.handle(Peers(frozenset()), 0.0)
    assert core.next_command(0.0) == Connect("c")
    core.handle(Connected("c", True), 0.0)
    assert core.next_command(0.0) == Wait((), RETRY, joins=True)
    core.handle(Arrived("c", Share(4, w(7.0))), 0.3)
    assert core.next_command(0.3) == Look()
    core.handle(Peers(frozenset({"c"})), 0.3)
    assert core.next_command(0.3) == Train(4, w(7.0))


def test_gathering_gives_up_after_the_timeout() -> None:
    core = GossipCore("b", ("a", "c"), w(0.0), rounds=2, timeout=1.0)
    core.next_command(0.0)
    t = 0.0
    command: Command = core.next_command(t)
    while not isinstance(command, Train):
        if isinstance(command, Look):
            core.handle(Peers(frozenset()), t)
        elif isinstance(command, Connect):
            core.handle(Connected(command.peer, False), t)  # c never answers
        else:
            assert isinstance(command, Wait)
            assert command.joins
            t += command.timeout
            core.handle(Peers(frozenset()), t)
        command = core.next_command(t)
    assert t == pytest.approx(1.0)
    core.handle(Trained(1, w(3.0)), t)
    record = core.next_command(t)  # no neighbour: nothing to send or wait for
    assert isinstance(record, Record)
    assert record.local.expected == ()
    assert value(record.local.weights) == 3.0


@pytest.mark.parametrize(
    ("src", "share"),
    [
        ("z", Share(1, w(1.0))),  # not a neighbour
        ("a", Share(4, w(1.0))),  # past the last round
        ("a", Share(1, Weights({"v": np.zeros(1)}))),  # other arrays
        ("a", Share(1, w(float("nan")))),
        ("a", None),  # did not decode
    ],
)
def test_bad_shares_are_rejected_not_fatal(src: str, share: Share | None) -> None:
    core = started()
    train_and_share(core, 1.0, 2.0)
    core.handle(Arrived(src, share), 1.1)
    assert core.rejected == 1
    assert core.next_command(1.1) == Wait(("a", "c"), pytest.approx(4.9), joins=True)


def test_the_last_round_stops_and_events_out_of_turn_are_refused() -> None:
    core = started(rounds=1)
    with pytest.raises(RuntimeError, match="unexpected"):
        core.handle(Sent(()), 0.0)
    train_and_share(core, 1.0, 2.0)
    core.handle(Peers(frozenset()), 1.0)
    assert isinstance(core.next_command(1.0), Record)
    assert core.next_command(1.0) == Stop()
    with pytest.raises(ValueError, match="self-loop"):
        GossipCore("b", ("b",), w(0.0), rounds=1, timeout=1.0)


# ----------------------------------------------------------------------------- state machine

NEIGHBOURS = ("a", "c", "d")


class GossipPeerMachine(RuleBasedStateMachine):
    """Rules: a share (late, current, ahead), a neighbour dropping, rejoining or
    reconnecting, garbage, the deadline. The harness answers every other command."""

    def __init__(self) -> None:
        super().__init__()
        self.rounds = 6
        self.core = GossipCore("b", NEIGHBOURS, w(0.0), rounds=self.rounds, timeout=5.0)
        self.now = 0.0
        self.up = set(NEIGHBOURS)
        self.sessions = dict.fromkeys(NEIGHBOURS, 1)
        self.shared: dict[str, tuple[int, int]] = {}  # neighbour -> (round, session) sent on
        self.records: list[LocalRound] = []
        self.trained: dict[int, float] = {}
        self.sent_at = 0.0
        self.counter = 0
        self.waiting: Wait | None = None
        self.stopped = False
        self._advance()

    def _peers(self) -> Peers:
        return Peers(frozenset(self.up), {n: self.sessions[n] for n in self.up})

    def _advance(self) -> None:
        """Answer commands until the core waits or stops."""
        while True:
            command = self.core.next_command(self.now)
            match command:
                case Listen() | Record():
                    if isinstance(command, Record):
                        self._check(command.local)
                case Look():
                    self.core.handle(self._peers(), self.now)
                case Connect(peer):
                    self.sessions[peer] += 1  # a dial is a new connection
                    self.core.handle(
                        Connected(peer, peer in self.up, self.sessions[peer]), self.now
                    )
                case Train(r, _):
                    self.counter += 1
                    self.trained[r] = float(self.counter)
                    self.core.handle(Trained(r, w(self.counter)), self.now)
                case Send(peers, message):
                    assert set(peers) <= set(NEIGHBOURS)
                    assert message.round == self.core.round
                    self.sent_at = self.now
                    failed = tuple(p for p in peers if p not in self.up)
                    for p in peers:
                        self.shared[p] = (message.round, self.sessions[p])
                    self.core.handle(Sent(failed), self.now)
                case Wait():
                    assert command.timeout > 0
                    if command.watch:  # collecting: every connected neighbour has our share
                        for n in self.up:
                            assert self.shared.get(n) == (self.core.round, self.sessions[n]), n
                    self.waiting = command
                    return
                case Stop():
                    self.stopped = True
                    return

    def _check(self, local: LocalRound) -> None:
        assert not self.records or local.round > self.records[-1].round
        assert 1 <= local.round <= self.rounds
        assert set(local.heard) <= set(NEIGHBOURS)
        assert set(local.skipped) <= set(local.expected)
        assert not set(local.heard) & set(local.skipped)
        assert local.t_end <= self.sent_at + 5.0 + 1e-9  # never waits past the deadline
        shares = [share_value(local.round, n) for n in local.heard]
        expected = (self.trained[local.round] + sum(shares)) / (1 + len(shares))
        assert value(local.weights) == pytest.approx(expected)
        self.records.append(local)

    def _answer(self, event: Arrived | Peers) -> None:
        self.waiting = None
        self.core.handle(event, self.now)
        self._advance()

    @precondition(lambda self: self.waiting is not None)
    @rule(src=st.sampled_from(NEIGHBOURS), ahead=st.sampled_from([-1, 0, 0, 0, 1, 2]))
    def share(self, src: str, ahead: int) -> None:
        self.now += 0.1
        r = min(max(1, self.core.round + ahead), self.rounds)
        self._answer(Arrived(src, Share(r, w(share_value(r, src)))))

    @precondition(lambda self: self.waiting is not None)
    @rule(src=st.sampled_from(NEIGHBOURS))
    def drop(self, src: str) -> None:
        self.up.discard(src)
        self._answer(self._peers())

    @precondition(lambda self: self.waiting is not None)
    @rule(src=st.sampled_from(NEIGHBOURS))
    def rejoin(self, src: str) -> None:
        self.up.add(src)
        self._answer(self._peers())

    @precondition(lambda self: self.waiting is not None)
    @rule(src=st.sampled_from(NEIGHBOURS))
    def reconnect(self, src: str) -> None:
        """``src`` restarted and joined again: a new session."""
        self.up.add(src)
        self.sessions[src] += 1
        self._answer(self._peers())

    @precondition(lambda self: self.waiting is not None)
    @rule()
    def garbage(self) -> None:
        self._answer(Arrived("a", None))

    @precondition(lambda self: self.waiting is not None)
    @rule()
    def deadline(self) -> None:
        assert self.waiting is not None
        self.now += self.waiting.timeout
        self._answer(self._peers())

    @precondition(lambda self: self.stopped)
    @rule()
    def stays_stopped(self) -> None:
        assert self.core.next_command(self.now) == Stop()

    @invariant()
    def state_stays_bounded(self) -> None:
        assert self.core.holding <= 2 * len(NEIGHBOURS)
        assert self.stopped == (bool(self.records) and self.records[-1].round == self.rounds)


def share_value(r: int, src: str) -> float:
    """What ``src`` shares in round ``r``: unique, so an average tells whose it used."""
    return 100.0 * r + 10.0 * (NEIGHBOURS.index(src) + 1)


GossipPeerMachine.TestCase.settings = settings(
    max_examples=100, stateful_step_count=40, deadline=None
)
TestGossipPeerMachine = GossipPeerMachine.TestCase


@pytest.mark.slow
def test_the_state_machine_at_length() -> None:
    run = settings(max_examples=2000, stateful_step_count=60, deadline=None)
    run_state_machine_as_test(GossipPeerMachine, settings=run)
