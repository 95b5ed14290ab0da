"""Reports of a run: plots, a timeline, a sequence diagram and an index page.

``simkit run SCENARIO --report DIR`` (or :func:`write_report`) writes:

==================  ===========================================================
``metrics.png``     training loss, evaluation loss and accuracy per round
``timeline.png``    per-client Gantt over virtual time: training, sending,
                    waiting, dropped (derived from the trace, any protocol)
``sequence.mmd``    Mermaid sequence diagram of round 1, heartbeats hidden
``summary.json``    the run's summary (the ``--json`` object)
``trace.jsonl``     the trace (read it with ``simkit trace show``)
``index.html``      all of the above on one page
==================  ===========================================================

matplotlib (the ``simkit[report]`` extra) is imported only here, and only
through its object API (``Figure`` + the Agg canvas): no pyplot, so no
global backend is switched in the caller's process.
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final

from simkit.trace import HEARTBEAT_TYPES, Event, to_mermaid, write_jsonl

if TYPE_CHECKING:
    from simkit.runner import RunResult

__all__ = [
    "REPORT_FILES",
    "ReportError",
    "Span",
    "client_activity",
    "notebook_html",
    "write_report",
]

REPORT_FILES: Final = (
    "metrics.png",
    "timeline.png",
    "sequence.mmd",
    "summary.json",
    "trace.jsonl",
    "index.html",
)
"""The files :func:`write_report` writes."""

MAX_TIMELINE_ROWS: Final = 40
"""Clients drawn in the timeline (the first ones, by name)."""

_COLORS: Final = {
    "waiting": "#d9d9d9",
    "training": "#4c78a8",
    "sending": "#f58518",
    "dropped": "#e45756",
}


class ReportError(RuntimeError):
    """The report cannot be written (matplotlib missing, a trace without events)."""


@dataclass(frozen=True, slots=True)
class Span:
    """One bar of the timeline: ``state`` from ``start`` to ``end`` (virtual seconds)."""

    start: float
    end: float
    state: str


# ----------------------------------------------------------------------------- activity


class _Client:
    """Bookkeeping of one client while scanning the trace."""

    __slots__ = ("crashed_at", "spans", "started_at", "training_since")

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.started_at: float | None = None
        self.training_since: float | None = None
        self.crashed_at: float | None = None


def client_activity(
    events: Iterable[Event], clients: Sequence[str], end: float
) -> dict[str, list[Span]]:
    """What each client was doing over time, from the trace alone.

    A client is *training* from the delivery of a request (any message that
    is not a heartbeat) until it next sends one; *sending* from a send until
    that message is delivered or lost; *dropped* from a crash until its
    restart (or the end); *waiting* the rest of the time it is alive.

    Args:
        events: The trace events, in order.
        clients: The clients' names.
        end: The end of the run (virtual seconds).

    Returns:
        Name -> spans; the ``waiting`` spans come first (background), then
        the others in time order.
    """
    state = {name: _Client() for name in clients}
    in_flight: dict[tuple[str, str, str], list[float]] = {}
    for e in events:
        if e.type in HEARTBEAT_TYPES:
            continue
        if e.src in state:
            _from_client(state[e.src], e, in_flight)
        elif e.kind == "deliver" and e.dst in state:
            client = state[e.dst]
            if client.training_since is None and client.crashed_at is None:
                client.training_since = e.t
    return {name: _close(client, end) for name, client in state.items()}


def _from_client(
    client: _Client, e: Event, in_flight: dict[tuple[str, str, str], list[float]]
) -> None:
    key = (e.src, e.dst, e.digest)
    if e.kind == "actor_start":
        if client.crashed_at is not None:
            client.spans.append(Span(client.crashed_at, e.t, "dropped"))
            client.crashed_at = None
        if client.started_at is None:
            client.started_at = e.t
    elif e.kind == "crash":
        client.crashed_at, client.training_since = e.t, None
    elif e.kind == "send":
        if client.training_since is not None:
            client.spans.append(Span(client.training_since, e.t, "training"))
            client.training_since = None
        in_flight.setdefault(key, []).append(e.t)
    elif e.kind in ("deliver", "lost") and in_flight.get(key):
        client.spans.append(Span(in_flight[key].pop(0), e.t, "sending"))


def _close(client: _Client, end: float) -> list[Span]:
    spans = list(client.spans)
    if client.crashed_at is not None:
        spans.append(Span(client.crashed_at, end, "dropped"))
    background = [] if client.started_at is None else [Span(client.started_at, end, "waiting")]
    return background + sorted(spans, key=lambda s: (s.start, s.end))


# ----------------------------------------------------------------------------- writing


def write_report(result: RunResult, directory: str | os.PathLike[str]) -> Path:
    """Write the report files of ``result`` into ``directory`` (created if needed).

    Returns:
        The path of ``index.html``.

    Raises:
        ReportError: matplotlib is missing, or the trace kept no events.
        OSError: A file cannot be written.
    """
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
    (out / "sequence.mmd").write_text(_sequence(result, events) + "\n", encoding="utf-8")
    _plot_metrics(result, out / "metrics.png")
    _plot_timeline(result, events, out / "timeline.png")
    secagg = result.artifacts.get("secagg")
    if isinstance(secagg, dict):
        _plot_secagg(secagg, out / "secagg.png")
    index = out / "index.html"
    index.write_text(_index_html(result, summary, events), encoding="utf-8")
    return index


def _sequence(result: RunResult, events: Sequence[Event]) -> str:
    if result.rounds:
        first = result.rounds[0]
        return to_mermaid(events, hide_heartbeats=True, t_from=first.t_start, t_to=first.t_end)
    return to_mermaid(events, hide_heartbeats=True)


def _plot_metrics(result: RunResult, path: Path | IO[bytes], dpi: int = 110) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.5), layout="constrained")
    loss_ax, acc_ax = fig.subplots(1, 2)
    rounds = [r.round for r in result.rounds]
    _line(loss_ax, rounds, [r.loss for r in result.rounds], "training loss")
    _line(loss_ax, rounds, [r.eval_loss for r in result.rounds], "evaluation loss")
    _line(acc_ax, rounds, [r.accuracy for r in result.rounds], "accuracy")
    for ax, title in ((loss_ax, "loss"), (acc_ax, "accuracy")):
        ax.set_xlabel("round")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    fig.suptitle(f"{result.scenario} ({result.protocol}, seed {result.seed})")
    fig.savefig(path, dpi=dpi, format="png")


def _line(ax: Any, xs: list[int], ys: list[float | None], label: str) -> None:
    points = [(x, y) for x, y in zip(xs, ys, strict=True) if y is not None]
    if points:
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)


def _plot_timeline(result: RunResult, events: Sequence[Event], path: Path) -> None:
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    shown = result.clients[:MAX_TIMELINE_ROWS]
    activity = client_activity(events, shown, result.virtual_time_s)
    fig = Figure(figsize=(10, 1.2 + 0.28 * len(shown)), layout="constrained")
    ax = fig.subplots()
    for row, name in enumerate(shown):
        for state in ("waiting", "training", "sending", "dropped"):
            bars = [(s.start, s.end - s.start) for s in activity[name] if s.state == state]
            if bars:
                ax.broken_barh(bars, (row - 0.4, 0.8), color=_COLORS[state], linewidth=0)
    for r in result.rounds:
        ax.axvline(r.t_start, color="black", linewidth=0.5, alpha=0.4)
    ax.set_yticks(range(len(shown)), shown, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, max(result.virtual_time_s, 1e-9))
    ax.set_xlabel("virtual time (s); vertical lines: round starts")
    more = len(result.clients) - len(shown)
    ax.set_title("client activity" + (f" (first {len(shown)}; {more} more)" if more else ""))
    ax.legend(
        handles=[Patch(color=c, label=s) for s, c in _COLORS.items()],
        loc="upper center",
        bbox_to_anchor=(0.5, -0.12 if len(shown) > 8 else -0.3),
        ncol=4,
        frameon=False,
    )
    fig.savefig(path, dpi=110)


def _image(array: Any) -> Any:
    """A weight array as an image: (k*k, c) kernels as c tiles of k x k, else 2-D."""
    import numpy as np

    a = np.asarray(array, dtype=np.float64)
    if a.ndim == 1:
        return a[np.newaxis, :]
    if a.ndim == 2:
        side = round(a.shape[0] ** 0.5)
        if side * side == a.shape[0] and a.shape[1] <= 32:
            per_row = -(-a.shape[1] // 2) if a.shape[1] > 5 else a.shape[1]
            canvas = np.full((2 * (side + 1), per_row * (side + 1)), np.nan)
            for j in range(a.shape[1]):
                r, c = divmod(j, per_row)
                y, x = r * (side + 1), c * (side + 1)
                canvas[y : y + side, x : x + side] = a[:, j].reshape(side, side)
            rows = -(-a.shape[1] // per_row)
            return canvas[: rows * (side + 1) - 1, : per_row * (side + 1) - 1]
        return a
    return a.reshape(a.shape[0], -1)


def _plot_secagg(view: dict[str, Any], path: Path) -> None:
    """The teaching view: a client's true update, what the server got, the sum."""
    from matplotlib.figure import Figure

    names = sorted(view["masked"])
    columns = [
        ("true", f"{view['client']}'s update (never sent)"),
        ("masked", f"what the server receives from {view['client']}"),
        ("mean", "what the server unmasks: the mean update"),
    ]
    fig = Figure(figsize=(12, 1.2 + 2.2 * len(names)), layout="constrained")
    axes = fig.subplots(len(names), len(columns), squeeze=False)
    for row, name in enumerate(names):
        for col, (key, title) in enumerate(columns):
            ax = axes[row][col]
            arrays = view.get(key)
            ax.set_xticks([])
            ax.set_yticks([])
            if arrays is None:
                ax.set_title(f"{title}: not recorded", fontsize=9)
                continue
            image = ax.imshow(_image(arrays[name]), cmap="gray" if key == "masked" else "RdBu")
            fig.colorbar(image, ax=ax, shrink=0.8)
            ax.set_title(f"{title}\n{name}" if row == 0 else name, fontsize=9)
    fig.suptitle(
        f"secure aggregation, round {view['round']}: masked inputs are uniform integers "
        f"modulo 2^{view['bits']} (shown scaled to [0, 1))"
    )
    fig.savefig(path, dpi=110)


