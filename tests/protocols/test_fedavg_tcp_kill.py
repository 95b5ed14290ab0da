"""FedAvg over loopback TCP: a client process killed mid-round, then restarted.

Issue 7's acceptance: "A client process killed with SIGKILL mid-round is
declared gone by heartbeat within interval*misses; the round completes with
the others; the restarted client rejoins the next round."

The FedAvg server runs here (``serve_scenario`` on a thread, real time); its
four clients are ``python -m simkit client`` processes. A trace listener
installed by a thin wrapper of the FedAvg plugin (the actors are FedAvg's
own) tells the test thread when the server sends the victim its round-2
``TrainRequest``, when it declares the victim gone and when the victim joins
again, each stamped with ``time.monotonic`` as it happens. Local training
takes a few tenths of a second of real time, so a kill right after that send
(a fraction of a millisecond later) lands before the victim can have
replied; the round deadline is 30 s, so only the dropout can end the round
early.

``sigkill``: the kernel closes the killed process's socket, so the server
sees the connection close well within ``interval*misses``.
``sigstop``: a hung process (a machine that froze, a cable pulled) keeps its
socket open; only the heartbeat reveals it, within ``interval*misses`` of
the stop (the silence limit; see :class:`simkit.heartbeat.HeartbeatConfig`).
It is then killed for good.

Either way round 2 completes with the other three, the victim is restarted
under its name, joins in a new session, and -- ``min_clients = 4`` makes
round 3 wait for it -- trains in round 3; the summary lists it as dropped.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from protocols.fedavg import FedAvgPlugin, FedAvgRun
from simkit._realtime import ClientLaunch
from simkit.protocol import RoundRecord, ScenarioSetup
from simkit.runner import RunResult, serve_scenario
from simkit.simulation import Simulation

INTERVAL, MISSES = 0.5, 3
CLIENTS = ["c000", "c001", "c002", "c003"]
VICTIM = "c001"
KILL_ROUND = 2
SLACK = 0.5  # scheduling slack on a loaded machine, on top of the heartbeat bounds
WAIT = 60.0  # how long the test waits for any one step before calling it stuck

# Each client trains ~4000 steps a round (a few tenths of a second of real
# time): long enough that a kill right after the request lands mid-training.
# (Training runs in a thread in real time, so the client keeps answering
# pings meanwhile.)
SCENARIO = f"""\
name = "fedavg-kill"
seed = 7
rounds = 3

[protocol]
name = "fedavg"
min_clients = {len(CLIENTS)}
round_timeout = 30.0
join_timeout = 30.0

[clients]
count = {len(CLIENTS)}

[data]
source = "synthetic"
samples = 500
dim = 60
classes = 10

[model]
kind = "logistic"

[training]
batch_size = 4
n_steps = 4000

[heartbeat]
interval = {INTERVAL}
misses = {MISSES}
"""


class Watch:
    """Trace listener: monotonic times of the server's view of the victim."""

    def __init__(self) -> None:
        self.asked = 0
        self.ups = 0
        self.asked_mid_round = threading.Event()
        self.gone = threading.Event()
        self.rejoined = threading.Event()
        self.times: dict[str, float] = {}

    def __call__(self, t: float, kind: str, src: str, dst: str, type_: str, nbytes: int) -> None:
        # called on the server's thread as each event is recorded
        if src != "server" or dst != VICTIM:
            return
        if kind == "send" and type_ == "TrainRequest":
            self.asked += 1
            if self.asked == KILL_ROUND:
                self._stamp("asked", self.asked_mid_round)
        elif kind == "peer_down" and not self.gone.is_set():
            self._stamp("gone", self.gone)
        elif kind == "peer_up":
            self.ups += 1
            if self.ups == 2:
                self._stamp("rejoined", self.rejoined)

    def _stamp(self, what: str, event: threading.Event) -> None:
        self.times[what] = time.monotonic()
        event.set()


