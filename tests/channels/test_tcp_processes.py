"""A client in another process: killed, hung, declared gone, restarted under its name.

The server runs in real time on a thread of the test process; the client is a
``python -c`` process running a simkit simulation with a TCP transport whose
address book points at the server.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from simkit.simulation import Simulation

from .tcp_helpers import LiveServer, live_server

TOKEN = "t0k"
TESTS = Path(__file__).resolve().parents[1]
CLIENT = """
import sys
sys.path.insert(0, {tests!r})
from channels.tcp_helpers import Pinger
from simkit.channels import TcpTransport
from simkit.heartbeat import HeartbeatConfig
from simkit.simulation import Simulation

sim = Simulation(seed=3, transport=TcpTransport({{"server": {address!r}}}),
                 heartbeat=HeartbeatConfig({interval}, {misses}))
sim.add(Pinger({name!r}, 10**6, gap=0.05, token={token!r}))
sim.run(mode="real")
"""

INTERVAL, MISSES = 0.3, 2


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    with live_server(TOKEN, heartbeat=(INTERVAL, MISSES)) as live:
        yield live


def spawn(server: LiveServer, name: str) -> subprocess.Popen[bytes]:
    host, port = server.address
    code = CLIENT.format(
        tests=str(TESTS),
        address=f"{host}:{port}",
        interval=INTERVAL,
        misses=MISSES,
        name=name,
        token=TOKEN,
    )
    return subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE)


def wait_for(condition: Callable[[], bool], timeout: float) -> float:
    """Poll until ``condition``; return the monotonic time it became true."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met in {timeout} s")
        time.sleep(0.005)
    return time.monotonic()


def connected(sim: Simulation, name: str) -> Callable[[], bool]:
    def check() -> bool:
        ctx = sim.context("server")
        return ctx is not None and ctx.is_connected(name)

    return check


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)
    assert proc.stderr is not None
    proc.stderr.close()


def test_sigkilled_client_is_gone_at_once_and_rejoins_under_its_name(server: LiveServer) -> None:
    sim = server.sim
    proc = spawn(server, "c1")
    try:
        wait_for(connected(sim, "c1"), 20)
        killed = time.monotonic()
        os.kill(proc.pid, signal.SIGKILL)
        gone = wait_for(lambda: not connected(sim, "c1")(), 5)
        # The kernel closes a killed process's sockets: seen well within interval*misses.
        assert gone - killed <= INTERVAL * MISSES
    finally:
        stop(proc)
    again = spawn(server, "c1")
    try:
        wait_for(connected(sim, "c1"), 20)
    finally:
        stop(again)


def test_hung_client_is_declared_gone_by_heartbeat(server: LiveServer) -> None:
    sim = server.sim
    proc = spawn(server, "c2")
    try:
        wait_for(connected(sim, "c2"), 20)
        hung = time.monotonic()
        os.kill(proc.pid, signal.SIGSTOP)  # alive to the kernel, silent to the server
        gone = wait_for(lambda: not connected(sim, "c2")(), 5)
        # Its last word came at most one interval before it hung.
        assert INTERVAL * (MISSES - 1) <= gone - hung <= INTERVAL * (MISSES + 1) + 0.2
        downs = [e for e in sim.trace.events if e.kind == "peer_down" and e.dst == "c2"]
        assert "heartbeat" in downs[-1].info
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        stop(proc)
    again = spawn(server, "c2")
    try:
        wait_for(connected(sim, "c2"), 20)
    finally:
        stop(again)
