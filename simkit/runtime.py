"""The runtime: a virtual-time asyncio event loop and the ``run`` entry point.

In **virtual** mode every actor runs in one thread on :class:`VirtualEventLoop`,
an ordinary asyncio selector loop whose clock is a number it owns. When no
callback is ready and no outside work is pending, the loop's selector does not
block: it moves the clock straight to the next timer. A 60 s timeout therefore
costs no wall time, and the order of events depends only on the program and its
seed. Timers that fall due at the same instant fire in the order they were
scheduled.

When nothing is ready, no timer is pending and no outside work is pending,
nothing can ever happen again: the run fails with :class:`SimulationDeadlock`,
naming the tasks that are blocked. A bound on virtual time
(``max_time``) ends a runaway run with :class:`VirtualTimeLimitExceeded`.

In **real** mode the same coroutines run on a normal asyncio loop
(:class:`RealTimeEventLoop`) whose clock reads 0 when the run starts, so that
times in a real run's trace count from its start, as in a virtual run.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import gc
import itertools
import selectors
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any, Literal, TypeVar, TypeVarTuple, Unpack

import anyio

from simkit import _asyncio_timers as _timers
from simkit.clock import VirtualTime
from simkit.executor import Executor as SimExecutor
from simkit.executor import deliver
from simkit.rng import SeedTree

__all__ = [
    "Mode",
    "RealTimeEventLoop",
    "RunInfo",
    "SimulationDeadlock",
    "SimulationError",
    "VirtualEventLoop",
    "VirtualTimeLimitExceeded",
    "current_run",
    "outside_work",
    "run",
    "run_outside",
]

T = TypeVar("T")
Ts = TypeVarTuple("Ts")
Mode = Literal["virtual", "real"]


class SimulationError(RuntimeError):
    """A simulation could not go on (deadlock, time bound, ...)."""


class SimulationDeadlock(SimulationError):
    """Every task is blocked, no timer is pending and no outside work is pending."""


class VirtualTimeLimitExceeded(SimulationError):
    """The next event lies beyond the run's ``max_time`` bound."""


class _VirtualSelector(selectors.BaseSelector):
    """Wraps a real selector; instead of sleeping, advances the loop's clock."""

    def __init__(self, loop: VirtualEventLoop) -> None:
        self._real = selectors.DefaultSelector()
        self._loop = loop

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._real.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.modify(fileobj, events, data)

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return self._real.get_map()

    def close(self) -> None:
        self._real.close()

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        loop = self._loop
        if loop._outside_pending:
            # Outside work is computing: virtual time stands still until it reports.
            # When nothing else is ready, the oldest finished job is handed over
            # (simkit.executor.deliver: submission order, whatever finishes first).
            if timeout != 0 and loop.outside_hook is not None and loop.outside_hook():
                return []
            return self._real.select(None if timeout is None or timeout > 0 else 0)
        if len(self._real.get_map()) > 1:
            events = self._real.select(0)  # fds other than the self-pipe
            if events:
                return events
        if timeout == 0:
            return []
        if timeout is None:
            loop._stalled()
            return []
        loop._advance_to_next_timer(timeout)
        return []


class RealTimeEventLoop(asyncio.SelectorEventLoop):
    """An ordinary asyncio loop whose clock counts seconds since it was made.

    The wall clock (``time.monotonic``) drives it: this is real mode.
    """

    def __init__(self) -> None:
        super().__init__()
        self._t0 = time.monotonic()

    def time(self) -> float:
        """Real seconds since the loop was made."""
        return time.monotonic() - self._t0


