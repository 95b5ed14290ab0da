"""``simkit run --transport tcp``, ``simkit serve`` and ``simkit client``, on loopback."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from simkit.cli import main

ROOT = Path(__file__).resolve().parents[1]  # where the `tests` package is

SCENARIO = """\
name = "net"
rounds = 2

[protocol]
name = "tests.scenario.fakeproto:PLUGIN"

[clients]
count = {count}

[data]
samples = 40
dim = 5
classes = 3
"""


def scenario_file(tmp_path: Path, count: int) -> Path:
    path = tmp_path / f"net{count}.toml"
    path.write_text(SCENARIO.format(count=count), encoding="utf-8")
    return path


@pytest.fixture
def scenario(tmp_path: Path) -> Path:
    return scenario_file(tmp_path, 3)


@pytest.fixture(autouse=True)
def fake_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT))


def simkit(*argv: str, token: str | None = None) -> subprocess.Popen[str]:
    """``python -m simkit ARGV`` with the fake protocol importable."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), *sys.path]))
    env.pop("SIMKIT_TOKEN", None)
    if token is not None:
        env["SIMKIT_TOKEN"] = token
    return subprocess.Popen(
        [sys.executable, "-m", "simkit", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)


def listening_address(server: subprocess.Popen[str]) -> str:
    """Read the server's stderr until it says where it listens."""
    assert server.stderr is not None
    line = server.stderr.readline()
    match = re.search(r"listening on (\S+),", line)
    assert match, f"unexpected first line from simkit serve: {line!r}"
    return match.group(1)


def virtual_digest(capsys: pytest.CaptureFixture[str], path: Path, *argv: str) -> str:
    assert main(["run", str(path), "--quiet", "--json", *argv]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    value: str = summary["weights_digest"]
    return value


def last_json(text: str) -> dict[str, object]:
    value: dict[str, object] = json.loads(text.strip().splitlines()[-1])
    return value


def test_run_over_tcp_prints_the_same_weights(
    scenario: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    expected = virtual_digest(capsys, scenario, "--seed", "4")
    assert main(["run", str(scenario), "--seed", "4", "--transport", "tcp", "--json"]) == 0
    captured = capsys.readouterr()
    summary = last_json(captured.out)
    assert summary["weights_digest"] == expected
    assert summary["rounds_completed"] == 2
    assert "real time over TCP" in captured.err  # the table and footer go to stderr


def test_run_with_client_processes(scenario: Path, capsys: pytest.CaptureFixture[str]) -> None:
    expected = virtual_digest(capsys, scenario, "--set", "rounds=1")
    argv = ["run", str(scenario), "--set", "rounds=1", "--transport", "tcp", "--processes"]
    assert main([*argv, "--quiet", "--json"]) == 0
    summary = last_json(capsys.readouterr().out)
    assert summary["weights_digest"] == expected
    assert summary["errors"] == []


def test_serve_and_client_processes(
    scenario: Path, capsys: pytest.CaptureFixture[str], processes: list[subprocess.Popen[str]]
) -> None:
    expected = virtual_digest(capsys, scenario, "--seed", "9")
    start = time.monotonic()
    server = simkit("serve", str(scenario), "--port", "0", "--seed", "9", "--json", token="tk")
    processes.append(server)
    address = listening_address(server)
    common = [str(scenario), "--server", address, "--seed", "9"]
    clients = [simkit("client", *common, "--name", f"c00{i}", token="tk") for i in range(2)]
    clients.append(simkit("client", *common, "--name", "c002", "--token", "tk", "--json"))
    processes.extend(clients)
    outs = []
    for client in clients:
        out, err = client.communicate(timeout=20)
        assert client.returncode == 0, err
        outs.append(out)
    assert outs[0].startswith(f"c000: joined {address}; received 2 messages")
    client_summary = last_json(outs[2])
    assert client_summary["joined"] is True
    assert client_summary["messages_received"] == 2  # one request per round
    out, err = server.communicate(timeout=20)
    assert server.returncode == 0, err
    summary = last_json(out)
    assert summary["weights_digest"] == expected
    assert summary["rounds_completed"] == 2
    assert summary["dropped"] == []
    assert "round" in err  # the per-round table, on stderr with --json
    assert time.monotonic() - start < 30.0  # no hang (generous: 2 shared cores)


def test_a_client_with_the_wrong_token_is_turned_away(
    tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    scenario = scenario_file(tmp_path, 1)
    server = simkit("serve", str(scenario), "--port", "0", "--quiet", "--json", token="right")
    processes.append(server)
    address = listening_address(server)
    common = [str(scenario), "--server", address, "--name", "c000"]
    intruder = simkit("client", *common, token="wrong")
    processes.append(intruder)
    _, err = intruder.communicate(timeout=20)
    assert intruder.returncode == 1
    assert "c000 never joined the server" in err
    assert "rejected its Join" in err
    honest = simkit("client", *common, token="right")
    processes.append(honest)
    _, err = honest.communicate(timeout=20)
    assert honest.returncode == 0, err
    out, err = server.communicate(timeout=20)
    assert server.returncode == 0, err
    assert last_json(out)["rounds_completed"] == 2


def test_usage_errors_are_one_line_and_exit_2(
    scenario: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def error(*argv: str) -> str:
        assert main(list(argv)) == 2
        return capsys.readouterr().err.strip().splitlines()[-1]

    path = str(scenario)
    assert error("run", path, "--processes") == "simkit: error: --processes needs --transport tcp"
    assert "invalid choice: 'udp'" in error("run", path, "--transport", "udp")
    assert "the following arguments are required: --port" in error("serve", path)
    assert "expected a port number 0-65535, got '70000'" in error("serve", path, "--port", "70000")
    assert "expected HOST:PORT" in error("client", path, "--name", "c000", "--server", "nowhere")
    line = error("client", path, "--name", "c07", "--server", "127.0.0.1:9")
    assert line.endswith("no client named 'c07': the 3 clients of this scenario are c000 to c002")
    assert "no such scenario file" in error("serve", "missing.toml", "--port", "0")


def test_serve_on_a_port_in_use_is_a_usage_error(
    scenario: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = str(taken.getsockname()[1])
        assert main(["serve", str(scenario), "--port", port]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"simkit: error: cannot listen at 127.0.0.1:{port}: ")
    assert len(err.splitlines()) == 1
