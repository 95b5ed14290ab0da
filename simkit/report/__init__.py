"""Reports of a run: plots, a timeline, sequence diagrams and an index page.

``simkit run SCENARIO --report DIR`` (or :func:`write_report`) writes:

==================  ===========================================================
``metrics.png``     loss and accuracy per round (FedBuff: staleness, late)
``timeline.png``    per-client Gantt over virtual time: idle, training, SecAgg
                    stage work, sending, waiting, dropped; crash and
                    declared-gone marks; SecAgg stages and aborted rounds shaded
``labels.png``      label counts per client (when labels are integers)
``secagg.png``      under SecAgg: a true update, its masked input, the mean
``sequence.svg``    round 1, server and a few chosen clients (compact; serverless
                    protocols: a few chosen peers)
``sequence.mmd``    the same diagram as Mermaid source
``summary.json``    the run's summary (the ``--json`` object)
``trace.jsonl``     the trace (read it with ``simkit trace show``)
``index.html``      all of the above on one page, one round's diagram at a time
==================  ===========================================================

The page is self-contained: images next to it, diagrams inline as SVG drawn
in Python (no JavaScript library, no request leaves the machine). matplotlib
(the ``simkit[report]`` extra) is imported only here, through its object API
(``Figure`` + the Agg canvas): no pyplot, no global backend switched.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Final

from simkit.report._activity import MARKS, STATES, Span, client_activity, reply_staleness
from simkit.report._plots import MAX_TIMELINE_ROWS, algorithm
from simkit.trace import write_jsonl

if TYPE_CHECKING:
    from simkit.report._run import Run

__all__ = [
    "MARKS",
    "MAX_TIMELINE_ROWS",
    "REPORT_FILES",
    "STATES",
    "ReportError",
    "Span",
    "algorithm",
    "client_activity",
    "notebook_html",
    "reply_staleness",
    "write_report",
]

REPORT_FILES: Final = (
    "metrics.png",
    "timeline.png",
    "sequence.svg",
    "sequence.mmd",
    "summary.json",
    "trace.jsonl",
    "index.html",
)
"""The files :func:`write_report` always writes (``labels.png``, ``secagg.png`` when they apply)."""


class ReportError(RuntimeError):
    """The report cannot be written (matplotlib missing, a trace without events)."""


def write_report(result: Run, directory: str | os.PathLike[str]) -> Path:
    """Write the report files of ``result`` into ``directory`` (created if needed).

    Returns:
        The path of ``index.html``.

    Raises:
        ReportError: matplotlib is missing, or the trace kept no events.
        OSError: A file cannot be written.
    """
    from simkit.report import _plots
    from simkit.report._html import index_html

    if not result.trace.keep:
        raise ReportError("the trace kept no events (Trace(keep=False)): nothing to draw")
    try:
        from matplotlib.figure import Figure  # noqa: F401 (checked before writing anything)
    except ImportError:
        raise ReportError("reports need matplotlib: pip install 'simkit[report]'") from None
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    events = result.trace.events
    summary = result.summary()
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    write_jsonl(events, out / "trace.jsonl")
    _write_sequence(result, out)
    _plots.plot_metrics(result, out / "metrics.png")
    _plots.plot_timeline(result, events, out / "timeline.png")
    files = list(REPORT_FILES)
    if _plots.plot_labels(result, out / "labels.png"):
        files.append("labels.png")
    secagg = result.artifacts.get("secagg")
    if isinstance(secagg, dict):
        _plots.plot_secagg(secagg, out / "secagg.png")
        files.append("secagg.png")
    title = f"{result.scenario} ({algorithm(result)}, seed {result.seed})"
    page = index_html(result, summary, events, title=title, files=files)
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    return index


def _write_sequence(result: Run, out: Path) -> None:
    from simkit._outcomes import drop_events
    from simkit.report._sequence import Diagram, run_diagram, to_mermaid_text, to_svg

    events = result.trace.events
    if result.rounds:
        diagram = run_diagram(events, result.rounds[0], drop_events(events), result.server)
    else:
        lanes = [result.server] if result.server else result.clients[:1]
        diagram = Diagram("no rounds", lanes)
    (out / "sequence.svg").write_text(to_svg(diagram) + "\n", encoding="utf-8")
    (out / "sequence.mmd").write_text(to_mermaid_text(diagram) + "\n", encoding="utf-8")


def notebook_html(result: Run) -> str:
    """``RunResult._repr_html_``: a headline, the round table and the metric plots inline."""
    import base64
    import io

    from simkit.report._html import _headline, rounds_table

    events = result.trace.events if result.trace.keep else []
    summary = result.summary()
    title = f"{result.scenario} ({algorithm(result)}, seed {result.seed})"
    digests = f"trace {summary['trace_digest'][:16]}…, weights {summary['weights_digest'][:16]}…"
    plot = ""
    if result.rounds:
        try:
            from simkit.report._plots import plot_metrics

            buffer = io.BytesIO()
            plot_metrics(result, buffer, dpi=80)
        except ImportError:  # no matplotlib: the table alone
            pass
        else:
            data = base64.b64encode(buffer.getvalue()).decode("ascii")
            plot = f'<img src="data:image/png;base64,{data}" alt="loss and accuracy per round">'
    return (
        f"<div><p>{_headline(result, summary, title)}<br><small>{digests}</small></p>"
        f'<div style="max-height: 18em; overflow-y: auto">'
        f"{rounds_table(result, events)}</div>{plot}</div>"
    )
