"""``simkit replay``: what a replay file records, and the exit statuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from simkit.cli import main
from simkit.runner import run_scenario
from simkit.testing import ReplayRecord, replay_file, reproduce

SCENARIO = {
    "name": "tiny",
    "rounds": 1,
    "clients": {"count": 2},
    "protocol": {"name": "tests.testing.test_user_protocol:PLUGIN"},
    "run": {"trace_heartbeats": False},
}


def always_fails(result: object) -> None:
    raise AssertionError("always")


def test_the_record_is_a_comment_simkit_run_ignores(tmp_path: Path) -> None:
    record = ReplayRecord("InvariantViolation: x", "tests.testing.test_replay:always_fails")
    path = replay_file(tmp_path / "r.toml", SCENARIO, record=record)
    text = path.read_text()
    assert '#: [replay]\n#: failure = "InvariantViolation: x"\n' in text
    assert "trace_digest" not in text  # None values are left out
    assert run_scenario(path).rounds  # the file is a scenario as it is
    outcome = reproduce(path)
    assert outcome.failed
    assert outcome.record == record
    assert (
        outcome.line
        == "failed differently: AssertionError: always (recorded: InvariantViolation: x)"
    )


def test_without_a_check_the_trace_digest_decides(tmp_path: Path) -> None:
    digest = run_scenario(SCENARIO).trace.digest()
    same = replay_file(tmp_path / "same.toml", SCENARIO, record=ReplayRecord(trace_digest=digest))
    assert reproduce(same).line.startswith("reproduced: the failing run, bit for bit")
    other = replay_file(tmp_path / "o.toml", SCENARIO, record=ReplayRecord(trace_digest="0" * 64))
    assert main(["replay", str(other)]) == 0


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("rounds = 1\n", "not a replay file: no '#: [replay]' record"),
        ('#: [replay]\n#: chek = "a:b"\nrounds = 1\n', "replay: unknown key 'chek'"),
        ('#: [replay]\n#: check = "nocolon"\n', "replay.check: expected 'package.module:function'"),
        (
            '#: [replay]\n#: check_determinism = "yes"\n',
            "replay.check_determinism: expected a bool",
        ),
        ("#: [replay\n", "the '#:' replay record is not valid TOML"),
        (
            '#: [replay]\n#: check = "nosuchmod_xyz:f"\n',
            "replay.check: cannot load 'nosuchmod_xyz:f'",
        ),
        ("#: [replay]\nrounds = -1\n", "rounds"),
    ],
)
def test_a_bad_replay_file_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, problem: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    assert main(["replay", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert captured.err.startswith(f"simkit: error: {path}: ")
    assert problem in captured.err


def test_a_missing_replay_file_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", "no/such.toml"]) == 2
    assert capsys.readouterr().err == "simkit: error: no/such.toml: no such replay file\n"
