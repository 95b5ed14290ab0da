"""``simkit replay FILE``: reproduce the failure a replay file records.

Exit status as a test's: 1 when the failure reproduces (the replayed run
fails again), 0 when it does not, 2 for a file that is not a usable replay
file (one line on stderr).
"""

from __future__ import annotations

import argparse

from simkit.cli._base import CLIError, out

__all__ = ["replay_args", "replay_command"]


def replay_args(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``simkit replay``."""
    parser.add_argument("file", metavar="FILE", help="a replay file a failing example wrote")


def replay_command(args: argparse.Namespace) -> int:
    """Run the replay file, re-check it, print one result line."""
    from simkit.testing._record import ReplayFileError
    from simkit.testing._reproduce import reproduce

    try:
        outcome = reproduce(args.file)
    except ReplayFileError as exc:
        raise CLIError(str(exc)) from None
    out(outcome.line)
    return 1 if outcome.failed else 0
