"""FedBuff's server machine driven synchronously: no event loop, no network."""

from __future__ import annotations

from typing import Any

from protocols.fedbuff import FedBuffCore, FedBuffOptions
from protocols.fedbuff._machine import FedBuffMachine
from protocols.messages import TrainRequest
from simkit.actors import Received
from simkit.driver import (
    Broadcast,
    Call,
    Listen,
    Log,
    Look,
    Mark,
    Peers,
    Sent,
    Stop,
    Take,
    Taken,
    WaitAny,
    WaitPeers,
)
from simkit.messages import SerializedMessage
from simkit.protocol import ScenarioSetup
from simkit.scenario import build, load_scenario

from .hostile import craft

SCENARIO: dict[str, Any] = {
    "name": "buffered",
    "seed": 2,
    "rounds": 3,
    "protocol": {"name": "fedbuff", "buffer_size": 2},
    "clients": {"count": 4},
    "data": {"alpha": 0.5, "beta": 0.5, "samples": 40, "dim": 4, "classes": 3},
    "training": {"batch_size": 8, "n_steps": 2},
}
_SETUP: list[ScenarioSetup] = []


def setup() -> ScenarioSetup:
    if not _SETUP:
        _SETUP.append(build(load_scenario(SCENARIO)).setup)
    return _SETUP[0]


class Harness:
    """The driver's part over a modelled world; pauses when the machine waits."""

    def __init__(self, **options: Any) -> None:
        table = {"buffer_size": 2, "update_timeout": 30.0, **options}
        core = FedBuffCore(setup(), FedBuffOptions.from_table(table, "t"))
        self.m = FedBuffMachine(core)
        self.now = 0.0
        self.session = {n: i + 1 for i, n in enumerate(setup().client_names)}
        self.mailbox: list[Received] = []
        self.requests: dict[str, list[TrainRequest]] = {}
        self.logs: list[str] = []
        self.wait: WaitAny | None = None
        self.stopped = False

    def run(self) -> None:
        while True:
            command = self.m.next_command(self.now)
            if isinstance(command, Stop):
                self.stopped = True
                return
            if isinstance(command, WaitAny):
                self.wait = command
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
        if isinstance(command, Take):
            return Taken(self.mailbox.pop(0) if self.mailbox else None)
        if isinstance(command, Broadcast):
            failed = tuple(p for p in command.peers if p not in self.session)
            for p in command.peers:
                if p not in failed and isinstance(command.message, TrainRequest):
                    self.requests.setdefault(p, []).append(command.message)
            return Sent(command.message, failed)
        if isinstance(command, Call):
            coro = command.run(None)  # type: ignore[arg-type]
            try:
                coro.send(None)  # type: ignore[attr-defined]
            except StopIteration as done:
                return done.value
        raise AssertionError(f"unexpected command {command!r}")

    def reply(self, client: str, variant: str = "honest", round: int | None = None) -> None:
        """``client`` answers its latest request; the machine takes it when it waits next."""
        request = self.requests[client][-1]
        crafted = craft(variant, request.round if round is None else round, self.m.core.weights)
        message = SerializedMessage(crafted.type, crafted.payload, crafted.data)
        self.mailbox.append(Received(client, message, self.now))

    def wake(self, item: Received | None = None) -> None:
        self.wait = None
        taken = item if item is not None else (self.mailbox.pop(0) if self.mailbox else None)
        self.m.handle(Taken(taken), self.now)
        self.run()


def test_every_client_is_set_to_work_and_k_replies_make_an_update() -> None:
    h = Harness()
    h.run()
    assert sorted(h.requests) == setup().client_names
    assert all(r[0].weights is not None and r[0].round == 1 for r in h.requests.values())
    h.now = 1.0
    h.reply("c000")
    h.reply("c001")
    h.wake()
    assert h.m.core.version == 1
    record = h.m.core.records[-1]
    assert record.replied == ("c000", "c001")
    assert any(line.startswith("update 1: 2 updates from 2 clients") for line in h.logs)
    assert [r.round for r in h.requests["c000"]] == [1, 2]  # new work at once


def test_a_bad_reply_fails_its_request_and_benches_the_client_until_the_next_update() -> None:
    h = Harness()
    h.run()
    h.reply("c002", "update_wrong_shape")
    h.wake()
    assert any("c002 failed its request: bad TrainReply" in line for line in h.logs)
    assert len(h.requests["c002"]) == 1  # no new work before the next update
    h.reply("c000")
    h.reply("c001")
    h.wake()
    assert "c002" in h.m.core.records[-1].failed
    assert len(h.requests["c002"]) == 2  # after the update it trains again


def test_a_reply_answering_no_request_is_late_and_a_silent_server_stops() -> None:
    h = Harness()
    h.run()
    h.reply("c003", round=7)  # a reply before its request: bad
    h.reply("c000")
    h.reply("c001")
    h.wake()
    assert h.m.core.records[-1].late == 0
    assert any("answers round 7 before its request" in line for line in h.logs)
    assert h.wait is not None
    h.now += h.wait.timeout or 0.0
    h.wake()
    assert h.stopped
    assert h.m.core.stopped.startswith("no training reply for 30 s")