def _bytes_by_type(events: Sequence[Event]) -> str:
    """Rows of messages and bytes sent, per message type (heartbeats included)."""
    count: dict[str, int] = {}
    size: dict[str, int] = {}
    for e in events:
        if e.kind == "send":
            count[e.type] = count.get(e.type, 0) + 1
            size[e.type] = size.get(e.type, 0) + e.nbytes
    total = sum(size.values()) or 1
    order = sorted(size, key=lambda t: (-size[t], t))
    return "\n".join(
        f"<tr><th>{html.escape(t)}</th><td>{count[t]}</td><td>{size[t]:,}</td>"
        f"<td>{100 * size[t] / total:.1f} %</td></tr>"
        for t in order
    )


def _index_html(result: RunResult, summary: dict[str, Any], events: Sequence[Event]) -> str:
    esc = html.escape
    rows = "\n".join(
        f"<tr><td>{r.round}</td><td>{len(r.sampled)}</td><td>{len(r.replied)}</td>"
        f"<td>{len(r.failed)}</td><td>{_fmt(r.loss)}</td><td>{_fmt(r.accuracy)}</td>"
        f"<td>{r.t_end:.2f}</td><td>{esc(r.reason)}</td></tr>"
        for r in result.rounds
    )
    facts = "\n".join(
        f"<tr><th>{esc(key)}</th><td>{esc(_fact(value))}</td></tr>"
        for key, value in summary.items()
        if key != "metrics"
    )
    diagram = esc(_sequence(result, events))
    secagg = ""
    if isinstance(result.artifacts.get("secagg"), dict):
        secagg = _SECAGG_SECTION
    return _PAGE.format(
        title=esc(f"{result.scenario} — simkit report"),
        heading=esc(result.scenario),
        facts=facts,
        rows=rows,
        diagram=diagram,
        secagg=secagg,
        bytes=_bytes_by_type(events),
    )


