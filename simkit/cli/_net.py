"""``simkit serve`` and ``simkit client``: one scenario across processes and machines.

``simkit serve SCENARIO --port P`` runs the scenario's server actor alone, in
real time, and waits for its clients; ``simkit client SCENARIO --name c03
--server HOST:P`` runs one client, which builds the scenario from the same
file, seed and overrides and keeps its own data shard. The server prints the
same per-round table and ``--json`` summary as ``simkit run``.

The shared token comes from ``--token`` or the ``SIMKIT_TOKEN`` environment
variable (which, unlike a command line, other users cannot read in ``ps``).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from typing import IO, Any

from simkit.cli._base import CLIError
from simkit.cli._run import (
    check_outputs,
    live_rounds,
    load,
    output_args,
    run_live,
    scenario_file_args,
    verbose_arg,
)

__all__ = ["client_args", "client_command", "serve_args", "serve_command"]

TOKEN_ENV = "SIMKIT_TOKEN"


def _out(text: str, stream: IO[str] | None = None) -> None:
    stream = stream or sys.stdout
    stream.write(text + "\n")
    stream.flush()


def _port(value: str) -> int:
    if not value.isdigit() or int(value) > 65535:
        raise argparse.ArgumentTypeError(f"expected a port number 0-65535, got {value!r}")
    return int(value)


def _address(value: str) -> str:
    from simkit.channels.tcp import parse_address  # keeps `simkit --help` fast

    if parse_address(value) is None:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT (or [IPv6]:PORT), got {value!r}")
    return value


def _token_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--token",
        default=os.environ.get(TOKEN_ENV, ""),
        metavar="T",
        help=f"shared secret every client's Join carries (default: ${TOKEN_ENV})",
    )


# ----------------------------------------------------------------------------- serve


def serve_args(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``simkit serve``."""
    scenario_file_args(parser)
    parser.add_argument(
        "--port", type=_port, required=True, metavar="P", help="TCP port (0: any free one)"
    )
    parser.add_argument(
        "--host", default="127.0.0.1", metavar="H", help="interface (0.0.0.0: all; default lo)"
    )
    _token_arg(parser)
    output_args(parser)


def serve_command(args: argparse.Namespace) -> int:
    """Serve a scenario; 0 on success, 1 if the server failed, 2 for bad input."""
    from simkit.runner import serve_scenario
    from simkit.scenario import client_names

    check_outputs(args)
    scenario = load(args)
    _check_bind(args.host, args.port)
    names = client_names(scenario.config.clients.count)
    console, live = live_rounds(args, scenario)

    def listening(address: str) -> None:
        _out(
            f"simkit serve: {scenario.name} listening on {address}, "
            f"waiting for {len(names)} clients ({names[0]} to {names[-1]})",
            sys.stderr,
        )

    return run_live(
        args,
        console,
        live,
        lambda: serve_scenario(
            args.scenario,
            seed=args.seed,
            overrides=args.overrides,
            host=args.host,
            port=args.port,
            token=args.token,
            on_listening=listening,
            trace_file=args.trace,
            checkpoint=args.checkpoint,
            resume=args.resume,
            on_round=live.on_round if live is not None else None,
            faults=args.faults,
        ),
    )


def _check_bind(host: str, port: int) -> None:
    """Fail early, as a usage error, when the address cannot be listened on."""
    try:
        socket.create_server((host, port)).close()
    except OSError as exc:
        raise CLIError(f"cannot listen at {host}:{port}: {exc.strerror or exc}") from None


# ----------------------------------------------------------------------------- client


def client_args(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``simkit client``."""
    scenario_file_args(parser)
    parser.add_argument("--name", required=True, metavar="NAME", help="this client (c000 ...)")
    parser.add_argument(
        "--server", type=_address, required=True, metavar="HOST:P", help="the server's address"
    )
    _token_arg(parser)
    parser.add_argument("--json", action="store_true", help="print the summary as JSON last")
    parser.add_argument("--trace", metavar="FILE", help="write the client's trace as JSON lines")
    parser.add_argument("--quiet", action="store_true", help="no summary line")
    verbose_arg(parser)


def client_command(args: argparse.Namespace) -> int:
    """Run one client; 0 on success, 1 if it never joined or failed, 2 for bad input."""
    from simkit.runner import RunError, run_client
    from simkit.scenario import ScenarioError

    check_outputs(args)
    load(args)  # a bad file or override is reported before any connection
    try:
        result = run_client(
            args.scenario,
            args.name,
            args.server,
            seed=args.seed,
            overrides=args.overrides,
            token=args.token,
            trace_file=args.trace,
        )
    except ScenarioError as exc:
        raise CLIError(str(exc)) from None
    except RunError as exc:
        _out(f"simkit: error: {exc}", sys.stderr)
        return 1
    summary = result.summary()
    if not args.quiet:
        _out(_client_line(summary), sys.stderr if args.json else sys.stdout)
    problem = result.problem()
    if problem is not None:
        _out(f"simkit: error: {problem}", sys.stderr)
    if args.verbose:
        for actor, text in result.tracebacks:
            _out(f"--- actor {actor}:\n{text}", sys.stderr)
    if args.json:
        _out(json.dumps(summary, separators=(",", ":")))
    return 0 if problem is None else 1


def _client_line(summary: dict[str, Any]) -> str:
    from simkit.trace import format_bytes

    received, sent = summary["bytes_received"], summary["bytes_sent"]
    return (
        f"{summary['client']}: {'joined' if summary['joined'] else 'did not join'} "
        f"{summary['server']}; received {summary['messages_received']} messages "
        f"({format_bytes(received)}), sent {summary['messages_sent']} "
        f"({format_bytes(sent)}) in {summary['wall_time_s']:.2f} s"
    )
