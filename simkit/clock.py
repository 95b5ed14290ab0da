"""Time as the runtime keeps it, for the layers below the runtime.

A bottom-layer module (it imports nothing from simkit): transports and
channels learn from a :class:`Clock` whether the run is in virtual time and
what time it is, without importing the runtime above them.
:class:`~simkit.runtime.VirtualEventLoop` is a :class:`VirtualTime` loop;
any other running loop is real time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Literal

__all__ = ["Clock", "VirtualTime"]


class VirtualTime:
    """Marks an event loop whose clock is virtual (see :mod:`simkit.runtime`)."""

    __slots__ = ()


class Clock:
    """The time of a running event loop, and whether it is virtual.

    Args:
        loop: The event loop whose clock this is.
    """

    __slots__ = ("loop", "mode")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.mode: Literal["virtual", "real"] = (
            "virtual" if isinstance(loop, VirtualTime) else "real"
        )

    @classmethod
    def running(cls) -> Clock:
        """The clock of the running event loop.

        Raises:
            RuntimeError: No event loop is running.
        """
        return cls(asyncio.get_running_loop())

    @property
    def virtual(self) -> bool:
        """Whether time is virtual (no real I/O allowed, no wall clock)."""
        return self.mode == "virtual"

    def now(self) -> float:
        """The loop's time in seconds."""
        return self.loop.time()

    def call_at(self, when: float, callback: Callable[[], object]) -> asyncio.TimerHandle:
        """Call ``callback`` at loop time ``when``."""
        return self.loop.call_at(when, callback)

    def __repr__(self) -> str:
        return f"<Clock {self.mode} t={self.now():g}>"