class WatchedFedAvg(FedAvgPlugin):
    """The FedAvg plugin, with a listener on the server's trace."""

    def __init__(self, listener: Watch) -> None:
        super().__init__()
        self.listener = listener

    def build(
        self, setup: ScenarioSetup, sim: Simulation, only: Collection[str] | None = None
    ) -> FedAvgRun:
        sim.trace.add_listener(self.listener)
        return super().build(setup, sim, only)


class Server:
    """``serve_scenario`` on a daemon thread (a stuck run cannot hang pytest)."""

    def __init__(self, path: Path, watch: Watch) -> None:
        self.address: str | None = None
        self.listening = threading.Event()
        self.done = threading.Event()
        self.round_ends: dict[int, float] = {}
        self.rounds: dict[int, RoundRecord] = {}
        self.result: RunResult | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, args=(path, WatchedFedAvg(watch)), daemon=True
        )
        self._thread.start()

    def _run(self, path: Path, plugin: FedAvgPlugin) -> None:
        try:
            self.result = serve_scenario(
                path, plugin=plugin, on_listening=self._listening, on_round=self._on_round
            )
        except BaseException as exc:  # re-raised on the test thread
            self.error = exc
        finally:
            self.done.set()
            self.listening.set()

    def _listening(self, address: str) -> None:
        self.address = address
        self.listening.set()

    def _on_round(self, record: RoundRecord) -> None:
        self.round_ends[record.round] = time.monotonic()
        self.rounds[record.round] = record

    def wait_address(self) -> str:
        assert self.listening.wait(WAIT), "the server did not start listening"
        self.raise_error()
        assert self.address is not None
        return self.address

    def finish(self) -> RunResult:
        assert self.done.wait(WAIT), f"the run did not end; rounds so far: {self.rounds}"
        self.raise_error()
        assert self.result is not None
        return self.result

    def raise_error(self) -> None:
        if self.error is not None:
            raise self.error


class Clients:
    """``python -m simkit client`` processes, their output in files."""

    def __init__(self, path: Path, tmp_path: Path) -> None:
        self.launch = ClientLaunch(str(path), seed=7, overrides=[], names=CLIENTS)
        self.tmp_path = tmp_path
        self.procs: list[tuple[subprocess.Popen[bytes], IO[bytes], IO[bytes]]] = []

    def start(self, name: str, address: str, tag: str) -> subprocess.Popen[bytes]:
        out = open(self.tmp_path / f"{tag}.out", "w+b")  # closed in stop_all
        err = open(self.tmp_path / f"{tag}.err", "w+b")
        argv = [*self.launch.argv(name, address), "--json"]
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=self.launch.env()
        )
        self.procs.append((proc, out, err))
        return proc

    def output(self, proc: subprocess.Popen[bytes]) -> tuple[str, str]:
        for p, out, err in self.procs:
            if p is proc:
                out.seek(0)
                err.seek(0)
                return out.read().decode(), err.read().decode()
        raise KeyError(proc.pid)

    def stop_all(self) -> None:
        for proc, out, err in self.procs:
            if proc.poll() is None:
                proc.kill()  # SIGKILL ends a stopped process too
            proc.wait(10)
            out.close()
            err.close()


@pytest.fixture
def scenario(tmp_path: Path) -> Path:
    path = tmp_path / "kill.toml"
    path.write_text(SCENARIO, encoding="utf-8")
    return path


@pytest.fixture
def clients(scenario: Path, tmp_path: Path) -> Iterator[Clients]:
    started = Clients(scenario, tmp_path)
    yield started
    started.stop_all()


def wait(event: threading.Event, what: str, server: Server) -> None:
    """Block until ``event``; fail (with the server's error, if any) if it never comes."""
    if not event.wait(WAIT):
        server.raise_error()
        pytest.fail(f"timed out waiting for {what}; rounds so far: {server.rounds}")


def hung_then_killed(proc: subprocess.Popen[bytes], watch: Watch, server: Server) -> float:
    os.kill(proc.pid, signal.SIGSTOP)
    stopped = time.monotonic()
    wait(watch.gone, "the heartbeat to declare the hung victim gone", server)
    proc.kill()
    return stopped


