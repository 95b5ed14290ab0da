"""The ``simkit`` command line.

Each subcommand is one :class:`Command` in :data:`COMMANDS`: a name, a help
line, a function that adds its arguments to its parser and a handler that
takes the parsed arguments and returns the exit status. To add a subcommand,
write those two functions and append a ``Command``; a command with
subcommands of its own (``simkit trace show``) adds a nested registry the
same way (see :data:`TRACE_COMMANDS`).

Exit status: 0 on success, 1 when a command answers "no" (``trace diff`` on
different traces), 2 for a usage error or a bad input file, reported as one
line ``simkit: error: ...`` on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO, NoReturn

from simkit._cli_net import client_args, client_command, serve_args, serve_command
from simkit._cli_run import (
    integer,
    run_args,
    run_command,
    scenario_check,
    scenario_check_args,
    scenario_schema,
    scenario_schema_args,
)
from simkit._version import __version__
from simkit.compare import compare_args, compare_command
from simkit.trace import (
    Event,
    TraceFormatError,
    events_digest,
    filter_events,
    format_divergence,
    read_jsonl,
    timeline_text,
    to_mermaid,
)

__all__ = [
    "COMMANDS",
    "SCENARIO_COMMANDS",
    "TRACE_COMMANDS",
    "CLIError",
    "Command",
    "build_parser",
    "main",
]

PROG = "simkit"

Handler = Callable[[argparse.Namespace], int]


class CLIError(Exception):
    """A user-facing error: reported as ``simkit: error: <message>``, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line, like every other error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{PROG}: error: {message} (see '{self.prog} --help')\n")


@dataclass(frozen=True)
class Command:
    """One subcommand.

    Attributes:
        name: The subcommand's name on the command line.
        help: One line shown in ``simkit --help``.
        add_arguments: Adds the subcommand's arguments to its parser.
        handler: Runs the subcommand; returns the exit status. Left ``None``
            for a group whose ``add_arguments`` adds subcommands with handlers.
    """

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    handler: Handler | None = None


# ----------------------------------------------------------------------------- helpers


def _out(text: str, stream: IO[str] | None = None) -> None:
    """Write ``text`` and a newline (the CLI's print; T20 bans ``print``)."""
    (stream or sys.stdout).write(text + "\n")


def _csv(value: str) -> list[str]:
    """Parse a comma-separated option value (``a,b``) into names."""
    names = [part.strip() for part in value.split(",") if part.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {value!r}")
    return names


def _number(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {value!r}") from None
    if not math.isfinite(number):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {value!r}")
    return number


def _non_negative_int(value: str) -> int:
    number = integer(value)
    if number < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value!r}")
    return number


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}") from None
    if number <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return number


def _load_trace(path: str) -> list[Event]:
    """Read a JSONL trace, turning I/O errors into :class:`CLIError`."""
    try:
        return read_jsonl(path)
    except FileNotFoundError:
        raise CLIError(f"{path}: no such trace file") from None
    except IsADirectoryError:
        raise CLIError(f"{path}: is a directory, not a trace file") from None
    except UnicodeDecodeError as exc:
        raise CLIError(f"{path}: not a text trace file ({exc.reason})") from None
    except OSError as exc:
        raise CLIError(f"{path}: cannot read trace file: {exc.strerror or exc}") from None


def _add_trace_file(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="trace file (JSON lines)")


def _add_heartbeats(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--heartbeats", action="store_true", help="include heartbeat (Ping/Pong) events"
    )


