"""Executors: results enter the simulation in submission order, whatever finishes first."""

from __future__ import annotations

import concurrent.futures
import time
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from simkit.executor import InlineExecutor, ProcessExecutor, make_executor
from simkit.runtime import current_run, run, run_outside


def _job(seconds: float, name: str) -> str:
    time.sleep(seconds)
    return name


async def _jobs(durations: list[float], executor: Any) -> list[tuple[float, str]]:
    log: list[tuple[float, str]] = []

    async def client(name: str, seconds: float) -> None:
        got = await run_outside(_job, seconds, name, executor=executor)
        log.append((current_run().now(), got))
        await anyio.sleep(0.5)  # modelled compute after the result: virtual time moves
        log.append((current_run().now(), f"{name} done"))

    async with anyio.create_task_group() as tg:
        for i, seconds in enumerate(durations):
            tg.start_soon(client, f"c{i}", seconds)
            await anyio.lowlevel.checkpoint()  # submission order is c0, c1, c2
    return log


@pytest.mark.parametrize("kind", ["threads", "process"])
def test_swapping_job_durations_gives_the_same_run(kind: str) -> None:
    pool: Any = (
        concurrent.futures.ThreadPoolExecutor(3) if kind == "threads" else ProcessExecutor(2)
    )
    with pool:
        slow_first = run(_jobs, [0.3, 0.0, 0.1], pool, seed=1)
        slow_last = run(_jobs, [0.0, 0.1, 0.3], pool, seed=1)
    assert slow_first == slow_last
    assert [name for _, name in slow_first[:3]] == ["c0", "c1", "c2"]
    assert {t for t, _ in slow_first[:3]} == {0.0}  # virtual time stood still meanwhile
    inline = run(_jobs, [0.3, 0.0, 0.1], InlineExecutor(), seed=1)
    assert inline == slow_first


def test_a_job_error_reaches_its_caller_only() -> None:
    async def main() -> list[str]:
        out = []

        async def one(x: int) -> None:
            try:
                out.append(str(await run_outside(int, x, executor=InlineExecutor())))
            except ValueError as exc:
                out.append(type(exc).__name__)

        async with anyio.create_task_group() as tg:
            tg.start_soon(one, "7")
            tg.start_soon(one, "x")
        return out

    assert run(main) == ["7", "ValueError"]


def test_make_executor_names_the_problem() -> None:
    assert make_executor().kind == "inline"
    with pytest.raises(ValueError, match="unknown executor 'gpu'"):
        make_executor("gpu")
    with pytest.raises(ValueError, match="workers must be >= 1"):
        make_executor("process", 0)


def test_ray_gives_the_inline_results() -> None:
    pytest.importorskip("ray")
    with make_executor("ray", 2) as ray_pool:
        assert run(_jobs, [0.2, 0.0], ray_pool) == run(_jobs, [0.2, 0.0], InlineExecutor())


def test_quickstart_digests_are_the_same_on_a_process_pool() -> None:
    pytest.importorskip("protocols.fedavg")
    from simkit.runner import run_scenario

    def digests(executor: str) -> tuple[str, str]:
        result = run_scenario(
            "scenarios/quickstart.toml",
            overrides={"execution.executor": executor, "execution.workers": 2, "rounds": 2},
        )
        result.setup.close()
        s = result.summary()
        return s["trace_digest"], s["weights_digest"]

    assert digests("process") == digests("inline")


def test_a_round_the_executor_cannot_run_fails_that_round_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("protocols.fedavg")
    from simkit.runner import run_scenario
    from simkit.scenario import _build
    from simkit.training import LogisticRegression

    # a lambda cannot be pickled to a worker process
    monkeypatch.setattr(_build, "_model_factory", lambda *a: lambda: LogisticRegression(20, 5))
    result = run_scenario(
        "scenarios/quickstart.toml",
        overrides={"execution.executor": "process", "execution.workers": 1, "rounds": 1},
    )
    result.setup.close()
    assert result.errors == []  # no client crashed
    assert result.rounds_completed == 0
    assert len(result.rounds[0].failed) == 10
