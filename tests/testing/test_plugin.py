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

    from simkit.actors import Actor, Context
    from simkit.simulation import Simulation

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
        assert "1 failed, 2 passed" in proc.stdout
        assert "NondeterministicRun" in proc.stdout
    else:
        assert proc.returncode == 0, proc.stdout + proc.stderr


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
