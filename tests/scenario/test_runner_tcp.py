"""run_scenario over loopback TCP: in one process and with client processes.

Fault-free, a real-time TCP run aggregates the same updates in the same
(sorted) order as the virtual run, so it ends with the same weights.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import pytest

from simkit._realtime import ClientLaunch
from simkit.runner import RunError, run_client, run_scenario
from simkit.scenario import ScenarioError

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "scenarios" / "quickstart.toml"


def digest(result: Any) -> str:
    value: str = result.summary()["weights_digest"]
    return value


def test_tcp_in_one_process_ends_with_the_virtual_weights(small: dict[str, Any]) -> None:
    virtual = run_scenario(small, seed=5)
    real = run_scenario(small, seed=5, transport="tcp")
    assert real.transport == "tcp"
    assert real.errors == []
    assert real.rounds_completed == 3
    assert real.dropped == []
    assert digest(real) == digest(virtual)
    # Both sides are in this process: every message is traced, as in memory.
    assert real.summary()["messages"] == virtual.summary()["messages"]
    assert real.summary()["bytes"] == virtual.summary()["bytes"]


def test_tcp_with_client_processes_ends_with_the_virtual_weights(small_file: Path) -> None:
    virtual = run_scenario(small_file, seed=5, overrides=["rounds=2"])
    start = time.monotonic()
    real = run_scenario(small_file, seed=5, overrides=["rounds=2"], transport="tcp", processes=True)
    # A bound against hangs, not a speed test: five interpreters import torch
    # on two cores (about 5 s unloaded).
    assert time.monotonic() - start < 30.0
    assert real.errors == []
    assert real.rounds_completed == 2
    assert [m["participants"] for m in real.metrics()] == [5, 5]
    assert digest(real) == digest(virtual)


@pytest.mark.parametrize("processes", [False, True], ids=["one-process", "client-processes"])
def test_quickstart_over_tcp_ends_with_the_virtual_weights(processes: bool) -> None:
    pytest.importorskip("protocols.fedavg")
    virtual = run_scenario(QUICKSTART)
    real = run_scenario(QUICKSTART, transport="tcp", processes=processes)
    assert real.errors == []
    assert real.rounds_completed == virtual.rounds_completed
    assert digest(real) == digest(virtual)


def test_mapping_overrides_reach_the_client_processes(small_file: Path) -> None:
    overrides = {"rounds": 1, "data.samples": 50}
    virtual = run_scenario(small_file, seed=2, overrides=overrides)
    real = run_scenario(small_file, seed=2, overrides=overrides, transport="tcp", processes=True)
    assert real.errors == []
    assert digest(real) == digest(virtual)


def test_failing_client_processes_stop_the_run(
    small_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: ClientLaunch, name: str, address: str) -> list[str]:
        return [sys.executable, "-c", "import sys; sys.exit('no such luck')"]

    monkeypatch.setattr(ClientLaunch, "argv", broken)
    start = time.monotonic()
    with pytest.raises(RunError, match=r"every client process failed \(c000 exited with 1: no"):
        run_scenario(small_file, transport="tcp", processes=True)
    assert time.monotonic() - start < 5.0  # not the server's 10 s wait for its clients


def test_bad_transport_arguments(small: dict[str, Any], small_file: Path) -> None:
    with pytest.raises(ValueError, match="transport must be 'memory' or 'tcp'"):
        run_scenario(small, transport="udp")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="processes=True needs transport='tcp'"):
        run_scenario(small_file, processes=True)
    with pytest.raises(ValueError, match="needs a scenario file"):
        run_scenario(small, transport="tcp", processes=True)


def test_a_network_fault_over_tcp_is_a_scenario_error(small: dict[str, Any]) -> None:
    small["faults"] = {"events": [{"kind": "heal", "at": 1.0}]}
    with pytest.raises(ScenarioError, match="heal fault needs the in-memory network"):
        run_scenario(small, transport="tcp")


def test_run_client_names_the_known_clients(small: dict[str, Any]) -> None:
    with pytest.raises(ScenarioError, match=r"no client named 'c9'.*5 clients.*c000 to c004"):
        run_client(small, "c9", "127.0.0.1:1")
    with pytest.raises(ValueError, match="HOST:PORT"):
        run_client(small, "c000", "localhost")


def test_run_client_reports_a_server_that_is_not_there(small: dict[str, Any]) -> None:
    result = run_client(small, "c001", "127.0.0.1:9")  # discard port: nothing listens
    assert not result.joined
    problem = result.problem()
    assert problem is not None
    assert "c001 never joined the server at 127.0.0.1:9: could not connect" in problem
    assert result.summary()["joined"] is False


def test_real_time_training_longer_than_the_silence_limit_is_not_a_dropout() -> None:
    # Each FedAvg client trains for tenths of a second of real time per round,
    # far beyond the 0.1 s silence limit: training runs in a thread, so the
    # client's heartbeats go on meanwhile and nobody is declared gone.
    pytest.importorskip("protocols.fedavg")
    data = {
        "name": "long-training",
        "rounds": 2,
        "protocol": {"name": "fedavg", "round_timeout": 30.0},
        "clients": {"count": 3},
        "data": {"source": "synthetic", "samples": 300, "dim": 40, "classes": 5},
        "training": {"batch_size": 4, "n_steps": 3000},
        "heartbeat": {"interval": 0.05, "misses": 2},
    }
    virtual = run_scenario(data, seed=3)
    real = run_scenario(data, seed=3, transport="tcp")
    assert real.errors == []
    assert real.dropped == []
    assert real.rounds_completed == 2
    assert digest(real) == digest(virtual)
    # the rounds did last longer than the silence limit
    assert all(r.t_end - r.t_start > 0.1 for r in real.rounds)


@pytest.mark.slow
def test_secagg_with_a_dropout_at_every_stage_over_tcp_ends_with_the_virtual_weights() -> None:
    # Real time over loopback (about 20 s: the dropouts are seen by heartbeat
    # and stage timeouts): the same clients drop and the same masked sums are
    # unmasked, so the weights are the virtual run's, bit for bit.
    pytest.importorskip("protocols.fedavg")
    scenario = ROOT / "scenarios" / "secagg.toml"
    virtual = run_scenario(scenario)
    real = run_scenario(scenario, transport="tcp")
    assert real.errors == []
    assert real.dropped == virtual.dropped
    assert real.rounds_completed == virtual.rounds_completed
    assert digest(real) == digest(virtual)
