"""The CLI's user-facing error, below every command module.

:mod:`simkit.cli` re-exports it; a command that lives outside the CLI package
(``simkit compare`` in :mod:`simkit.compare`) raises it without importing the
package that lists the commands (no import circle).
"""

from __future__ import annotations

__all__ = ["CLIError"]


class CLIError(Exception):
    """A user-facing error: reported as ``simkit: error: <message>``, exit status 2."""
