"""``simkit scenario``: validate scenario files, export their JSON Schema."""

from __future__ import annotations

import argparse
import json

from simkit.cli._base import CLIError, Command, add_subcommands, out

__all__ = [
    "SCENARIO_COMMANDS",
    "scenario_args",
    "scenario_check",
    "scenario_check_args",
    "scenario_schema",
    "scenario_schema_args",
]


def scenario_schema_args(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``simkit scenario schema``."""
    parser.add_argument("-o", "--output", metavar="OUT", help="write to OUT instead of stdout")


def scenario_schema(args: argparse.Namespace) -> int:
    """Print (or write) the JSON Schema of scenario files."""
    from simkit.scenario import scenario_json_schema

    text = json.dumps(scenario_json_schema(), indent=2)
    if args.output is None:
        out(text)
        return 0
    try:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    except OSError as exc:
        raise CLIError(f"{args.output}: cannot write: {exc.strerror or exc}") from None
    return 0


def scenario_check_args(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``simkit scenario check``."""
    parser.add_argument("files", nargs="+", metavar="SCENARIO", help="scenario files")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="K=V")


def scenario_check(args: argparse.Namespace) -> int:
    """Validate scenario files and, when the protocol is installed, build them.

    Building (data, model, clients, faults, the protocol's actors) without
    running catches what ``simkit run`` would refuse before its first round:
    a missing data file, more clients than samples, a ``[secagg]`` table the
    protocol cannot use.
    """
    from simkit.protocol import UnknownProtocol, find_protocol
    from simkit.runner import check_scenario
    from simkit.scenario import ScenarioError, load_scenario

    for path in args.files:
        try:
            scenario = load_scenario(path, args.overrides)
            cfg = scenario.config
            try:
                if ":" not in cfg.protocol.name:
                    find_protocol(cfg.protocol.name)
            except (UnknownProtocol, ImportError):
                checked = f"protocol {cfg.protocol.name!r} not installed: its table is unchecked"
            else:
                check_scenario(scenario)
                checked = "protocol checked, scenario built"
        except (ScenarioError, ValueError) as exc:
            raise CLIError(str(exc)) from None
        out(f"{path}: ok ({cfg.clients.count} clients, {cfg.rounds} rounds; {checked})")
    return 0


SCENARIO_COMMANDS: list[Command] = [
    Command(
        "schema", "print the JSON Schema of scenario files", scenario_schema_args, scenario_schema
    ),
    Command("check", "validate scenario files", scenario_check_args, scenario_check),
]
"""Subcommands of ``simkit scenario``."""


def scenario_args(parser: argparse.ArgumentParser) -> None:
    """Adds the ``simkit scenario`` subcommands."""
    add_subcommands(parser, SCENARIO_COMMANDS, dest="scenario_command")
