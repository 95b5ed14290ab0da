"""FedAvg's server machine driven synchronously: no event loop, no network.

A :class:`Harness` plays the driver: it answers the machine's commands from
a model of the world (who is connected in which session, what each client
was sent), and stops when the machine waits for replies. Tests and a
hypothesis state machine then decide what happens next (a reply, a broken
reply, a late one, a dropout, a deadline, a rejoin) and check the round
invariants after every step.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from protocols.fedavg import FedAvgCore, FedAvgOptions
from protocols.fedavg._machine import FedAvgMachine
from protocols.messages import EvaluationRequest, TrainRequest
from protocols.secagg import SecAggSettings, SecureSumOutcome
from simkit.actors import Received
from simkit.driver import (
    Broadcast,
    Call,
    Collected,
    Drain,
    Drained,
    Listen,
    Log,
    Look,
    Mark,
    Peers,
    Sent,
    Stop,
    WaitPeers,
    WaitReplies,
)
from simkit.messages import SerializedMessage
from simkit.protocol import ScenarioSetup
from simkit.scenario import build, load_scenario

from .hostile import VARIANTS, Crafted, Obj, craft, encode

CLIENTS = 4
SCENARIO: dict[str, Any] = {
    "name": "machine",
    "seed": 1,
    "rounds": 4,
    "protocol": {"name": "fedavg", "round_timeout": 10.0, "eval_every": 0},
    "clients": {"count": CLIENTS},
    "data": {"alpha": 0.5, "beta": 0.5, "samples": 40, "dim": 4, "classes": 3},
    "training": {"batch_size": 8, "n_epoch": 1},
}
_SETUP: list[ScenarioSetup] = []


def setup() -> ScenarioSetup:
    if not _SETUP:
        _SETUP.append(build(load_scenario(SCENARIO)).setup)
    return _SETUP[0]


def machine(secagg: SecAggSettings | None = None, **options: Any) -> FedAvgMachine:
    table = {"round_timeout": 10.0, "eval_every": 0, **options}
    core = FedAvgCore(setup(), FedAvgOptions.from_table(table, "t"))
    return FedAvgMachine(core, secagg=secagg)


def _run_call(call: Call) -> object:
    """Run a Call whose coroutine never suspends (the after-round effects)."""
    coro = call.run(None)  # type: ignore[arg-type]
    try:
        coro.send(None)  # type: ignore[attr-defined]
    except StopIteration as done:
        return done.value
    raise AssertionError(f"{call.what} suspended")


class Harness:
    """The driver's part, synchronously, over a modelled world."""

    def __init__(self, m: FedAvgMachine, names: list[str]) -> None:
        self.m = m
        self.now = 0.0
        self.session = {n: i + 1 for i, n in enumerate(names)}  # connected -> session
        self.next_session = len(names) + 1
        self.mailbox: list[Received] = []
        self.holds: dict[str, tuple[int, int]] = {}  # what each session was really sent
        self.requests: dict[str, TrainRequest] = {}  # the request each client works on
        self.wait: WaitReplies | None = None
        self.deadline = 0.0
        self.logs: list[str] = []
        self.stopped = False
        self.calls: dict[str, Any] = {}  # Call.what -> how the harness answers it
        self.called: list[str] = []
        self.unreachable: set[str] = set()  # broadcasts miss these (they left meanwhile)
        self.sent: list[Broadcast] = []

    def run(self) -> None:
        """Perform commands until the machine waits for replies or stops."""
        while True:
            command = self.m.next_command(self.now)
            if isinstance(command, Stop):
                self.stopped, self.wait = True, None
                return
            if isinstance(command, WaitReplies):
                self.wait, self.deadline = command, self.now + command.timeout
                return
            event = self.perform(command)
            if event is not None:
                self.m.handle(event, self.now)

    def perform(self, command: object) -> object:
        if isinstance(command, Listen | Mark):
            return None
        if isinstance(command, Log):
            self.logs.append(command.text)
            return None
        if isinstance(command, Look | WaitPeers):
            return Peers(dict(self.session))
        if isinstance(command, Drain):
            count, self.mailbox = len(self.mailbox), []
            return Drained(count)
        if isinstance(command, Broadcast):
            return self.broadcast(command)
        if isinstance(command, Call):
            self.called.append(command.what)
            answer = self.calls.get(command.what)
            return _run_call(command) if answer is None else answer(command)
        raise AssertionError(f"unexpected command {command!r}")

    def broadcast(self, command: Broadcast) -> Sent:
        msg = command.message
        self.sent.append(command)
        missed = self.unreachable
        failed = tuple(sorted(p for p in command.peers if p not in self.session or p in missed))
        for peer in command.peers:
            if peer in failed or not isinstance(msg, TrainRequest | EvaluationRequest):
                continue
            held = self.holds.get(peer)
            if msg.weights is None:  # the machine's claim: this session holds that version
                assert held == (self.session[peer], msg.version), (peer, held, msg.version)
            else:
                self.holds[peer] = (self.session[peer], msg.version)
            if isinstance(msg, TrainRequest):
                self.requests[peer] = msg
        return Sent(msg, failed)

    def feed(self, replies: list[Received], gone: tuple[str, ...] = ()) -> None:
        self.wait = None
        self.m.handle(Collected(replies, gone), self.now)
        self.run()

    def waiting(self) -> tuple[str, ...]:
        return self.wait.peers if self.wait is not None else ()


