"""The ``simkit`` command line.

Each subcommand is one :class:`Command` in :data:`COMMANDS`: a name, a help
line, a function that adds its arguments to its parser and a handler that
takes the parsed arguments and returns the exit status. To add a subcommand,
write those two functions and append a ``Command``; a command with
subcommands of its own (``simkit trace show``) adds a nested registry the
same way (see :data:`TRACE_COMMANDS`).

Exit status: 0 on success, 1 when a command answers "no" (``trace diff`` on
different traces; ``replay`` when the failure reproduces, as a failing
test), 2 for a usage error or a bad input file, reported as one
line ``simkit: error: ...`` on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys

from simkit._version import __version__
from simkit.cli._base import (
    PROG,
    CLIError,
    Command,
    Handler,
    Parser,
    add_subcommands,
    integer,
    out,
)
from simkit.cli._net import client_args, client_command, serve_args, serve_command
from simkit.cli._replay import replay_args, replay_command
from simkit.cli._run import run_args, run_command
from simkit.cli._scenario import SCENARIO_COMMANDS, scenario_args
from simkit.cli._trace import TRACE_COMMANDS, trace_args
from simkit.compare import compare_args, compare_command
from simkit.trace import TraceFormatError

__all__ = [
    "COMMANDS",
    "SCENARIO_COMMANDS",
    "TRACE_COMMANDS",
    "CLIError",
    "Command",
    "build_parser",
    "main",
]


# ----------------------------------------------------------------------------- commands


def _demo_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=integer, default=7, help="the run's seed (default 7)")
    parser.add_argument("--trace", metavar="FILE", help="write the trace as JSONL")
    parser.add_argument("--mermaid", metavar="FILE", help="write a Mermaid sequence diagram")


def _demo(args: argparse.Namespace) -> int:
    from simkit.demo import print_demo

    for path in (args.trace, args.mermaid):
        if path is not None and not os.path.isdir(os.path.dirname(path) or "."):
            raise CLIError(f"{path}: cannot write: no such directory")
    try:
        print_demo(args.seed, args.trace, args.mermaid)
    except OSError as exc:
        raise CLIError(f"{exc.filename}: cannot write: {exc.strerror or exc}") from None
    return 0


COMMANDS: list[Command] = [
    Command(
        "run", "run a scenario file (progress, table, --json, --report)", run_args, run_command
    ),
    Command(
        "serve",
        "run a scenario's server alone over TCP; wait for clients",
        serve_args,
        serve_command,
    ),
    Command(
        "client",
        "run one client of a scenario, joining a server over TCP",
        client_args,
        client_command,
    ),
    Command(
        "replay",
        "reproduce the failure a replay file records (exit 1 if it does)",
        replay_args,
        replay_command,
    ),
    Command("scenario", "validate scenario files, export their JSON Schema", scenario_args),
    Command("demo", "run the runtime demo: workers, faults, heartbeats", _demo_args, _demo),
    Command("trace", "inspect, compare and draw recorded traces", trace_args),
    Command(
        "compare",
        "compare runs: overlaid curves, a side-by-side table",
        compare_args,
        compare_command,
    ),
]
"""Top-level subcommands, in ``--help`` order; append to add one."""


def build_parser() -> argparse.ArgumentParser:
    """The ``simkit`` argument parser, with every registered subcommand."""
    parser = Parser(
        prog=PROG,
        description="Deterministic virtual-time actor simulation for federated learning.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    add_subcommands(parser, COMMANDS, dest="command")
    return parser


def _parse(argv: list[str] | None) -> argparse.Namespace | int:
    """Parse arguments; an exit status when argparse has already answered."""
    try:
        return build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error (already reported)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)


def main(argv: list[str] | None = None) -> int:
    """Run the ``simkit`` command line.

    Args:
        argv: Arguments without the program name (``sys.argv[1:]`` if ``None``).

    Returns:
        The exit status: 0 success, 1 a negative answer, 2 an error.
    """
    parsed = _parse(argv)
    if isinstance(parsed, int):
        return parsed
    handler: Handler = parsed.handler
    try:
        return handler(parsed)
    except (CLIError, TraceFormatError) as exc:
        out(f"{PROG}: error: {exc}", sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (`simkit trace show t.jsonl | head`): not an error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except MemoryError:
        # A size the estimate before the run did not foresee (a user's model
        # or data): still one line, never a traceback.
        out(f"{PROG}: error: out of memory: the inputs are too large for this machine", sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