def notebook_html(result: RunResult) -> str:
    """``RunResult._repr_html_``: key facts, the round table and the metric plots inline."""
    import base64
    import io

    summary = result.summary()
    keys = ("protocol", "seed", "clients", "rounds_completed", "dropped", "virtual_time_s")
    facts = " · ".join(f"{k} <b>{html.escape(_fact(summary[k]))}</b>" for k in keys)
    digests = f"trace {summary['trace_digest'][:16]}…, weights {summary['weights_digest'][:16]}…"
    plot = ""
    if result.rounds:
        try:
            buffer = io.BytesIO()
            _plot_metrics(result, buffer, dpi=80)
        except ImportError:  # no matplotlib: the table alone
            pass
        else:
            data = base64.b64encode(buffer.getvalue()).decode("ascii")
            plot = f'<img src="data:image/png;base64,{data}" alt="loss and accuracy per round">'
    return (
        f"<div><b>{html.escape(result.scenario)}</b>: {facts}<br><small>{digests}</small>"
        f"{_rounds_table(result)}{plot}</div>"
    )


def _rounds_table(result: RunResult) -> str:
    head = "".join(f"<th>{h}</th>" for h in _ROUND_COLUMNS)
    return f"<table><tr>{head}</tr>{_round_rows(result)}</table>"