def received(src: str, crafted: Crafted) -> Received:
    return Received(src, SerializedMessage(crafted.type, crafted.payload, crafted.data), 0.0)


def reply(h: Harness, client: str, variant: str = "honest", round: int | None = None) -> Received:
    request = h.requests[client]
    weights = h.m.core.weights
    return received(client, craft(variant, request.round if round is None else round, weights))


def start(secagg: SecAggSettings | None = None, **options: Any) -> Harness:
    m = machine(secagg=secagg, **options)
    h = Harness(m, m.core.setup.client_names)
    h.run()
    return h


def done(h: Harness, client: str) -> Received:
    """A TrainDone of ``client``'s request (secure rounds)."""
    r = h.requests[client].round
    loss = Obj("training.MeanState", {"total": 0.5, "count": 1.0})
    effort = Obj("training.Effort", {"n_epoch": 1, "n_steps": 1, "n_samples": 8, "t_spent": 0.0})
    crafted = encode({"round": r, "metrics": {"loss": loss}, "effort": effort}, "TrainDone")
    return received(client, crafted)


def evaluation(client: str, r: int, total: float) -> Received:
    loss = Obj("training.MeanState", {"total": total, "count": 1.0})
    effort = Obj("training.Effort", {"n_epoch": 1, "n_steps": 1, "n_samples": 8, "t_spent": 0.0})
    result = Obj("training.EvalResult", {"round": r, "metrics": {"loss": loss}, "effort": effort})
    return received(client, encode({"round": r, "result": result}, "EvaluationReply"))


# ----------------------------------------------------------------------------- examples


def test_a_round_aggregates_every_reply_and_the_next_request_carries_no_weights() -> None:
    h = start()
    names = list(h.waiting())
    assert names == h.m.core.setup.client_names
    h.feed([reply(h, c) for c in names])
    record = h.m.core.records[-1]
    assert record.replied == tuple(names)
    assert record.failed == ()
    assert h.m.core.version == 1
    # Version 1 is new: each client is sent its weights with round 2's request.
    assert all(h.requests[c].round == 2 for c in names)
    assert all(h.requests[c].weights is not None for c in names)


def test_a_request_carries_no_weights_when_the_client_holds_the_version() -> None:
    h = start()
    names = h.waiting()
    h.now = h.deadline
    h.feed([], names)  # nobody answers: round 1 aborts, the version stays 0
    assert h.m.core.records[-1].aborted
    assert all(h.requests[c].round == 2 for c in names)
    assert all(h.requests[c].weights is None for c in names)


def test_bad_replies_fail_their_sender_and_late_ones_are_waited_past() -> None:
    h = start()
    a, b, c, d = h.waiting()
    h.feed([reply(h, a), reply(h, b, "weight_nan"), reply(h, c, "update_wrong_shape")])
    assert h.waiting() == (d,)
    h.now = h.deadline
    h.feed([], (d,))
    record = h.m.core.records[-1]
    assert record.replied == (a,)
    assert record.failed == (b, c, d)
    assert any(f"{b} failed round 1 (train): bad TrainReply" in line for line in h.logs)


def test_a_reply_of_an_earlier_round_is_late_and_the_client_is_still_awaited() -> None:
    h = start()
    names = h.waiting()
    h.feed([reply(h, c) for c in names])
    first = h.waiting()[0]
    h.feed([reply(h, first, round=1)])
    assert first in h.waiting()
    h.feed([reply(h, c) for c in h.waiting()])
    record = h.m.core.records[-1]
    assert record.round == 2
    assert record.late == 1
    assert record.replied == tuple(names)


