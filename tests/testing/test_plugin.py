"""The pytest plugin: options and the determinism check, in a child pytest."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from simkit.actors import Actor, Context
from simkit.simulation import Simulation
from simkit.testing import NondeterministicRun, simulate

CHILD = textwrap.dedent(
    """
    import itertools

    from hypothesis import given, strategies as st

    from simkit.actors import Actor, Context
    from simkit.simulation import Simulation
    from simkit.testing import kit_settings, simulate

    COUNTER = itertools.count()

    class Sleeper(Actor):
        name = "sleeper"

        def __init__(self, seconds: float) -> None:
            self.seconds = seconds

        async def run(self, ctx: Context) -> None:
            await ctx.sleep(self.seconds)

    def test_seed(simkit_seed):
        assert simkit_seed == 7

    def test_stable(simulate):
        simulate(lambda: _sim(1.0))

    def test_flaky(simulate):
        # depends on state outside the seed: a global counter
        simulate(lambda: _sim(1.0 + next(COUNTER)))

    @kit_settings(max_examples=3, database=None)
    @given(st.integers(0, 2))
    def test_flaky_inside_given(n):
        # no fixture: the session-wide option applies to every kit run
        simulate(lambda: _sim(1.0 + n + next(COUNTER)))

    def _sim(seconds):
        sim = Simulation(seed=3)
        sim.add(Sleeper(seconds))
        return sim
    """
)


def run_child(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_child.py").write_text(CHILD)
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path), *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=120)


@pytest.mark.parametrize("check", [False, True])
def test_determinism_option_catches_a_run_that_depends_on_more_than_the_seed(
    tmp_path: Path, check: bool
) -> None:
    args = ["--simkit-seed", "7"] + (["--simkit-check-determinism"] if check else [])
    proc = run_child(tmp_path, *args)
    if check:
        assert proc.returncode == 1, proc.stdout
        assert "2 failed, 2 passed" in proc.stdout
        assert "NondeterministicRun" in proc.stdout
        assert "first divergent event" in proc.stdout
        assert "HealthCheck" not in proc.stdout
    else:
        # a project with no pytest configuration: no warning of any kind
        # (pytest-asyncio's unset loop scope included)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "warning" not in (proc.stdout + proc.stderr).lower()


def test_the_ini_option_turns_the_check_on_for_the_session() -> None:
    from simkit.testing import _run, plugin

    class Config:
        def addinivalue_line(self, name: str, line: str) -> None:
            pass

        def getoption(self, name: str, default: object = None) -> object:
            return default if name == "hypothesis_profile" else None

        def getini(self, name: str) -> bool:
            return name == "simkit_check_determinism"

    before = _run.check_determinism_enabled()
    try:
        plugin.pytest_configure(Config())  # type: ignore[arg-type]
        assert _run.check_determinism_enabled()
    finally:
        _run.set_check_determinism(before)


class Nap(Actor):
    name = "nap"

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    async def run(self, ctx: Context) -> None:
        await ctx.sleep(self.seconds)


def nap(seconds: float) -> Simulation:
    sim = Simulation(seed=1)
    sim.add(Nap(seconds))
    return sim


def test_simulate_runs_a_fresh_simulation_each_time() -> None:
    first = simulate(lambda: nap(5.0), check_determinism=True)
    assert first.end_time == 5.0
    assert simulate(lambda: nap(5.0)).digest == first.digest
    durations = iter([1.0, 2.0])
    with pytest.raises(NondeterministicRun, match="gave trace digests"):
        simulate(lambda: nap(next(durations)), check_determinism=True)
