"""The virtual-time loop: time jumps, FIFO timers, deadlocks, bounds, outside work."""

from __future__ import annotations

import asyncio
import time

import anyio
import pytest

from simkit.runtime import (
    RealTimeEventLoop,
    SimulationDeadlock,
    VirtualEventLoop,
    VirtualTimeLimitExceeded,
    current_run,
    outside_work,
    run,
    run_outside,
)


def test_an_hour_of_sleep_costs_no_wall_time() -> None:
    async def main() -> float:
        await anyio.sleep(3600)
        return current_run().now()

    wall = time.perf_counter()
    assert run(main) == 3600.0
    assert time.perf_counter() - wall < 2.0


def test_timers_fire_in_time_then_sequence_order() -> None:
    async def main() -> list[int]:
        loop = asyncio.get_running_loop()
        order: list[int] = []
        for i in range(20):
            loop.call_at(5.0 if i % 2 else 3.0, order.append, i)
        await anyio.sleep(10)
        return order

    assert run(main) == [i for i in range(20) if i % 2 == 0] + [i for i in range(20) if i % 2]


def test_cancel_scopes_and_timeouts_use_virtual_time() -> None:
    async def main() -> tuple[float, bool]:
        with anyio.move_on_after(90) as scope:
            await anyio.sleep(1000)
        return current_run().now(), scope.cancelled_caught

    assert run(main) == (90.0, True)


def test_deadlock_names_the_blocked_tasks() -> None:
    async def main() -> None:
        never = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(never.wait, name="stuck-actor")
            await never.wait()

    with pytest.raises(SimulationDeadlock, match="stuck-actor"):
        run(main)


def test_max_time_ends_a_runaway_run() -> None:
    async def main() -> None:
        while True:  # noqa: ASYNC110 - a runaway loop is the point
            await anyio.sleep(1.0)

    with pytest.raises(VirtualTimeLimitExceeded, match="max_time=50"):
        run(main, max_time=50)


def test_outside_work_freezes_the_clock() -> None:
    async def main() -> tuple[int, int, float]:
        with outside_work():
            a = await anyio.to_thread.run_sync(lambda: time.sleep(0.05) or 1)
        b = await run_outside(lambda: time.sleep(0.05) or 2)
        return a, b, current_run().now()

    assert run(main) == (1, 2, 0.0)


def test_real_mode_runs_the_same_code() -> None:
    async def main() -> tuple[str, bool]:
        await anyio.sleep(0.01)
        info = current_run()
        return info.mode, 0.005 < info.now() < 5.0

    assert run(main, mode="real") == ("real", True)


def test_real_mode_clock_counts_from_the_start_of_the_run() -> None:
    async def main() -> tuple[bool, float]:
        loop = asyncio.get_running_loop()
        start = loop.time()
        await anyio.sleep(0.02)
        return isinstance(loop, RealTimeEventLoop), loop.time() - start

    is_real, slept = run(main, mode="real")
    assert is_real
    assert 0.015 < slept < 5.0
    assert run(_loop_time, mode="real") < 5.0  # not the monotonic clock of the machine


async def _loop_time() -> float:
    return asyncio.get_running_loop().time()


def test_the_loop_is_virtual_only_in_virtual_mode() -> None:
    async def main() -> bool:
        return isinstance(asyncio.get_running_loop(), VirtualEventLoop)

    assert run(main) is True
    assert run(main, mode="real") is False


def test_unknown_mode_is_refused() -> None:
    async def main() -> None:
        return None

    with pytest.raises(ValueError, match="mode"):
        run(main, mode="warp")  # type: ignore[arg-type]


def test_current_run_outside_a_run() -> None:
    with pytest.raises(RuntimeError, match="not inside"):
        current_run()


def test_seed_tree_is_available() -> None:
    async def main() -> int:
        return int(current_run().seeds.numpy("x").integers(1 << 30))

    assert run(main, seed=3) == run(main, seed=3)
    assert run(main, seed=3) != run(main, seed=4)


def test_the_asyncio_timer_adapter_still_matches_asyncio() -> None:
    """simkit._asyncio_timers is the one place that uses asyncio internals: check them."""
    from simkit import _asyncio_timers
    from simkit.clock import Clock
    from simkit.runtime import VirtualEventLoop

    loop = VirtualEventLoop()
    try:
        assert _asyncio_timers.next_due(loop) is None
        fired: list[int] = []
        for i in range(5):
            loop.call_at(2.0, fired.append, i)
        early = loop.call_at(1.0, fired.append, -1)
        assert isinstance(early, _asyncio_timers.SeqTimerHandle)
        assert _asyncio_timers.next_due(loop) == 1.0
        clock = Clock(loop)
        assert clock.virtual
        assert clock.now() == 0.0
        loop.run_until_complete(asyncio.sleep(3.0))
        assert fired == [-1, 0, 1, 2, 3, 4]
        assert loop.time() == 3.0
    finally:
        loop.close()
    real = asyncio.new_event_loop()
    try:
        assert not Clock(real).virtual
    finally:
        real.close()
