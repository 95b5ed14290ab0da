"""How an actor's exception is told: one line with where it was raised, or in full.

The line names the innermost frame of the user's or simkit's own code (not
numpy's, torch's or the standard library's) by module and line, never by
absolute path, so a trace that records it is the same on every machine::

    ValueError: boom (at protocols.fedavg._server:123 in _aggregate)
"""

from __future__ import annotations

import os
import sysconfig
import traceback
from types import FrameType, TracebackType

__all__ = ["error_line", "error_traceback"]

_STDLIB = os.path.normcase(os.path.realpath(sysconfig.get_path("stdlib")))
_PACKAGE_DIRS = frozenset({"site-packages", "dist-packages"})


def error_line(exc: BaseException) -> str:
    """``Type: message (at module:line in function)``; no location when none is known."""
    text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    frame = _blamed_frame(exc.__traceback__)
    if frame is None:
        return text
    where, line = frame
    module = where.f_globals.get("__name__", "?")
    return f"{text} (at {module}:{line} in {where.f_code.co_name})"


def error_traceback(exc: BaseException) -> str:
    """The full traceback, as Python prints it (for ``--verbose``)."""
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip()


def _blamed_frame(tb: TracebackType | None) -> tuple[FrameType, int] | None:
    """The innermost frame outside installed libraries (else the innermost)."""
    blamed: tuple[FrameType, int] | None = None
    innermost: tuple[FrameType, int] | None = None
    while tb is not None:
        innermost = (tb.tb_frame, tb.tb_lineno)
        if not _in_library(tb.tb_frame.f_code.co_filename):
            blamed = innermost
        tb = tb.tb_next
    return blamed or innermost


def _in_library(filename: str) -> bool:
    """Installed packages (numpy, torch, anyio) and the standard library."""
    if filename.startswith("<"):  # <frozen importlib._bootstrap> ...
        return True
    path = os.path.normcase(os.path.realpath(filename))
    return path.startswith(_STDLIB) or not _PACKAGE_DIRS.isdisjoint(path.split(os.sep))
