"""Client compute on an executor, with deterministic delivery (DESIGN.md rule 5).

One interface, three engines, none home-made:

* :class:`InlineExecutor` (the default) runs a job at once, in this thread;
* :class:`ProcessExecutor` runs jobs on a ``concurrent.futures`` process pool
  on this machine (arguments and results are pickled to and from the local
  worker processes; nothing is pickled on any wire between machines);
* :class:`RayExecutor` runs them as Ray tasks, locally or on an existing
  cluster, when Ray is installed (``pip install ray``; never required).

Whatever the engine and whichever job finishes first, results enter a
virtual-time simulation in *submission order*, each at a point where nothing
else is ready to run, and virtual time does not advance while a job is
pending. So a run's trace and weights do not depend on the engine, the number
of workers or how long each job really takes: :func:`deliver` (what
:func:`simkit.runtime.run_outside` uses) is the one place that decides.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import multiprocessing
import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, Literal, TypeVar

__all__ = [
    "EXECUTOR_KINDS",
    "Executor",
    "ExecutorKind",
    "InlineExecutor",
    "ProcessExecutor",
    "RayExecutor",
    "deliver",
    "make_executor",
]

T = TypeVar("T")
ExecutorKind = Literal["inline", "process", "ray"]
EXECUTOR_KINDS: tuple[str, ...] = ("inline", "process", "ray")


class Executor(ABC):
    """Runs jobs (a picklable function and its arguments) and returns futures."""

    kind: str = ""
    workers: int = 1

    @abstractmethod
    def submit(self, fn: Callable[..., T], /, *args: Any) -> concurrent.futures.Future[T]:
        """Start ``fn(*args)``; its result (or exception) arrives on the future."""

    def shutdown(self) -> None:  # noqa: B027 - inline has nothing to release
        """Release the workers (waits for running jobs)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} workers={self.workers}>"


class InlineExecutor(Executor):
    """Runs each job at once in the calling thread (no parallelism, no pickling)."""

    kind = "inline"

    def submit(self, fn: Callable[..., T], /, *args: Any) -> concurrent.futures.Future[T]:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        try:
            future.set_result(fn(*args))
        except Exception as exc:
            future.set_exception(exc)
        return future


class ProcessExecutor(Executor):
    """A pool of worker processes on this machine (``concurrent.futures``).

    Workers start from a fork server (``multiprocessing``'s ``forkserver``),
    not by forking the simulation, so they do not inherit its threads or
    state: a job gets what it needs through its (pickled) arguments, such as
    a model factory and a data loader.

    Args:
        workers: Number of processes (default: one per CPU).
    """

    kind = "process"

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or os.cpu_count() or 1
        context = multiprocessing.get_context("forkserver")
        self._pool = concurrent.futures.ProcessPoolExecutor(self.workers, mp_context=context)

    def submit(self, fn: Callable[..., T], /, *args: Any) -> concurrent.futures.Future[T]:
        return self._pool.submit(fn, *args)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class RayExecutor(Executor):
    """Ray tasks, on this machine or an existing cluster (Ray must be installed).

    Args:
        workers: CPUs Ray may use when it starts locally (``None``: all).
        address: An existing cluster's address (``"auto"``, ``"ray://..."``);
            ``None`` starts Ray locally unless it is already running.

    Raises:
        ImportError: Ray is not installed (the message says how to get it).
    """

    kind = "ray"

    def __init__(self, workers: int | None = None, address: str | None = None) -> None:
        try:
            import ray  # type: ignore[import-not-found, unused-ignore]
        except ImportError as exc:
            raise ImportError(
                "the ray executor needs Ray: `pip install ray` (it is optional)"
            ) from exc
        self._ray = ray
        if not ray.is_initialized():
            ray.init(address=address, num_cpus=workers, include_dashboard=False)
        self.workers = int(ray.cluster_resources().get("CPU", workers or 1))
        self._remote: dict[Callable[..., Any], Any] = {}

    def submit(self, fn: Callable[..., T], /, *args: Any) -> concurrent.futures.Future[T]:
        remote = self._remote.get(fn)
        if remote is None:
            remote = self._remote[fn] = self._ray.remote(fn)
        future: concurrent.futures.Future[T] = remote.remote(*args).future()
        return future


def make_executor(kind: str = "inline", workers: int | None = None) -> Executor:
    """The executor named ``kind`` (``"inline"``, ``"process"`` or ``"ray"``).

    Raises:
        ValueError: An unknown kind, or fewer than one worker.
        ImportError: ``"ray"`` without Ray installed.
    """
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if kind == "inline":
        return InlineExecutor()
    if kind == "process":
        return ProcessExecutor(workers)
    if kind == "ray":
        return RayExecutor(workers)
    raise ValueError(f"unknown executor {kind!r} (known: {', '.join(EXECUTOR_KINDS)})")


# ----------------------------------------------------------------------------- delivery


class _Delivery:
    """The outside jobs of one virtual-time loop, handed over in submission order."""

    def __init__(self, loop: Any) -> None:
        self.loop = loop
        self.queue: collections.deque[
            tuple[concurrent.futures.Future[Any], asyncio.Future[Any]]
        ] = collections.deque()

    def add(self, job: concurrent.futures.Future[T]) -> asyncio.Future[T]:
        waiter: asyncio.Future[T] = self.loop.create_future()
        self.queue.append((job, waiter))
        self.loop._outside_pending += 1
        # wake the loop if it is waiting in its selector; the result itself is
        # handed over by deliver_one, at an idle point, in order
        job.add_done_callback(lambda _: self._wake())
        return waiter

    def _wake(self) -> None:
        try:
            self.loop.call_soon_threadsafe(_noop)
        except RuntimeError:  # the loop is closed: nobody waits any more
            pass

    def deliver_one(self) -> bool:
        """Hand the oldest job's result to its waiter if it is done (the loop is idle)."""
        if not self.queue or not self.queue[0][0].done():
            return False
        job, waiter = self.queue.popleft()
        self.loop._outside_pending -= 1
        if waiter.cancelled():
            return True
        error = job.exception()
        if error is not None:
            waiter.set_exception(error)
        else:
            waiter.set_result(job.result())
        return True


def _noop() -> None:
    return None


def deliver(job: concurrent.futures.Future[T]) -> asyncio.Future[T]:
    """Await ``job`` inside the running loop, deterministically in virtual time.

    On a virtual-time loop the result is handed over only when nothing else is
    ready to run, and only after every job submitted before it; virtual time
    stands still meanwhile. On a real-time loop this is
    :func:`asyncio.wrap_future`.
    """
    loop = asyncio.get_running_loop()
    if not hasattr(loop, "outside_hook"):
        return asyncio.wrap_future(job)
    delivery = getattr(loop, "_simkit_delivery", None)
    if delivery is None:
        delivery = _Delivery(loop)
        loop._simkit_delivery = delivery  # type: ignore[attr-defined]
        loop.outside_hook = delivery.deliver_one
    result: asyncio.Future[T] = delivery.add(job)
    return result