def test_a_dropout_fails_and_a_rejoined_client_is_sent_the_weights_again() -> None:
    h = start()
    names = h.waiting()
    gone = names[0]
    del h.session[gone]
    h.feed([reply(h, c) for c in names[1:]], (gone,))
    assert h.m.core.records[-1].failed == (gone,)
    assert gone not in h.waiting()  # round 2 did not ask it
    h.session[gone] = h.next_session  # it comes back in a new session
    h.next_session += 1
    h.feed([reply(h, c) for c in h.waiting()])
    assert gone in h.waiting()  # round 3 asks it again, with the weights
    assert h.requests[gone].round == 3
    assert h.requests[gone].weights is not None


def test_weights_errors_forget_what_the_client_holds() -> None:
    h = start()
    names = h.waiting()
    h.feed([reply(h, c) for c in names])
    victim = h.waiting()[0]
    error = encode({"round": 2, "stage": "weights", "text": "lost"}, "Error")
    h.feed([received(victim, error)] + [reply(h, c) for c in h.waiting()[1:]])
    assert victim in h.m.core.records[-1].failed
    assert h.requests[victim].weights is not None  # round 3 re-sends them


def test_min_replies_aborts_and_on_abort_stop_ends_the_run() -> None:
    h = start(min_replies=3, on_abort="stop")
    a, b, *_ = h.waiting()
    h.feed([reply(h, a), reply(h, b)])
    h.now = h.deadline
    h.feed([], h.waiting())
    record = h.m.core.records[-1]
    assert record.aborted
    assert "usable replies < min_replies 3" in record.reason
    assert h.stopped
    assert "on_abort = 'stop'" in h.m.core.stopped


def test_an_error_of_this_round_fails_its_client() -> None:
    h = start()
    names = h.waiting()
    error = encode({"round": 1, "stage": "train", "text": "ValueError: x"}, "Error")
    h.feed([received(names[0], error)] + [reply(h, c) for c in names[1:]])
    assert h.m.core.records[-1].failed == (names[0],)
    assert f"{names[0]} failed round 1 (train): ValueError: x" in h.logs


def test_a_fraction_samples_a_seeded_subset() -> None:
    first, again = start(fraction=0.5), start(fraction=0.5)
    assert len(first.waiting()) == 2
    assert first.waiting() == again.waiting()
    assert set(first.requests) == set(first.waiting())  # only the sampled are asked


def test_too_few_clients_wait_for_joins_then_abort_the_round() -> None:
    m = machine(min_clients=2, join_timeout=5.0)
    h = Harness(m, ["c000"])  # one client connected
    h.run()
    record = m.core.records[0]
    assert record.aborted
    assert record.reason == "1 clients connected < min_clients 2"
    assert record.sampled == ()
    assert len(m.core.records) == SCENARIO["rounds"]  # every round aborts the same way
    assert h.stopped


def test_replies_left_from_earlier_rounds_are_drained_and_counted_late() -> None:
    h = start()
    names = h.waiting()
    h.mailbox = [reply(h, names[0])]  # a stray reply waiting when round 2 starts
    h.feed([reply(h, c) for c in names])
    h.feed([reply(h, c) for c in h.waiting()])
    assert h.m.core.records[1].late == 1


def test_a_client_the_request_misses_is_failed_and_not_awaited() -> None:
    m = machine()
    h = Harness(m, m.core.setup.client_names)
    h.unreachable = {"c001"}
    h.run()
    assert "c001" not in h.waiting()
    h.feed([reply(h, c) for c in h.waiting()])
    assert h.m.core.records[0].failed == ("c001",)
    assert "c001" not in h.m.holds  # it holds nothing the server knows of


def test_federated_evaluation_asks_those_that_trained() -> None:
    h = start(evaluate="clients", eval_every=1)
    names = h.waiting()
    h.feed([reply(h, c) for c in names[:3]], (names[3],))
    assert isinstance(h.sent[-1].message, EvaluationRequest)
    assert h.sent[-1].peers == names[:3]
    h.feed([evaluation(c, 1, total) for c, total in zip(names[:3], (0.1, 0.2, 0.3), strict=True)])
    record = h.m.core.records[0]
    assert record.eval_loss == pytest.approx(0.2)
    assert record.replied == names[:3]


