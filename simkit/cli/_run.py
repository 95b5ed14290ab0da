"""``simkit run``, and the display ``simkit serve`` shares with it.

The scenario layer (pydantic, the training core) and rich load only when a
command runs, so that ``simkit --help`` stays fast. Human output (progress
bar, per-round table) goes to stdout, or to stderr with ``--json`` so that
stdout holds only the JSON line.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any

from simkit.cli._base import CLIError, integer, out

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

    from simkit.protocol import RoundRecord
    from simkit.runner import RunResult
    from simkit.scenario import Scenario

__all__ = [
    "check_outputs",
    "finish",
    "footer",
    "live_rounds",
    "load",
    "output_args",
    "report_errors",
    "round_bytes",
    "round_table",
    "run_args",
    "run_command",
    "scenario_file_args",
    "verbose_arg",
]


# ----------------------------------------------------------------------------- run


def scenario_file_args(parser: argparse.ArgumentParser) -> None:
    """The scenario file, ``--seed`` and ``--set`` (``run``, ``serve``, ``client``)."""
    parser.add_argument("scenario", metavar="SCENARIO", help="scenario file (TOML)")
    parser.add_argument("--seed", type=integer, help="the run's seed (overrides the file's)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a key, e.g. --set clients.count=20 (repeatable)",
    )


def output_args(parser: argparse.ArgumentParser) -> None:
    """What a run leaves behind (``run``, ``serve``)."""
    parser.add_argument("--json", action="store_true", help="print the summary as JSON last")
    parser.add_argument("--report", metavar="DIR", help="write plots, diagram and index.html")
    parser.add_argument("--trace", metavar="FILE", help="write the trace as JSON lines")
    parser.add_argument("--save-weights", metavar="FILE.npz", help="write the final weights")
    parser.add_argument("--checkpoint", metavar="DIR", help="save the protocol state every round")
    parser.add_argument("--resume", metavar="DIR", help="continue from a checkpoint directory")
    parser.add_argument("--faults", metavar="FILE.toml", help="add the faults of a fault file")
    parser.add_argument("--quiet", action="store_true", help="no progress bar and no table")
    verbose_arg(parser)


def verbose_arg(parser: argparse.ArgumentParser) -> None:
    """``--verbose``: full tracebacks of actors that raised (``run``, ``serve``, ``client``)."""
    parser.add_argument(
        "--verbose", action="store_true", help="print the full traceback of each actor that raised"
    )


def run_args(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``simkit run``."""
    scenario_file_args(parser)
    output_args(parser)
    parser.add_argument(
        "--transport",
        choices=("memory", "tcp"),
        default="memory",
        help="memory: virtual time (default); tcp: real time over loopback sockets",
    )
    parser.add_argument(
        "--processes",
        action="store_true",
        help="with --transport tcp: every client in its own process",
    )


def run_command(args: argparse.Namespace) -> int:
    """Run a scenario; 0 on success, 1 if the protocol's server failed, 2 for bad input."""
    from simkit.runner import run_scenario

    if args.processes and args.transport != "tcp":
        raise CLIError("--processes needs --transport tcp")
    check_outputs(args)
    scenario = load(args)
    console, live = live_rounds(args, scenario)
    # Client processes read the file themselves, with the same seed and overrides.
    target = args.scenario if args.processes else scenario
    return run_live(
        args,
        console,
        live,
        lambda: run_scenario(
            target,
            seed=args.seed if args.processes else None,
            overrides=args.overrides if args.processes else None,
            trace_file=args.trace,
            checkpoint=args.checkpoint,
            resume=args.resume,
            on_round=live.on_round if live is not None else None,
            faults=args.faults,
            transport=args.transport,
            processes=args.processes,
        ),
    )


def run_live(
    args: argparse.Namespace,
    console: Console,
    live: _LiveRounds | None,
    call: Callable[[], RunResult],
) -> int:
    """``call()`` with the live display on; bad input exits 2, a failed run 1.

    Shared by ``simkit run`` and ``simkit serve``.
    """
    from simkit.runner import RunError
    from simkit.scenario import ScenarioError

    try:
        result = call()
    except ScenarioError as exc:
        raise CLIError(str(exc)) from None
    except RunError as exc:
        out(f"simkit: error: {exc}", sys.stderr)
        return 1
    finally:
        if live is not None:
            live.stop()
    return finish(args, result, console)


