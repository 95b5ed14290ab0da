"""Blocking runs from a thread that already runs an event loop (Jupyter), and awaitable runs.

A notebook cell executes inside ipykernel's asyncio loop, so a blocking
entry point that starts its own loop (``anyio.run``) fails there with
"Already running asyncio in this thread". :func:`call_blocking` sees the
running loop and runs the call in a fresh worker thread instead, waiting for
it: the simulation's virtual loop then lives alone in that thread, exactly as
it would in a script, so the digests are the same. :func:`call_in_thread` is
the awaitable form (behind ``await simkit.arun_scenario(...)``, ``await sim.arun()``):
the caller's loop keeps running while the simulation computes.

Nothing here reads the wall clock or touches randomness.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

__all__ = ["call_blocking", "call_in_thread", "loop_running"]

T = TypeVar("T")
P = ParamSpec("P")


def loop_running() -> bool:
    """Whether an asyncio event loop runs in the calling thread (a notebook cell)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def call_blocking(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """``fn(*args, **kwargs)``, in a worker thread if this thread already runs a loop.

    The caller blocks until the call returns (as it would without a loop);
    its exception, if any, is raised here. The worker runs in a copy of the
    caller's context variables. Interrupting the caller (a notebook's stop
    button) stops the wait, not the run: the worker finishes on its own.
    """
    if not loop_running():
        return fn(*args, **kwargs)
    box: list[Any] = []
    context = contextvars.copy_context()

    def target() -> None:
        try:
            box.append((True, context.run(fn, *args, **kwargs)))
        except BaseException as exc:  # handed to the caller, re-raised there
            box.append((False, exc))

    worker = threading.Thread(target=target, name=f"simkit:{_name(fn)}", daemon=True)
    worker.start()
    worker.join()
    ok, value = box[0]
    if not ok:
        raise value
    result: T = value
    return result


async def call_in_thread(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """Await ``fn(*args, **kwargs)`` run in a worker thread; this loop keeps running.

    Cancelling the awaiting task does not stop the call: the run goes on in
    its thread and its result is dropped.
    """
    import anyio.to_thread

    return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))


def _name(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", None) or type(fn).__name__