class VirtualEventLoop(VirtualTime, asyncio.SelectorEventLoop):
    """An asyncio event loop on a virtual clock.

    Args:
        start: The initial virtual time, in seconds.
        max_time: If given, the run fails with :class:`VirtualTimeLimitExceeded`
            instead of moving the clock beyond this time.
    """

    def __init__(self, *, start: float = 0.0, max_time: float | None = None) -> None:
        self._vtime = float(start)
        self._timer_seq = itertools.count()
        self._outside_pending = 0
        self.max_time = max_time
        #: The error that ended the run, once the loop gave up on it.
        self.failure: SimulationError | None = None
        #: Returns a description of what is blocked, for deadlock reports.
        self.describe_blocked: Callable[[], str] = self._describe_tasks
        self._root: asyncio.Task[Any] | None = None
        #: Called when the loop is idle with outside work pending; True if it
        #: handed a result over (set by :func:`simkit.executor.deliver`).
        self.outside_hook: Callable[[], bool] | None = None
        super().__init__(_VirtualSelector(self))
        _timers.fine_resolution(self)

    def time(self) -> float:
        """The virtual time, in seconds."""
        return self._vtime

    def call_at(
        self,
        when: float,
        callback: Callable[[Unpack[Ts]], object],
        *args: *Ts,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        """Schedule ``callback`` at virtual time ``when`` (FIFO among equal times)."""
        timer = _timers.SeqTimerHandle(when, next(self._timer_seq), callback, args, self, context)
        _timers.push(self, timer)
        return timer

    def run_in_executor(
        self, executor: Executor | None, func: Callable[[Unpack[Ts]], T], *args: *Ts
    ) -> asyncio.Future[T]:
        """Run outside work; virtual time does not advance until it completes."""
        fut = super().run_in_executor(executor, func, *args)
        self._outside_pending += 1
        fut.add_done_callback(self._outside_done)
        return fut

    async def shutdown_default_executor(self, *args: Any, **kwargs: Any) -> None:
        """Join the default executor's threads (outside work: the clock waits)."""
        self._outside_pending += 1
        try:
            await super().shutdown_default_executor(*args, **kwargs)
        finally:
            self._outside_pending -= 1

    def _outside_done(self, _fut: asyncio.Future[Any]) -> None:
        self._outside_pending -= 1

    def _advance_to_next_timer(self, timeout: float) -> None:
        due = _timers.next_due(self)
        target = due if due is not None else self._vtime + timeout
        if self.max_time is not None and target > self.max_time:
            self._fail(
                VirtualTimeLimitExceeded(
                    f"virtual time would pass max_time={self.max_time:g} s "
                    f"(next event at {target:g} s)"
                )
            )
            return
        if target > self._vtime:
            self._vtime = target

    def _stalled(self) -> None:
        blocked = self.describe_blocked()
        self._fail(
            SimulationDeadlock(
                f"deadlock at t={self._vtime:g} s: every task is blocked and no timer "
                f"is pending; blocked: {blocked or 'nothing'}"
            )
        )

    def _fail(self, error: SimulationError) -> None:
        if self.failure is not None or self._root is None or self._root.done():
            # Already unwinding (or nobody to tell): give up at once.
            raise error
        self.failure = error
        self._root.cancel()

    def _describe_tasks(self) -> str:
        names = []
        for task in asyncio.all_tasks(self):
            coro = task.get_coro()
            frame = getattr(coro, "cr_frame", None)
            where = f" at {frame.f_code.co_name}:{frame.f_lineno}" if frame is not None else ""
            names.append(f"{task.get_name()}{where}")
        return ", ".join(sorted(names))


class outside_work:
    """Mark a block that awaits work done outside the loop (threads, processes).

    In virtual mode the clock stands still while such work is pending, so the
    result does not depend on how long the work really takes (DESIGN rule 5).
    ``loop.run_in_executor`` is counted automatically; wrap anything else, such
    as ``anyio.to_thread.run_sync``, in this block. Outside virtual mode it does
    nothing.
    """

    __slots__ = ("_loop",)

    def __enter__(self) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop if isinstance(loop, VirtualEventLoop) else None
        if self._loop is not None:
            self._loop._outside_pending += 1

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None:
            self._loop._outside_pending -= 1


async def run_outside(
    func: Callable[..., T], *args: Any, executor: Executor | SimExecutor | None = None
) -> T:
    """Run ``func(*args)`` in ``executor`` (a thread pool by default) and await it.

    ``executor`` is a ``concurrent.futures`` executor or a
    :class:`simkit.executor.Executor` (inline, process pool, Ray). In virtual
    mode results come back in submission order, each when nothing else is
    ready, and virtual time stands still while any is pending: the run does
    not depend on which job finishes first (:func:`simkit.executor.deliver`).
    """
    loop = asyncio.get_running_loop()
    if not isinstance(loop, VirtualEventLoop) and not isinstance(executor, SimExecutor):
        return await loop.run_in_executor(executor, func, *args)
    pool = executor if executor is not None else _threads()
    return await deliver(pool.submit(func, *args))


_THREADS: list[ThreadPoolExecutor] = []


def _threads() -> ThreadPoolExecutor:
    """The thread pool outside work runs on by default in virtual mode."""
    if not _THREADS:
        _THREADS.append(ThreadPoolExecutor(thread_name_prefix="simkit-outside"))
    return _THREADS[0]


class RunInfo:
    """What a running program may ask of the run: its mode, seed tree and clock."""

    __slots__ = ("_loop", "mode", "origin", "seeds")

    def __init__(self, mode: Mode, seeds: SeedTree, loop: asyncio.AbstractEventLoop) -> None:
        self.mode = mode
        self.seeds = seeds
        self._loop = loop
        self.origin = 0.0 if mode == "virtual" else loop.time()

    def now(self) -> float:
        """Seconds since the run started (virtual, or real elapsed in real mode)."""
        return self._loop.time() - self.origin


_current: contextvars.ContextVar[RunInfo] = contextvars.ContextVar("simkit_run")


def current_run() -> RunInfo:
    """The :class:`RunInfo` of the run this code executes in.

    Raises:
        RuntimeError: Outside :func:`run`.
    """
    try:
        return _current.get()
    except LookupError:
        raise RuntimeError("not inside simkit.run()") from None


def run(
    main: Callable[..., Awaitable[T]],
    *args: Any,
    seed: int = 0,
    mode: Mode = "virtual",
    max_time: float | None = None,
) -> T:
    """Run ``main(*args)`` to completion and return its result.

    Args:
        main: An async function.
        *args: Its positional arguments.
        seed: Names the run; available as ``current_run().seeds``.
        mode: ``"virtual"`` (deterministic virtual time) or ``"real"``.
        max_time: Virtual-time bound (virtual mode only).

    Raises:
        SimulationDeadlock: Everything blocked with nothing left to wait for.
        VirtualTimeLimitExceeded: The run would pass ``max_time``.
        ValueError: An unknown mode.
    """
    if mode not in ("virtual", "real"):
        raise ValueError(f"mode must be 'virtual' or 'real', got {mode!r}")
    seeds = SeedTree(seed)

    async def root() -> T:
        loop = asyncio.get_running_loop()
        _current.set(RunInfo(mode, seeds, loop))
        if not isinstance(loop, VirtualEventLoop):
            return await main(*args)
        loop._root = asyncio.current_task()
        try:
            return await main(*args)
        except BaseException:
            if loop.failure is not None:
                raise loop.failure from None
            raise

    options: dict[str, Any] = {"loop_factory": RealTimeEventLoop}
    if mode == "virtual":
        options["loop_factory"] = lambda: VirtualEventLoop(max_time=max_time)
    with _gc_tuned():
        return anyio.run(root, backend="asyncio", backend_options=options)


@contextlib.contextmanager
def _gc_tuned(gen0: int = 50_000) -> Iterator[None]:
    """Collect cyclic garbage less often during a run.

    A simulation of thousands of actors holds millions of live objects; with
    CPython's default thresholds the cyclic collector rescans them every few
    hundred allocations and takes half the run (measured: 10^4 clients, 8.0 s
    -> 4.2 s). The thresholds are restored afterwards.
    """
    old = gc.get_threshold()
    gc.set_threshold(max(gen0, old[0]), max(20, old[1]), max(50, old[2]))
    try:
        yield
    finally:
        gc.set_threshold(*old)
