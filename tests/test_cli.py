"""Tests of the simkit command line (called in-process through ``main``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from simkit._version import __version__
from simkit.cli import COMMANDS, build_parser, main
from simkit.trace import Event, Trace, events_digest, write_jsonl


def sample_events() -> list[Event]:
    trace = Trace()
    trace.record(0.0, "send", "server", "c01", "TrainRequest", 1200, "aa")
    trace.record(0.1, "deliver", "server", "c01", "TrainRequest", 1200, "aa")
    trace.record(0.5, "send", "c01", "server", "Ping", 8)
    trace.record(0.6, "deliver", "c01", "server", "Ping", 8)
    trace.record(1.0, "crash", "c02", info="loud")
    trace.record(2.0, "send", "c01", "server", "TrainReply", 3000, "bb")
    trace.record(2.2, "deliver", "c01", "server", "TrainReply", 3000, "bb")
    return trace.events


@pytest.fixture
def trace_file(tmp_path: Path) -> Path:
    path = tmp_path / "a.jsonl"
    write_jsonl(sample_events(), path)
    return path


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"simkit {__version__}\n"


def test_help_lists_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(command.name in out for command in COMMANDS)
    assert main(["trace", "--help"]) == 0
    assert "mermaid" in capsys.readouterr().out


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "required" in capsys.readouterr().err
    assert main(["trace", "show"]) == 2
    assert main(["trace", "mermaid", "x", "--max-events", "0"]) == 2
    assert "expected a positive integer" in capsys.readouterr().err


def test_build_parser_is_fresh_each_time() -> None:
    assert build_parser() is not build_parser()


def test_trace_show(trace_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["trace", "show", str(trace_file)]) == 0
    out = capsys.readouterr().out
    assert "     2.000s     send     c01 -> server  TrainReply  3.0 kB" in out
    assert "!! crash    c02  (loud)" in out
    assert "Ping" not in out
    assert main(["trace", "show", str(trace_file), "--heartbeats"]) == 0
    assert "Ping" in capsys.readouterr().out


def test_trace_show_filters(trace_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["trace", "show", str(trace_file), "--kinds", "send,crash", "--from", "0.5"]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 + 2
    assert main(["trace", "show", str(trace_file), "--actors", "c02", "--to", "1.5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1:] == ["     1.000s  !! crash    c02  (loud)"]


def test_trace_diff_identical(
    trace_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = tmp_path / "b.jsonl"
    copy.write_bytes(trace_file.read_bytes())
    assert main(["trace", "diff", str(trace_file), str(copy)]) == 0
    digest = events_digest(sample_events())
    assert capsys.readouterr().out == f"traces are identical (7 events, digest {digest})\n"


def test_trace_diff_differs(
    trace_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = sample_events()
    events[4] = Event(1.0, 4, "crash", "c02", info="silent")
    other = tmp_path / "b.jsonl"
    write_jsonl(events, other)
    assert main(["trace", "diff", str(trace_file), str(other)]) == 1
    out = capsys.readouterr().out
    assert "traces diverge at event #4" in out
    assert "crash    c02  (loud)" in out
    assert "crash    c02  (silent)" in out
    assert "differing fields: info" in out


def test_trace_diff_prefix(
    trace_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shorter = tmp_path / "b.jsonl"
    write_jsonl(sample_events()[:5], shorter)
    assert main(["trace", "diff", str(trace_file), str(shorter)]) == 1
    out = capsys.readouterr().out
    assert "traces diverge at event #5" in out
    assert f"{shorter}: <end of trace>" in out


def test_trace_mermaid(
    trace_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["trace", "mermaid", str(trace_file)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("sequenceDiagram\n")
    assert "    c01->>server: TrainReply (3.0 kB) @2.200s" in out
    assert "Ping" not in out
    target = tmp_path / "out.mmd"
    argv = ["trace", "mermaid", str(trace_file), "-o", str(target), "--heartbeats"]
    assert main([*argv, "--max-events", "2"]) == 0
    assert capsys.readouterr().out == ""
    text = target.read_text()
    assert "c01->>server: Ping" in text
    assert "more events not shown" in text


def test_trace_mermaid_unwritable_output(
    trace_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "missing" / "out.mmd"
    assert main(["trace", "mermaid", str(trace_file), "-o", str(target)]) == 2
    assert capsys.readouterr().err.startswith(f"simkit: error: {target}: cannot write")


def test_trace_digest(trace_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["trace", "digest", str(trace_file)]) == 0
    assert capsys.readouterr().out == events_digest(sample_events()) + "\n"


def test_missing_file_is_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.jsonl"
    assert main(["trace", "digest", str(missing)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"simkit: error: {missing}: no such trace file\n"
    assert main(["trace", "show", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err


def test_malformed_trace_is_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"t": 0, "seq": 0, "kind": "mark"}\n{"t": oops}\n')
    assert main(["trace", "diff", str(bad), str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"simkit: error: {bad}:2: not valid JSON")
    assert err.count("\n") == 1
    bad.write_bytes(b"\xff\xfe\n")
    assert main(["trace", "show", str(bad)]) == 2
    assert "not a text trace file" in capsys.readouterr().err


def test_python_dash_m(trace_file: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "simkit", "trace", "digest", str(trace_file)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == events_digest(sample_events())
