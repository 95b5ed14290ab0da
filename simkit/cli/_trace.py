"""``simkit trace``: show, diff, draw and digest recorded traces."""

from __future__ import annotations

import argparse
import sys

from simkit.cli._base import (
    CLIError,
    Command,
    add_subcommands,
    csv,
    non_negative_int,
    number,
    out,
    positive_int,
)
from simkit.trace import (
    Event,
    events_digest,
    filter_events,
    format_divergence,
    read_jsonl,
    timeline_text,
    to_mermaid,
)

__all__ = ["TRACE_COMMANDS", "trace_args"]


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
    parser.add_argument("--actors", type=csv, metavar="A,B", help="only events involving these")
    parser.add_argument("--from", dest="t_from", type=number, metavar="T", help="start time (s)")
    parser.add_argument("--to", dest="t_to", type=number, metavar="T", help="end time (s)")


def _trace_show_args(parser: argparse.ArgumentParser) -> None:
    _add_trace_file(parser)
    _add_heartbeats(parser)
    parser.add_argument("--kinds", type=csv, metavar="K1,K2", help="only these event kinds")
    _add_window(parser)
    parser.add_argument("--width", type=positive_int, default=100, help="maximum line length")


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
        out(text)
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
        type=non_negative_int,
        default=3,
        metavar="N",
        help="common events shown before the split",
    )


def _trace_diff(args: argparse.Namespace) -> int:
    a, b = _load_trace(args.a), _load_trace(args.b)
    if a == b:
        out(f"traces are identical ({len(a)} events, digest {events_digest(a)})")
        return 0
    out(format_divergence(a, b, context=args.context, names=(args.a, args.b)))
    return 1


def _trace_mermaid_args(parser: argparse.ArgumentParser) -> None:
    _add_trace_file(parser)
    parser.add_argument("-o", "--output", metavar="OUT", help="write to OUT instead of stdout")
    _add_heartbeats(parser)
    parser.add_argument(
        "--max-events", type=positive_int, default=400, metavar="N", help="draw at most N events"
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
        out(text)
        return 0
    try:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    except OSError as exc:
        raise CLIError(f"{args.output}: cannot write: {exc.strerror or exc}") from None
    return 0


def _trace_digest(args: argparse.Namespace) -> int:
    out(events_digest(_load_trace(args.file)))
    return 0


TRACE_COMMANDS: list[Command] = [
    Command("show", "print a text timeline", _trace_show_args, _trace_show),
    Command("diff", "find where two traces diverge (exit 1)", _trace_diff_args, _trace_diff),
    Command("mermaid", "render a Mermaid sequence diagram", _trace_mermaid_args, _trace_mermaid),
    Command("digest", "print the digest of a trace", _add_trace_file, _trace_digest),
]
"""Subcommands of ``simkit trace``."""


def trace_args(parser: argparse.ArgumentParser) -> None:
    add_subcommands(parser, TRACE_COMMANDS, dest="trace_command")
