"""A progress bar in a notebook cell while a scenario runs (no widget library needed).

In a Jupyter kernel, :func:`notebook_progress` returns an ``on_round``
callback that shows an HTML progress bar under the running cell and updates
it in place after every round (IPython's display handles: the kernel sends
``update_display_data``, which every front end understands). Elsewhere it
returns ``None`` and nothing is shown. The callback only displays; the
simulation does not see it, so the digests do not change.
"""

from __future__ import annotations

import builtins
import html
import importlib
from collections.abc import Callable
from typing import Any

from simkit.protocol import RoundRecord

__all__ = ["RoundProgress", "notebook_progress"]


def _in_kernel() -> bool:
    """Whether this process is a Jupyter kernel (ipykernel) with IPython running."""
    # IPython puts get_ipython into builtins while it runs a cell: no import
    # of IPython outside a kernel.
    get_ipython = getattr(builtins, "get_ipython", None)
    if get_ipython is None:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


class RoundProgress:
    """Shows ``round k/n`` with the last loss and accuracy; updated in place."""

    def __init__(self, total: int, name: str) -> None:
        shown = _ipython("IPython.display")
        self.total, self.name = total, name
        self._html = shown.HTML
        self._handle: Any = shown.display(self._html(self._render(0, "starting")), display_id=True)

    def _render(self, done: int, status: str) -> str:
        return (
            f'<div class="simkit-progress"><b>{html.escape(self.name)}</b> '
            f'<progress value="{done}" max="{self.total}" style="width: 20em"></progress> '
            f"round {done}/{self.total} &middot; {html.escape(status)}</div>"
        )

    def __call__(self, record: RoundRecord) -> None:
        status = f"loss {_num(record.loss)}, accuracy {_num(record.accuracy)}"
        if record.aborted:
            status = f"round {record.round} aborted: {record.reason}"
        if self._handle is not None:
            self._handle.update(self._html(self._render(record.round, status)))


def _ipython(module: str) -> Any:
    """An IPython module, untyped (IPython is there only in a kernel)."""
    return importlib.import_module(module)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def notebook_progress(total: int, name: str) -> Callable[[RoundRecord], None] | None:
    """An ``on_round`` callback showing progress in a notebook; ``None`` outside one."""
    if not _in_kernel():
        return None
    return RoundProgress(total, name)
