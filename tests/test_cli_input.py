"""Bad input on the command line: exit 2 and one line naming the problem, never a traceback.

Each case calls :func:`simkit.cli.main` in-process; one runs ``python -m
simkit`` to show the same from a shell, with no ``MemoryError`` and no hang.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from simkit.cli import main
from simkit.scenario import ScenarioError, load_scenario
from simkit.scenario._size import estimate_memory, size_problem

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = str(ROOT / "scenarios" / "quickstart.toml")

MINI = """\
rounds = 2

[clients]
count = 4

[data]
samples = 20
dim = 3
classes = 2
"""


@pytest.fixture
def mini(tmp_path: Path) -> str:
    path = tmp_path / "mini.toml"
    path.write_text(MINI, encoding="utf-8")
    return str(path)


def one_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run ``simkit argv``; assert exit 2 and one stderr line; return that line."""
    assert main(list(argv)) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("simkit: error: "), err
    assert "Traceback" not in err
    return lines[0]


# ----------------------------------------------------------------------------- the cases


def test_infinite_latency_names_the_key(capsys: pytest.CaptureFixture[str], mini: str) -> None:
    line = one_error(capsys, "run", mini, "--set", "network.latency=inf")
    assert line.endswith("network.latency: must be a finite number, got inf")


def test_huge_client_count_is_refused_with_an_estimate(
    capsys: pytest.CaptureFixture[str], mini: str
) -> None:
    line = one_error(capsys, "run", mini, "--set", "clients.count=1000000000000")
    assert "clients.count=1000000000000 needs ~" in line
    assert " TB of memory" in line


def test_huge_dimension_is_refused_with_an_estimate(
    capsys: pytest.CaptureFixture[str], mini: str
) -> None:
    line = one_error(capsys, "run", mini, "--set", "data.dim=1000000000")
    assert "data.dim=1000000000 needs ~" in line


@pytest.mark.parametrize("command", ["run", "serve", "client"])
def test_bad_seed_is_one_line(capsys: pytest.CaptureFixture[str], mini: str, command: str) -> None:
    extra = {"run": [], "serve": ["--port", "0"], "client": ["--name", "c000", "--server", "h:1"]}
    line = one_error(capsys, command, mini, "--seed", "abc", *extra[command])
    assert line == (
        f"simkit: error: argument --seed: expected an integer, got 'abc' "
        f"(see 'simkit {command} --help')"
    )


# ----------------------------------------------------------------------------- the class of problem


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("network.latency=nan", "network.latency: must be a finite number, got nan"),
        ('network.latency={kind="uniform", low=0, high=inf}', "network.latency.high: must be"),
        ("network.bandwidth=inf", "network.bandwidth: must be a finite number"),
        ("cost.per_sample=inf", "cost.per_sample: must be a finite number"),
        ("optimizer.client.lr=inf", "optimizer.client.lr: must be a finite number"),
        ("run.max_time=-inf", "run.max_time: must be a finite number"),
        ('clients.speeds={kind="list", values=[1, 1, 1, nan]}', "clients.speeds.values[3]"),
        ("rounds=1000000000000", "rounds=1000000000000 needs ~"),
        ("data.classes=1000000000", "data.classes=1000000000 needs ~"),
        ("data.samples=1000000000000", "data.samples=1000000000000 needs ~"),
        ('model={kind="mlp", hidden=[1000000000]}', "model.hidden=[1000000000] needs ~"),
        ('model={kind="mlp", num_threads=100000}', "model.num_threads: must be <= 256"),
        ('clients.speeds={kind="lognormal", sigma=1000}', "clients.speeds: draws a speed of"),
        ('faults.events=[{kind="degrade", actor="c000", at=1.0, loss=2}]', "'loss' must be"),
        ('faults.events=[{kind="slowdown", actor="c000", at=1.0, factor=inf}]', "slowdown factor"),
        (
            'faults.events=[{kind="crash", actor="c000", on={kind="deliver", type=3}}]',
            "trigger type must be a non-empty string, got 3",
        ),
    ],
)
def test_every_value_is_checked(
    capsys: pytest.CaptureFixture[str], mini: str, override: str, expected: str
) -> None:
    assert expected in one_error(capsys, "run", mini, "--quiet", "--set", override)


