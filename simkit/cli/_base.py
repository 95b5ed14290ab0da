"""What every ``simkit`` subcommand shares: the error type, the parser, option types.

Imported by every command module and by :mod:`simkit.cli` itself, so the
command modules never import the package that lists them (no import circle).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO, NoReturn

from simkit._cli_error import CLIError

__all__ = [
    "PROG",
    "CLIError",
    "Command",
    "Handler",
    "Parser",
    "add_subcommands",
    "csv",
    "integer",
    "non_negative_int",
    "number",
    "out",
    "positive_int",
]

PROG = "simkit"

Handler = Callable[[argparse.Namespace], int]


class Parser(argparse.ArgumentParser):
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


# ----------------------------------------------------------------------------- option types


def out(text: str, stream: IO[str] | None = None) -> None:
    """Write ``text`` and a newline (the CLI's print; T20 bans ``print``)."""
    (stream or sys.stdout).write(text + "\n")


def csv(value: str) -> list[str]:
    """Parse a comma-separated option value (``a,b``) into names."""
    names = [part.strip() for part in value.split(",") if part.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {value!r}")
    return names


def number(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {value!r}") from None
    if not math.isfinite(number):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {value!r}")
    return number


def non_negative_int(value: str) -> int:
    number = integer(value)
    if number < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value!r}")
    return number


def positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}") from None
    if number <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return number


def integer(value: str) -> int:
    """An option's integer value (``--seed``): ``expected an integer, got 'abc'``."""
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {value!r}") from None


def add_subcommands(
    parser: argparse.ArgumentParser, commands: Sequence[Command], *, dest: str
) -> None:
    subparsers = parser.add_subparsers(dest=dest, metavar="COMMAND", required=True)
    for command in commands:
        sub = subparsers.add_parser(command.name, help=command.help, description=command.help)
        command.add_arguments(sub)
        if command.handler is not None:
            sub.set_defaults(handler=command.handler)
