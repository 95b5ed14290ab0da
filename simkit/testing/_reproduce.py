"""Reproduce the failure a replay file records (``simkit replay FILE``).

The file's scenario is run again with every recorded value and fault; what
the kit checked is checked again: the determinism re-check (two runs
compared event by event) when it was on, then the recorded property
(``replay.check``, a ``package.module:function`` taking the ``RunResult``).
The outcome is one line: ``reproduced: <the failure>``, ``failed
differently: ...`` or ``did not reproduce: ...``.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from simkit.testing._record import ReplayFileError, ReplayRecord, parse_record

if TYPE_CHECKING:
    from simkit.runner import RunResult

__all__ = ["ReplayOutcome", "reproduce"]


@dataclass(frozen=True, slots=True)
class ReplayOutcome:
    """What replaying a file gave.

    Attributes:
        failed: The replayed run failed again (its check, the determinism
            re-check, or the run itself).
        line: One line saying so: ``reproduced: ...``, ``failed
            differently: ...`` or ``did not reproduce: ...``.
        record: The record the file holds.
    """

    failed: bool
    line: str
    record: ReplayRecord


def reproduce(path: str | os.PathLike[str]) -> ReplayOutcome:
    """Run a replay file and re-check what failed.

    Raises:
        ReplayFileError: The file cannot be read, holds no replay record, an
            invalid scenario, or a check that cannot be imported.
    """
    source = os.fspath(path)
    record = parse_record(_read(source), source)
    check = _load_check(record.check, source) if record.check else None
    try:
        failure, result = _failure(source, record, check)
    except ReplayFileError:
        raise
    except ValueError as exc:  # ScenarioError: the scenario is not valid
        raise ReplayFileError(str(exc).splitlines()[0]) from None
    return ReplayOutcome(failure is not None, _line(record, failure, result), record)


def _read(source: str) -> str:
    try:
        return Path(source).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ReplayFileError(f"{source}: no such replay file") from None
    except IsADirectoryError:
        raise ReplayFileError(f"{source}: is a directory, not a replay file") from None
    except UnicodeDecodeError as exc:
        raise ReplayFileError(f"{source}: not a text file ({exc.reason})") from None
    except OSError as exc:
        raise ReplayFileError(f"{source}: cannot read: {exc.strerror or exc}") from None


def _load_check(name: str, source: str) -> Callable[[Any], object]:
    """Import ``module:function`` (the current directory on the path, as ``python -m``)."""
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    module_name, _, attr = name.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            target = getattr(target, part)
    except Exception as exc:  # an import error, or whatever the module raises on import
        raise ReplayFileError(f"{source}: replay.check: cannot load {name!r}: {exc}") from None
    if not callable(target):
        raise ReplayFileError(f"{source}: replay.check: {name!r} is not a function")
    return target  # type: ignore[no-any-return]


def _failure(
    source: str, record: ReplayRecord, check: Callable[[Any], object] | None
) -> tuple[str | None, RunResult | None]:
    """Run (twice if determinism was checked) and check; the failure's line, if any."""
    from simkit.runner import run_scenario
    from simkit.scenario import ScenarioError
    from simkit.testing._run import compare_runs, failure_line

    result: RunResult | None = None
    try:
        result = run_scenario(source)
        if record.check_determinism:
            compare_runs(result, run_scenario(source))
        if check is not None:
            check(result)
    except ScenarioError:
        raise
    except Exception as exc:
        return failure_line(exc), result
    return None, result


def _line(record: ReplayRecord, failure: str | None, result: RunResult | None) -> str:
    same = _same_run(record, result)
    if failure is not None:
        if record.failure is None or _kind(failure) == _kind(record.failure):
            return f"reproduced: {failure}{same}"
        return f"failed differently: {failure} (recorded: {record.failure}){same}"
    if record.check is None and not record.check_determinism:
        return _unchecked(record, result)
    checked = " and ".join(
        ([f"{record.check} passed"] if record.check else [])
        + (["two runs agreed"] if record.check_determinism else [])
    )
    recorded = f"; recorded: {record.failure}" if record.failure else ""
    return f"did not reproduce: {checked}{same}{recorded}"


def _unchecked(record: ReplayRecord, result: RunResult | None) -> str:
    """No check to re-run: the run identical to the failing one is the reproduction."""
    digest = result.trace.digest() if result is not None else None
    if digest is not None and digest == record.trace_digest:
        return (
            f"reproduced: the failing run, bit for bit (trace {digest[:16]}); its check is "
            "not recorded (pass check= to run_scenario_example to re-check it)"
        )
    recorded = (record.trace_digest or "none")[:16]
    return f"did not reproduce: trace {(digest or 'none')[:16]}, the failing run's {recorded}"


def _same_run(record: ReplayRecord, result: RunResult | None) -> str:
    if result is None or record.trace_digest is None:
        return ""
    digest = result.trace.digest()
    if digest == record.trace_digest:
        return f" (the failing run, same trace {digest[:16]})"
    return f" (trace {digest[:16]}, the failing run's {record.trace_digest[:16]})"


def _kind(failure: str) -> str:
    return failure.partition(":")[0]