def test_a_broken_evaluation_reply_fails_only_its_sender() -> None:
    h = start(evaluate="clients", eval_every=1)
    names = h.waiting()
    h.feed([reply(h, c) for c in names])
    broken = evaluation(names[0], 1, float("nan"))
    h.feed([broken] + [evaluation(c, 1, 0.4) for c in names[1:]])
    record = h.m.core.records[0]
    assert record.eval_loss == pytest.approx(0.4)
    assert record.replied == names  # it trained well; only its evaluation is refused
    assert any(
        line.startswith(f"{names[0]} failed round 1 (evaluate): bad EvaluationReply")
        for line in h.logs
    )


def test_early_stopping_ends_the_run_with_its_reason() -> None:
    h = start(patience=1, stop_metric="loss")
    for _ in range(2):
        h.feed([reply(h, c) for c in h.waiting()])
    assert h.stopped
    assert len(h.m.core.records) == 2
    assert h.m.core.stopped.startswith("early stopping: loss did not improve")
    assert h.logs[-1] == h.m.core.stopped


def test_min_replies_aborts_and_on_abort_continue_runs_every_round() -> None:
    h = start(min_replies=3)
    names = h.waiting()
    for gone in names[:2]:  # two crash in round 1: 2 of 4 left, min_replies 3
        del h.session[gone]
    h.feed([reply(h, c) for c in names[2:]], names[:2])
    for _ in range(SCENARIO["rounds"] - 1):
        h.feed([reply(h, c) for c in h.waiting()])
    records = h.m.core.records
    assert len(records) == SCENARIO["rounds"]  # on_abort = continue
    assert all(r.aborted and "usable replies < min_replies 3" in r.reason for r in records)
    assert all(r.accuracy is None for r in records)
    assert h.m.core.version == 0  # an aborted round leaves the weights alone
    assert all(h.requests[c].weights is None for c in names[2:])  # so they hold version 0


def test_federated_evaluation_sends_the_weights_and_the_next_request_none() -> None:
    h = start(evaluate="clients", eval_every=1)
    names = h.waiting()
    h.feed([reply(h, c) for c in names])
    evaluate = h.sent[-1].message
    assert isinstance(evaluate, EvaluationRequest)
    assert evaluate.weights is not None  # version 1 is new to every client
    h.feed([evaluation(c, 1, 0.5) for c in names])
    assert all(h.requests[c].round == 2 for c in names)
    assert all(h.requests[c].weights is None for c in names)  # evaluated on it: held


def test_a_straggler_fails_its_round_and_its_reply_is_late_in_the_next() -> None:
    h = start()
    slow, *fast = h.waiting()
    h.feed([reply(h, c) for c in fast])
    assert h.waiting() == (slow,)
    h.now = h.deadline
    h.feed([])  # the deadline passes; the straggler is still connected
    first = h.m.core.records[0]
    assert first.failed == (slow,)
    assert not first.aborted
    stale = reply(h, slow, round=1)
    h.feed([stale] + [reply(h, c) for c in fast])
    assert slow in h.waiting()  # asked again in round 2, still awaited
    h.now = h.deadline
    h.feed([])
    second = h.m.core.records[1]
    assert second.late == 1
    assert slow not in second.replied


def test_early_stopping_on_eval_loss_counts_evaluations_without_improvement() -> None:
    h = start(evaluate="clients", eval_every=1, patience=2, min_delta=0.05)
    for total in (0.5, 0.48, 0.47):  # improvements smaller than min_delta
        names = h.waiting()
        h.feed([reply(h, c) for c in names])
        h.feed([evaluation(c, h.m.core.round, total) for c in names])
    assert h.stopped
    assert len(h.m.core.records) == 3
    assert h.m.core.stopped.startswith("early stopping: eval_loss did not improve")


def test_a_secure_round_releases_late_trainers_and_sums_the_cohort() -> None:
    secagg = SecAggSettings.from_table({"mode": "secagg"}, "t")
    assert secagg is not None
    h = start(secagg)
    h.calls["release"] = lambda call: None
    h.calls["secure sum"] = lambda call: SecureSumOutcome(
        1, None, None, reason="too few shares", aborted_in="setup"
    )
    names = h.waiting()
    h.feed([done(h, c) for c in names[:3]])
    h.now = h.deadline
    h.feed([], names[3:])  # the fourth trained too late, but is still connected
    assert h.called[:2] == ["release", "secure sum"]
    record = h.m.core.records[0]
    assert record.aborted
    assert record.reason == "secure aggregation aborted in setup: too few shares"
    assert set(record.failed) == set(names)


