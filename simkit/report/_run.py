"""What the report reads of a finished run: the shape, not the runner's class.

:class:`simkit.runner.RunResult` has this shape; the report depends on it
structurally, so the runner can render its notebook view with the report
(``RunResult._repr_html_``) without an import circle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from simkit.protocol import RoundRecord, ScenarioSetup
    from simkit.trace import Trace

__all__ = ["Run"]


class Run(Protocol):
    """A finished run, as the report reads it (see :class:`simkit.runner.RunResult`)."""

    @property
    def scenario(self) -> str: ...

    @property
    def protocol(self) -> str: ...

    @property
    def seed(self) -> int: ...

    @property
    def setup(self) -> ScenarioSetup: ...

    @property
    def rounds(self) -> list[RoundRecord]: ...

    @property
    def trace(self) -> Trace: ...

    @property
    def virtual_time_s(self) -> float: ...

    @property
    def artifacts(self) -> dict[str, Any]: ...

    @property
    def server(self) -> str | None: ...

    @property
    def clients(self) -> list[str]: ...

    def summary(self) -> dict[str, Any]: ...