@pytest.mark.parametrize("command", ["run", "scenario check"])
def test_scenario_check_refuses_like_run(
    capsys: pytest.CaptureFixture[str], mini: str, command: str
) -> None:
    line = one_error(capsys, *command.split(), mini, "--set", "clients.count=1000000000000")
    assert "clients.count=1000000000000 needs ~" in line


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], "the following arguments are required: COMMAND (see 'simkit --help')"),
        (["run"], "required: SCENARIO"),
        (["run", "x.toml", "--transport", "udp"], "argument --transport: invalid choice"),
        (["run", "x.toml", "--bogus"], "unrecognized arguments: --bogus"),
        (["serve", "x.toml", "--port", "99999"], "expected a port number 0-65535"),
        (["client", "x.toml", "--name", "c000", "--server", "nohost"], "expected HOST:PORT"),
        (["trace", "show", "t.jsonl", "--from", "inf"], "expected a finite number, got 'inf'"),
        (["trace", "show", "t.jsonl", "--width", "-3"], "expected a positive integer"),
        (["trace", "diff", "a.jsonl", "b.jsonl", "--context", "-1"], "expected an integer >= 0"),
        (["demo", "--seed", "x"], "argument --seed: expected an integer, got 'x'"),
        (["demo", "--trace", "/nonexistent/dir/t.jsonl"], "no such directory"),
        (["scenario", "nope"], "invalid choice: 'nope'"),
    ],
)
def test_option_errors_are_one_line(
    capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    assert expected in one_error(capsys, *argv)


def test_bad_arrays_in_an_npz_file(
    capsys: pytest.CaptureFixture[str], mini: str, tmp_path: Path
) -> None:
    cases = {
        "text.npz": (np.array(["a"] * 20), np.arange(20) % 2, "x must hold numbers"),
        "nan.npz": (np.full((20, 3), np.nan), np.arange(20) % 2, "x holds NaN"),
        "neg.npz": (np.zeros((20, 3)), -np.arange(20), "labels must be >= 0"),
    }
    for name, (x, y, expected) in cases.items():
        np.savez(tmp_path / name, x=x, y=y)
        line = one_error(
            capsys, "run", mini, "--set", 'data={source="npz", path="%s"}' % (tmp_path / name)
        )
        assert f"data.path: {expected}" in line
    (tmp_path / "plain.npz").write_text("hello", encoding="utf-8")
    line = one_error(
        capsys, "run", mini, "--set", f'data={{source="npz", path="{tmp_path}/plain.npz"}}'
    )
    assert line.endswith("data.path: not a .npz archive")


def test_tiny_synthetic_shards_run_without_a_test_set(
    capsys: pytest.CaptureFixture[str], mini: str
) -> None:
    # one sample per client leaves nothing to hold out: no test set, not a crash
    assert main(["run", mini, "--quiet", "--set", "data.samples=1"]) == 0


# ----------------------------------------------------------------------------- the estimate


def test_the_estimate_is_a_floor_the_shipped_scenarios_pass() -> None:
    for path in sorted((ROOT / "scenarios").glob("*.toml")):
        cfg = load_scenario(path).config
        assert size_problem(cfg, limit=2 * 10**9) is None, path.name  # 2 GB is plenty


def test_the_estimate_grows_with_each_size() -> None:
    base = load_scenario(QUICKSTART).config
    total = estimate_memory(base).total
    for override in ("clients.count=100", "data.dim=200", "data.samples=2000", "rounds=50"):
        bigger = load_scenario(QUICKSTART, [override]).config
        assert estimate_memory(bigger).total > total, override


def test_the_limit_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch, mini: str) -> None:
    monkeypatch.setenv("SIMKIT_MEMORY_LIMIT", "1k")
    with pytest.raises(ScenarioError, match=r"allowed by \$SIMKIT_MEMORY_LIMIT"):
        load_scenario(mini)
    monkeypatch.setenv("SIMKIT_MEMORY_LIMIT", "lots")
    with pytest.raises(ScenarioError, match="must be a size such as 8G"):
        load_scenario(mini)
    monkeypatch.setenv("SIMKIT_MEMORY_LIMIT", "1G")
    assert load_scenario(mini).config.clients.count == 4


def test_from_a_shell_a_huge_scenario_is_one_line_and_quick(mini: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "simkit", "run", mini, "--set", "clients.count=1000000000000"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1
    assert "clients.count=1000000000000 needs ~" in proc.stderr


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--trace", "/nonexistent/dir/t.jsonl"], "--trace /nonexistent/dir/t.jsonl: no such dir"),
        (["--save-weights", "."], "--save-weights .: is a directory"),
        (["--report", "FILE"], "exists and is not a directory"),
        (["--faults", "BINARY"], "not a text fault file (invalid start byte)"),
        (["--faults", "."], ".: cannot read fault file: Is a directory"),
        (["--checkpoint", "FILE"], "cannot create checkpoint directory"),
    ],
)
def test_output_and_input_paths_are_checked_before_the_run(
    capsys: pytest.CaptureFixture[str], mini: str, tmp_path: Path, argv: list[str], expected: str
) -> None:
    (tmp_path / "file").write_text("x", encoding="utf-8")
    (tmp_path / "binary.toml").write_bytes(b"\xff\xfe\x00")
    paths = {"FILE": str(tmp_path / "file"), "BINARY": str(tmp_path / "binary.toml")}
    argv = [paths.get(a, a) for a in argv]
    assert expected in one_error(capsys, "run", mini, "--quiet", *argv)