def _add_window(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--actors", type=_csv, metavar="A,B", help="only events involving these")
    parser.add_argument("--from", dest="t_from", type=_number, metavar="T", help="start time (s)")
    parser.add_argument("--to", dest="t_to", type=_number, metavar="T", help="end time (s)")


# ----------------------------------------------------------------------------- trace


def _trace_show_args(parser: argparse.ArgumentParser) -> None:
    _add_trace_file(parser)
    _add_heartbeats(parser)
    parser.add_argument("--kinds", type=_csv, metavar="K1,K2", help="only these event kinds")
    _add_window(parser)
    parser.add_argument("--width", type=_positive_int, default=100, help="maximum line length")


def _trace_show(args: argparse.Namespace) -> int:
    events = filter_events(
        _load_trace(args.file),
        kinds=args.kinds,
        actors=args.actors,
        hide_heartbeats=False,
        t_from=args.t_from,
        t_to=args.t_to,
    )
    text = timeline_text(events, hide_heartbeats=not args.heartbeats, width=args.width)
    if sys.stdout.isatty():
        _print_styled_timeline(text)
    else:
        _out(text)
    return 0


_TIMELINE_STYLES = {"!!": "bold red", "++": "green", "--": "cyan"}


def _print_styled_timeline(text: str) -> None:
    """Print a timeline on a terminal, faults in red, recoveries green, marks cyan."""
    from rich.console import Console  # imported lazily: keeps `simkit --help` fast
    from rich.text import Text

    console = Console(highlight=False, soft_wrap=True)
    for line in text.splitlines():
        marker = line.split("s  ", 1)[1][:2] if "s  " in line else ""
        console.print(Text(line, style=_TIMELINE_STYLES.get(marker, "")))


def _trace_diff_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("a", metavar="A", help="first trace file")
    parser.add_argument("b", metavar="B", help="second trace file")
    parser.add_argument(
        "--context",
        type=_non_negative_int,
        default=3,
        metavar="N",
        help="common events shown before the split",
    )


def _trace_diff(args: argparse.Namespace) -> int:
    a, b = _load_trace(args.a), _load_trace(args.b)
    if a == b:
        _out(f"traces are identical ({len(a)} events, digest {events_digest(a)})")
        return 0
    _out(format_divergence(a, b, context=args.context, names=(args.a, args.b)))
    return 1


def _trace_mermaid_args(parser: argparse.ArgumentParser) -> None:
    _add_trace_file(parser)
    parser.add_argument("-o", "--output", metavar="OUT", help="write to OUT instead of stdout")
    _add_heartbeats(parser)
    parser.add_argument(
        "--max-events", type=_positive_int, default=400, metavar="N", help="draw at most N events"
    )
    _add_window(parser)


def _trace_mermaid(args: argparse.Namespace) -> int:
    text = to_mermaid(
        _load_trace(args.file),
        hide_heartbeats=not args.heartbeats,
        actors=args.actors,
        max_events=args.max_events,
        t_from=args.t_from,
        t_to=args.t_to,
    )
    if args.output is None:
        _out(text)
        return 0
    try:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    except OSError as exc:
        raise CLIError(f"{args.output}: cannot write: {exc.strerror or exc}") from None
    return 0


def _trace_digest(args: argparse.Namespace) -> int:
    _out(events_digest(_load_trace(args.file)))
    return 0


TRACE_COMMANDS: list[Command] = [
    Command("show", "print a text timeline", _trace_show_args, _trace_show),
    Command("diff", "find where two traces diverge (exit 1)", _trace_diff_args, _trace_diff),
    Command("mermaid", "render a Mermaid sequence diagram", _trace_mermaid_args, _trace_mermaid),
    Command("digest", "print the digest of a trace", _add_trace_file, _trace_digest),
]
"""Subcommands of ``simkit trace``."""


def _trace_args(parser: argparse.ArgumentParser) -> None:
    _add_subcommands(parser, TRACE_COMMANDS, dest="trace_command")


# ----------------------------------------------------------------------------- parser


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


SCENARIO_COMMANDS: list[Command] = [
    Command(
        "schema", "print the JSON Schema of scenario files", scenario_schema_args, scenario_schema
    ),
    Command("check", "validate scenario files", scenario_check_args, scenario_check),
]
"""Subcommands of ``simkit scenario``."""


def _scenario_args(parser: argparse.ArgumentParser) -> None:
    _add_subcommands(parser, SCENARIO_COMMANDS, dest="scenario_command")


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
    Command("scenario", "validate scenario files, export their JSON Schema", _scenario_args),
    Command("demo", "run the runtime demo: workers, faults, heartbeats", _demo_args, _demo),
    Command("trace", "inspect, compare and draw recorded traces", _trace_args),
    Command(
        "compare",
        "compare runs: overlaid curves, a side-by-side table",
        compare_args,
        compare_command,
    ),
]
"""Top-level subcommands, in ``--help`` order; append to add one."""


def _add_subcommands(
    parser: argparse.ArgumentParser, commands: Sequence[Command], *, dest: str
) -> None:
    subparsers = parser.add_subparsers(dest=dest, metavar="COMMAND", required=True)
    for command in commands:
        sub = subparsers.add_parser(command.name, help=command.help, description=command.help)
        command.add_arguments(sub)
        if command.handler is not None:
            sub.set_defaults(handler=command.handler)


def build_parser() -> argparse.ArgumentParser:
    """The ``simkit`` argument parser, with every registered subcommand."""
    parser = _Parser(
        prog=PROG,
        description="Deterministic virtual-time actor simulation for federated learning.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    _add_subcommands(parser, COMMANDS, dest="command")
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
        _out(f"{PROG}: error: {exc}", sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (`simkit trace show t.jsonl | head`): not an error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except MemoryError:
        # A size the estimate before the run did not foresee (a user's model
        # or data): still one line, never a traceback.
        _out(f"{PROG}: error: out of memory: the inputs are too large for this machine", sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