_ROUND_COLUMNS: Final = (
    "round",
    "sampled",
    "replied",
    "dropped",
    "loss",
    "accuracy",
    "end (s)",
    "note",
)


def _round_rows(result: RunResult) -> str:
    return "\n".join(
        f"<tr><td>{r.round}</td><td>{len(r.sampled)}</td><td>{len(r.replied)}</td>"
        f"<td>{len(r.failed)}</td><td>{_fmt(r.loss)}</td><td>{_fmt(r.accuracy)}</td>"
        f"<td>{r.t_end:.2f}</td><td>{html.escape(r.reason)}</td></tr>"
        for r in result.rounds
    )


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _fact(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "none"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


_SECAGG_SECTION: Final = """<h2>What the server sees under secure aggregation</h2>
<p>Left: one client's true update in the first secure round (the simulator
sees it; it never leaves the client). Middle: what the server receives from
that client, its masked input, indistinguishable from uniform noise. Right:
the mean update the server unmasks from the sum of all survivors' inputs.
The bytes table below shows what the key agreement and secret sharing stages
(SecAgg*) cost next to the model traffic.</p>
<img src="secagg.png" alt="a client's update, its masked input, the unmasked mean">
"""

_PAGE: Final = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }}
th, td {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }}
th {{ background: #f4f4f4; text-align: left; }}
img {{ max-width: 100%; border: 1px solid #eee; }}
pre.mermaid {{ background: #fafafa; padding: 1em; overflow-x: auto; }}
</style>
</head>
<body>
<h1>{heading}</h1>
<p>Files: <a href="summary.json">summary.json</a> · <a href="trace.jsonl">trace.jsonl</a>
(<code>simkit trace show trace.jsonl</code>) · <a href="sequence.mmd">sequence.mmd</a></p>
<h2>Summary</h2>
<table>
{facts}
</table>
<h2>Rounds</h2>
<table>
<tr><th>round</th><th>sampled</th><th>replied</th><th>dropped</th><th>loss</th>
<th>accuracy</th><th>end (s)</th><th>note</th></tr>
{rows}
</table>
<h2>Metrics</h2>
<img src="metrics.png" alt="loss and accuracy per round">
<h2>Timeline</h2>
<img src="timeline.png" alt="per-client activity over virtual time">
{secagg}<h2>Bytes by message type</h2>
<table>
<tr><th>type</th><th>messages</th><th>bytes</th><th>share</th></tr>
{bytes}
</table>
<h2>Round 1, message by message</h2>
<pre class="mermaid">
{diagram}
</pre>
<script type="module">
import mermaid from "https://cdn.jsdelivr.net/npm/mermaid@10/dist/mermaid.esm.min.mjs";
mermaid.initialize({{ startOnLoad: true, sequence: {{ useMaxWidth: false }} }});
</script>
</body>
</html>
"""