def check_outputs(args: argparse.Namespace) -> None:
    """Refuse output paths that cannot be written before the run, not after it."""
    for option in ("trace", "save_weights", "report"):
        path = getattr(args, option, None)
        if path is None:
            continue
        flag = "--" + option.replace("_", "-")
        if option == "report":  # made with its parents
            if os.path.exists(path) and not os.path.isdir(path):
                raise CLIError(f"--report {path}: exists and is not a directory")
            continue
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            raise CLIError(f"{flag} {path}: no such directory {parent!r}")
        if os.path.isdir(path):
            raise CLIError(f"{flag} {path}: is a directory")


def load(args: argparse.Namespace) -> Scenario:
    """The scenario of ``args`` (file, ``--seed``, ``--set``); a bad one is a CLI error."""
    from simkit.runner import with_seed
    from simkit.scenario import ScenarioError, load_scenario

    try:
        overrides = with_seed(args.overrides, args.seed) if args.seed is not None else None
        return load_scenario(args.scenario, overrides or args.overrides)
    except ScenarioError as exc:
        raise CLIError(str(exc)) from None


def live_rounds(args: argparse.Namespace, scenario: Scenario) -> tuple[Console, _LiveRounds | None]:
    """The console of human output and, unless ``--quiet``, a progress bar."""
    console = _console(sys.stderr if args.json else sys.stdout)
    live = None if args.quiet else _LiveRounds(console, scenario.config.rounds, scenario.name)
    return console, live


def finish(args: argparse.Namespace, result: RunResult, console: Console) -> int:
    if not args.quiet:
        console.print(round_table(result))
        console.print(footer(result), highlight=False, soft_wrap=True)
    report_errors(args, result.errors, result.tracebacks)
    if args.save_weights:
        try:
            result.save_weights(args.save_weights)
        except OSError as exc:
            raise CLIError(f"{args.save_weights}: cannot write: {exc.strerror or exc}") from None
    if args.report:
        from simkit.report import ReportError, write_report

        try:
            write_report(result, args.report)
        except ReportError as exc:
            raise CLIError(str(exc)) from None
        except OSError as exc:
            raise CLIError(f"{args.report}: cannot write report: {exc}") from None
        if not args.quiet:
            console.print(f"report written to {args.report}/index.html", highlight=False)
    if args.json:
        out(result.to_json())
    clients = set(result.clients)
    return 1 if any(actor not in clients for actor, _ in result.errors) else 0


def report_errors(
    args: argparse.Namespace, errors: list[tuple[str, str]], tracebacks: list[tuple[str, str]]
) -> None:
    """One line per actor that raised (where it raised); ``--verbose``: the tracebacks."""
    for actor, text in errors:
        out(f"simkit: warning: actor {actor} raised: {text}", sys.stderr)
    if getattr(args, "verbose", False):
        for actor, text in tracebacks:
            out(f"--- actor {actor}:\n{text}", sys.stderr)


def _console(stream: IO[str]) -> Console:
    from rich.console import Console

    return Console(file=stream, highlight=False)


class _LiveRounds:
    """A progress bar over rounds, shown while the simulation runs (terminals only)."""

    def __init__(self, console: Console, total: int, name: str) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self.progress: Progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            console=console,
            transient=True,
            disable=not console.is_terminal,
        )
        self.task: TaskID = self.progress.add_task(name, total=total, status="")
        self.progress.start()

    def on_round(self, record: RoundRecord) -> None:
        status = f"loss {_num(record.loss)}  acc {_num(record.accuracy)}"
        if record.aborted:
            status = f"round {record.round} aborted: {record.reason}"
        self.progress.update(self.task, completed=record.round, status=status)

    def stop(self) -> None:
        self.progress.stop()