def killed(proc: subprocess.Popen[bytes], watch: Watch, server: Server) -> float:
    os.kill(proc.pid, signal.SIGKILL)
    return time.monotonic()


Fault = Callable[[subprocess.Popen[bytes], Watch, Server], float]


@pytest.mark.parametrize(
    ("fault", "low", "high", "by_heartbeat"),
    [
        # a closed connection is seen at once: well within interval*misses
        (killed, 0.0, INTERVAL * MISSES, False),
        # silence: between interval*(misses-1) and interval*misses after the stop
        # (docs/runtime.md); the low bound leaves an interval for a victim slow to
        # speak on a loaded machine, the high one scheduling slack
        (hung_then_killed, INTERVAL * (MISSES - 2), INTERVAL * MISSES + SLACK, True),
    ],
    ids=["sigkill", "sigstop"],
)
def test_client_process_dies_mid_round_and_rejoins_the_next(
    scenario: Path, clients: Clients, fault: Fault, low: float, high: float, by_heartbeat: bool
) -> None:
    watch = Watch()
    server = Server(scenario, watch)
    address = server.wait_address()
    procs = {name: clients.start(name, address, name) for name in CLIENTS}

    # Round 2 is under way: the server just asked the victim to train.
    wait(watch.asked_mid_round, f"round {KILL_ROUND}'s TrainRequest to {VICTIM}", server)
    struck = fault(procs[VICTIM], watch, server)
    wait(watch.gone, f"the server to declare {VICTIM} gone", server)
    assert procs[VICTIM].wait(WAIT) == -signal.SIGKILL

    again = clients.start(VICTIM, address, f"{VICTIM}-again")
    wait(watch.rejoined, f"{VICTIM} to rejoin", server)
    result = server.finish()

    # Declared gone within the bounds, measured from the fault (same clock).
    assert low <= watch.times["gone"] - struck <= high
    downs = [e for e in result.trace.events if e.kind == "peer_down" and e.dst == VICTIM]
    assert len(downs) == 1
    assert ("(heartbeat)" in downs[0].info) == by_heartbeat, downs[0].info

    # The round completed with the others once the victim was gone, long
    # before its 30 s deadline.
    others = tuple(c for c in CLIENTS if c != VICTIM)
    mid = server.rounds[KILL_ROUND]
    assert not mid.aborted, mid.reason
    assert mid.sampled == tuple(CLIENTS)
    assert mid.replied == others
    assert mid.failed == (VICTIM,)
    assert 0 < server.round_ends[KILL_ROUND] - struck <= high + SLACK

    # The restarted process joined under its name (a new session) and
    # trained in the next round.
    ups = [e for e in result.trace.events if e.kind == "peer_up" and e.dst == VICTIM]
    assert len(ups) == 2
    nxt = server.rounds[KILL_ROUND + 1]
    assert not nxt.aborted, nxt.reason
    assert nxt.replied == tuple(CLIENTS)
    assert [r.round for r in result.rounds] == [1, 2, 3]
    assert result.rounds[0].replied == tuple(CLIENTS)

    summary = result.summary()
    assert summary["rounds_completed"] == 3
    assert summary["dropped"] == [VICTIM]
    assert summary["errors"] == []
    assert [m["participants"] for m in summary["metrics"]] == [4, 3, 4]

    # Every client process still alive ended cleanly once the server was done.
    for name, proc in [*((n, p) for n, p in procs.items() if n != VICTIM), (VICTIM, again)]:
        code = proc.wait(WAIT)
        out, err = clients.output(proc)
        assert code == 0, f"{name} exited with {code}: {err}"
        assert json.loads(out.strip().splitlines()[-1])["joined"] is True
    out, _ = clients.output(again)
    restarted: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    assert restarted["messages_received"] == 1  # round 3's TrainRequest
    assert restarted["messages_sent"] == 1  # its TrainReply
