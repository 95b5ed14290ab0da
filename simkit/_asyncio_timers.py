"""The one adapter between simkit's virtual loop and asyncio's private timer heap.

asyncio has no public API for what a virtual clock needs: to order timers
due at the same instant first-in first-out (its heap compares the time only,
so equal times fire in heap order), and to see when the next timer falls due
(to move the clock there instead of sleeping). Everything that touches
asyncio internals for that is here, and only here:

- :class:`SeqTimerHandle`: a ``TimerHandle`` ordered by ``(when, seq)``;
- :func:`push`: put a handle on the loop's heap (``_scheduled``) as
  ``BaseEventLoop.call_at`` does (``_check_closed``, ``_scheduled = True``);
- :func:`next_due`: the time of the earliest timer on the heap;
- :func:`fine_resolution`: let timers due within a nanosecond fire together.

``tests/test_runtime.py`` checks that these internals still exist and behave
(FIFO among equal times, the clock jumping to the next timer), so a Python
upgrade that changes them fails there, loudly, rather than in a run.
"""

from __future__ import annotations

import asyncio
import contextvars
import heapq
from collections.abc import Callable
from typing import Any

__all__ = ["SeqTimerHandle", "fine_resolution", "next_due", "push"]


class SeqTimerHandle(asyncio.TimerHandle):
    """A timer ordered by (time, sequence), so equal-time timers fire FIFO."""

    __slots__ = ("_seq",)

    def __init__(
        self,
        when: float,
        seq: int,
        callback: Callable[..., object],
        args: tuple[Any, ...],
        loop: asyncio.AbstractEventLoop,
        context: contextvars.Context | None,
    ) -> None:
        super().__init__(when, callback, args, loop, context)
        self._seq = seq

    # The heap holds only these handles (every timer goes through call_at), so the
    # comparisons skip type checks: they run ~log2(n) times per timer.
    def __lt__(self, other: SeqTimerHandle) -> bool:  # type: ignore[override]
        mine, theirs = self._when, other._when  # type: ignore[attr-defined]
        return bool(mine < theirs or (mine == theirs and self._seq < other._seq))

    def __le__(self, other: SeqTimerHandle) -> bool:  # type: ignore[override]
        return not other < self

    def __gt__(self, other: SeqTimerHandle) -> bool:  # type: ignore[override]
        return other < self

    def __ge__(self, other: SeqTimerHandle) -> bool:  # type: ignore[override]
        return not self < other

    __hash__ = asyncio.TimerHandle.__hash__


def push(loop: asyncio.AbstractEventLoop, timer: SeqTimerHandle) -> None:
    """Schedule ``timer`` on ``loop`` (what ``BaseEventLoop.call_at`` does with its own)."""
    loop._check_closed()  # type: ignore[attr-defined]
    heapq.heappush(loop._scheduled, timer)  # type: ignore[attr-defined]
    timer._scheduled = True  # type: ignore[attr-defined]


def next_due(loop: asyncio.AbstractEventLoop) -> float | None:
    """When the earliest scheduled timer of ``loop`` falls due (``None``: no timer)."""
    scheduled: list[asyncio.TimerHandle] = loop._scheduled  # type: ignore[attr-defined]
    return scheduled[0].when() if scheduled else None


def fine_resolution(loop: asyncio.AbstractEventLoop) -> None:
    """Timers due within 1 ns of the clock fire now (the default is the OS clock's)."""
    loop._clock_resolution = 1e-9  # type: ignore[attr-defined]