def test_too_few_trained_clients_abort_a_secure_round_and_release_the_rest() -> None:
    secagg = SecAggSettings.from_table({"mode": "secagg"}, "t")
    assert secagg is not None
    h = start(secagg, min_replies=4)
    h.calls["release"] = lambda call: None
    names = h.waiting()
    del h.session[names[0]]  # it crashes on its TrainRequest
    h.feed([done(h, c) for c in names[1:]], names[:1])
    record = h.m.core.records[0]
    assert record.aborted
    assert "secure aggregation needs 4" in record.reason
    assert "release" in h.called
    assert "secure sum" not in h.called  # no secure sum is started for a doomed round


# ----------------------------------------------------------------------------- state machine


def requests_round(h: Harness) -> int:
    return max((r.round for r in h.requests.values()), default=0)


class RoundRules(RuleBasedStateMachine):
    """Replies, broken and late replies, dropouts, deadlines and rejoins, in any order."""

    def __init__(self) -> None:
        super().__init__()
        self.h = start()
        self.outcome: dict[str, str] = {}  # this round: client -> "replied" / "failed"
        self.seen = 0  # records checked

    def _check_records(self) -> None:
        records = self.h.m.core.records
        for record in records[self.seen :]:
            assert record.round == self.seen + 1
            assert not set(record.replied) & set(record.failed)
            assert set(record.replied) | set(record.failed) <= set(record.sampled)
            assert record.t_start <= record.t_end
            for client, what in self.outcome.items():
                assert client in (record.replied if what == "replied" else record.failed), (
                    client,
                    what,
                    record,
                )
            self.outcome = {}
            self.seen += 1

    @precondition(lambda self: bool(self.h.waiting()))
    @rule(data=st.data(), variant=st.sampled_from(["honest", "honest", *sorted(VARIANTS)]))
    def reply(self, data: st.DataObject, variant: str) -> None:
        client = data.draw(st.sampled_from(self.h.waiting()))
        if variant == "unknown_message_type":
            variant = "garbage_payload"  # a type nothing takes never reaches the machine
        self.outcome[client] = "replied" if variant == "honest" else "failed"
        self.h.now += 0.5
        self.h.feed([reply(self.h, client, variant)])

    @precondition(lambda self: bool(self.h.waiting()) and requests_round(self.h) > 1)
    @rule(data=st.data())
    def late_reply(self, data: st.DataObject) -> None:
        client = data.draw(st.sampled_from(self.h.waiting()))
        before = set(self.h.waiting())
        self.h.feed([reply(self.h, client, round=self.h.requests[client].round - 1)])
        assert set(self.h.waiting()) == before

    @precondition(lambda self: bool(self.h.waiting()))
    @rule(data=st.data())
    def drop(self, data: st.DataObject) -> None:
        client = data.draw(st.sampled_from(self.h.waiting()))
        del self.h.session[client]
        self.outcome[client] = "failed"
        self.h.feed([], (client,))

    @precondition(lambda self: bool(self.h.waiting()))
    @rule()
    def deadline(self) -> None:
        silent = self.h.waiting()
        for client in silent:
            self.outcome[client] = "failed"
        self.h.now = self.h.deadline
        self.h.feed([], silent)

    @precondition(lambda self: len(self.h.session) < CLIENTS)
    @rule(data=st.data())
    def rejoin(self, data: st.DataObject) -> None:
        away = [c for c in self.h.m.core.setup.client_names if c not in self.h.session]
        client = data.draw(st.sampled_from(away))
        self.h.session[client] = self.h.next_session
        self.h.next_session += 1

    @precondition(lambda self: self.h.stopped)
    @rule()
    def run_again(self) -> None:
        assert len(self.h.m.core.records) == SCENARIO["rounds"]
        self.h, self.outcome, self.seen = start(), {}, 0

    @invariant()
    def rounds_are_consistent(self) -> None:
        self._check_records()
        core = self.h.m.core
        assert core.version == sum(1 for r in core.records if not r.aborted)
        assert self.h.stopped or self.h.wait is not None


_STATEFUL = {
    "stateful_step_count": 30,
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow],
}
RoundRules.TestCase.settings = settings(max_examples=200, **_STATEFUL)
TestRoundRules = RoundRules.TestCase


@pytest.mark.slow
def test_round_rules_many() -> None:
    run_state_machine_as_test(RoundRules, settings=settings(max_examples=5000, **_STATEFUL))
