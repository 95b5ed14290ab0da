"""``simkit run`` and ``simkit scenario``: JSON contract, exit codes, output files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from simkit.cli import main

ROOT = Path(__file__).resolve().parents[1]  # where the `tests` package is

SCENARIO = """\
name = "cli"
rounds = 2

[protocol]
name = "tests.scenario.fakeproto:PLUGIN"

[clients]
count = 4

[data]
samples = 40
dim = 5
classes = 3
"""


@pytest.fixture
def scenario(tmp_path: Path) -> Path:
    path = tmp_path / "cli.toml"
    path.write_text(SCENARIO, encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def fake_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT))


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, object]:
    assert main(["run", *argv, "--json"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    summary: dict[str, object] = json.loads(last)
    return summary


def test_json_last_line(scenario: Path, capsys: pytest.CaptureFixture[str]) -> None:
    summary = run_json(capsys, str(scenario), "--seed", "3")
    assert summary["scenario"] == "cli"
    assert summary["seed"] == 3
    assert summary["clients"] == 4
    assert summary["rounds_completed"] == 2


def test_table_and_digests(scenario: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(scenario)]) == 0
    out = capsys.readouterr().out
    for word in ("round", "sampled", "replied", "dropped", "loss", "accuracy", "bytes", "time"):
        assert word in out
    assert "trace digest" in out
    assert "weights digest" in out


def test_quiet_json_is_the_only_output(scenario: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(scenario), "--quiet", "--json"]) == 0
    captured = capsys.readouterr()
    assert len(captured.out.strip().splitlines()) == 1
    assert captured.err == ""


def test_set_and_seed(scenario: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = run_json(capsys, str(scenario), "--set", "rounds=3", "--set", "name=x", "--quiet")
    assert a["rounds_completed"] == 3
    assert a["scenario"] == "x"
    b = run_json(capsys, str(scenario), "--set", "rounds=3", "--set", "name=x", "--quiet")
    c = run_json(capsys, str(scenario), "--set", "rounds=3", "--seed", "1", "--quiet")
    assert a["trace_digest"] == b["trace_digest"]
    assert a["weights_digest"] == b["weights_digest"]
    assert a["trace_digest"] != c["trace_digest"]


def test_outputs(scenario: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    weights, trace, report = tmp_path / "w.npz", tmp_path / "t.jsonl", tmp_path / "rep"
    summary = run_json(
        capsys,
        str(scenario),
        "--quiet",
        "--save-weights",
        str(weights),
        "--trace",
        str(trace),
        "--report",
        str(report),
    )
    with np.load(weights, allow_pickle=False) as saved:
        assert set(saved.files) == {"bias", "weight"}
    assert main(["trace", "digest", str(trace)]) == 0
    assert capsys.readouterr().out.strip() == summary["trace_digest"]
    assert (report / "index.html").is_file()
    assert (report / "timeline.png").is_file()
    assert (
        json.loads((report / "summary.json").read_text())["trace_digest"] == summary["trace_digest"]
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--set", "clients.count=-3"], "cli.toml: clients.count: must be > 0, got -3"),
        (["--set", "clinets.count=3"], "cli.toml: unknown key 'clinets'"),
        (["--set", "rounds"], "--set: expected KEY=VALUE"),
        (["--faults", "missing.toml"], "missing.toml: cannot read fault file"),
        (["--resume", "no-such-dir"], "no-such-dir: no such resume directory"),
        (["--set", "protocol.name=nope"], "protocol.name: unknown protocol 'nope'"),
    ],
)
def test_invalid_input_exits_2_with_one_line(
    scenario: Path, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", str(scenario), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("simkit: error: ")
    assert message in err
    assert err.count("\n") == 1


def test_missing_file_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "nope.toml"]) == 2
    assert capsys.readouterr().err == "simkit: error: nope.toml: no such scenario file\n"


def test_subprocess_exit_code_and_json(scenario: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[clients]\ncout = 3\n")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "simkit", "run", str(bad)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr == f"simkit: error: {bad}: clients: unknown key 'cout'\n"
    proc = subprocess.run(
        [sys.executable, "-m", "simkit", "run", str(scenario), "--json"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1])["clients"] == 4


def test_scenario_schema(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scenario", "schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert "clients" in schema["properties"]
    out = tmp_path / "schema.json"
    assert main(["scenario", "schema", "-o", str(out)]) == 0
    assert json.loads(out.read_text()) == schema


def test_scenario_check(scenario: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scenario", "check", str(scenario)]) == 0
    assert "ok (4 clients, 2 rounds" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text("rounds = 0\n")
    assert main(["scenario", "check", str(bad)]) == 2
    assert "bad.toml: rounds: must be > 0, got 0" in capsys.readouterr().err


def test_scenario_check_builds_the_protocol(capsys: pytest.CaptureFixture[str]) -> None:
    # Valid in form, refused by FedAvg when it builds: a median is not a sum.
    secagg = Path(__file__).resolve().parents[1] / "scenarios" / "secagg.toml"
    assert main(["scenario", "check", str(secagg)]) == 0
    assert "protocol checked, scenario built" in capsys.readouterr().out
    assert main(["scenario", "check", str(secagg), "--set", 'aggregator.kind="median"']) == 2
    assert "needs an aggregator that is a sum" in capsys.readouterr().err