def _num(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def round_bytes(result: RunResult) -> list[int]:
    """Bytes sent for each round: from its start (0 for the first) to the next one's."""
    if not result.rounds:  # a run that failed before its first round
        return []
    if not result.trace.keep:
        return [0] * len(result.rounds)
    sends = [(e.t, e.nbytes) for e in result.trace.events if e.kind == "send"]
    ends = [r.t_start for r in result.rounds[1:]] + [float("inf")]
    out, i = [], 0
    for end in ends:
        total = 0
        while i < len(sends) and sends[i][0] < end:
            total += sends[i][1]
            i += 1
        out.append(total)
    return out


def round_table(result: RunResult) -> Any:
    """A rich table: round, sampled, replied, dropped, loss, accuracy, bytes, virtual time."""
    from rich import box
    from rich.table import Table

    from simkit._outcomes import drop_events, dropped_in_round
    from simkit.report import algorithm
    from simkit.trace import format_bytes

    # Light rules, no edge padding: the table fits 80 columns (stdout not a terminal)
    # without wrapping or cutting a cell.
    table = Table(
        title=f"{result.scenario} ({algorithm(result)}, seed {result.seed})",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        collapse_padding=True,
    )
    late = any(r.late for r in result.rounds)  # FedBuff: stale replies discarded
    columns = ["round", "sampled", "replied", "dropped", *(["late"] if late else [])]
    privacy = getattr(result, "privacy", None)  # DP: epsilon spent after each round
    eps = privacy["epsilon"] if privacy else None
    for column in [*columns, "loss", "accuracy", *(["epsilon"] if eps else []), "bytes", "time"]:
        table.add_column(column, justify="right", no_wrap=True)
    # dropped: failed to answer, or crashed or seen gone during the round (SecAgg stages too)
    drops = drop_events(result.trace.events) if result.trace.keep else []
    for i, (r, nbytes) in enumerate(zip(result.rounds, round_bytes(result), strict=True)):
        style = "red" if r.aborted else None
        table.add_row(
            str(r.round),
            str(len(r.sampled)),
            str(len(r.replied)),
            str(len(dropped_in_round(r, drops))),
            *([str(r.late)] if late else []),
            _num(r.loss),
            _num(r.accuracy),
            *([_num(eps[i], 2)] if eps else []),
            format_bytes(nbytes),
            f"{r.t_end:.2f} s",
            style=style,
        )
    table.caption = _abort_reasons(result.rounds)
    table.caption_justify = "left"
    return table


def _abort_reasons(rounds: list[RoundRecord], most: int = 5) -> str | None:
    """Why rounds aborted, one line each (the first ``most``), under the table."""
    lines = [
        f"round {r.round} aborted: {r.reason or 'no reason given'}" for r in rounds if r.aborted
    ]
    if len(lines) > most:
        lines[most:] = [f"... and {len(lines) - most} more aborted rounds"]
    return "\n".join(lines) or None


def footer(result: RunResult) -> str:
    """Lines after the table: faults that never fired, totals and digests."""
    from simkit.trace import format_bytes

    summary = result.summary()
    causes = summary.get("dropped_by_cause") or {}
    dropped = "; ".join(
        f"{cause.replace('_', ' ')} {' '.join(names)}" for cause, names in causes.items() if names
    ) or (" ".join(summary["dropped"]) or "none")
    unfired = ""
    if result.unfired_faults:
        from simkit.faults import describe_fault

        unfired = "faults that never fired: " + "; ".join(
            describe_fault(f) for f in result.unfired_faults
        )
        unfired += "\n"
    return unfired + (
        f"{summary['rounds_completed']}/{len(result.rounds)} rounds completed, "
        f"{summary['clients']} clients, dropped: {dropped}\n"
        f"{summary['messages']} messages ({format_bytes(summary['bytes'])}), "
        f"{_times(result)}\n"
        f"trace digest   {summary['trace_digest']}\n"
        f"weights digest {summary['weights_digest']}"
    )


def _times(result: RunResult) -> str:
    if result.transport == "tcp":
        return f"{result.virtual_time_s:.2f} s real time over TCP"
    return f"{result.virtual_time_s:.2f} s virtual in {result.wall_time_s:.2f} s wall"
