"""The report's pages: ``index.html`` (self-contained: no external request), notebook view."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from simkit._outcomes import drop_events, dropped_in_round
from simkit.report._sequence import run_diagram, to_svg
from simkit.trace import Event

if TYPE_CHECKING:
    from simkit.report._run import Run

__all__ = ["MAX_DIAGRAMS", "diagram_rounds", "index_html", "rounds_table", "sequence_section"]

MAX_DIAGRAMS: Final = 12
"""Rounds with a sequence diagram in the page: the first ones, every aborted one, the last."""

esc = html.escape


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _fact(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "none"
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_fact(v)}" for k, v in value.items())
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def rounds_table(result: Run, events: Sequence[Event]) -> str:
    """The per-round table: who dropped in the round (crashes under SecAgg too), late, reason."""
    late = any(r.late for r in result.rounds)
    drops = drop_events(events)
    head = ["round", "sampled", "replied", "dropped", *(["late"] if late else [])]
    privacy = getattr(result, "privacy", None)  # DP: epsilon spent after each round
    eps = privacy["epsilon"] if privacy else None
    head += ["loss", "accuracy", *(["epsilon"] if eps else []), "end (s)", "note"]
    rows = []
    for i, r in enumerate(result.rounds):
        gone = dropped_in_round(r, drops)
        cells = [str(r.round), str(len(r.sampled)), str(len(r.replied))]
        cells.append(f'<span title="{esc(" ".join(gone))}">{len(gone)}</span>')
        cells += [str(r.late)] if late else []
        cells += [_fmt(r.loss), _fmt(r.accuracy), *([_fmt(eps[i])] if eps else [])]
        cells += [f"{r.t_end:.2f}", esc(r.reason)]
        style = ' class="aborted"' if r.aborted else ""
        rows.append(f"<tr{style}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    header = "".join(f"<th>{h}</th>" for h in head)
    return f'<table class="rounds">\n<tr>{header}</tr>\n' + "\n".join(rows) + "\n</table>"


def diagram_rounds(result: Run) -> list[int]:
    """Indices of the rounds drawn: the first ones, the aborted ones and the last."""
    n = len(result.rounds)
    picked = [i for i, r in enumerate(result.rounds) if r.aborted][: MAX_DIAGRAMS // 2]
    picked.append(n - 1)
    picked += range(min(n, MAX_DIAGRAMS))
    return sorted(set(picked))[:MAX_DIAGRAMS] if n else []


def sequence_section(result: Run, events: Sequence[Event]) -> str:
    """Inline SVG diagrams, one round shown at a time (a selector, a few lines of script)."""
    if not result.rounds:
        return "<p>No rounds: no diagram.</p>"
    drops = drop_events(events)
    options, figures = [], []
    for n, i in enumerate(diagram_rounds(result)):
        record = result.rounds[i]
        diagram = run_diagram(events, record, drops, result.server)
        note = " (aborted)" if record.aborted else ""
        options.append(f'<option value="{n}">round {record.round}{note}</option>')
        hidden = "" if n == 0 else " hidden"
        svg = to_svg(diagram, f"seq{n}", standalone=False)
        figures.append(
            f'<figure class="seq" data-index="{n}"{hidden}>{svg}'
            f"<figcaption>{esc(diagram.caption)}</figcaption></figure>"
        )
    who = _SERVER_WHO if result.server else _PEERS_WHO
    return _SEQUENCE.format(who=who, options="\n".join(options), figures="\n".join(figures))


_SERVER_WHO: Final = """server and a few chosen clients: one that dropped, one that
missed the deadline, ones that replied"""
_PEERS_WHO: Final = """a few chosen peers: one that dropped or was skipped, and the
peers it exchanged most messages with"""
_SEQUENCE: Final = """<p><label>Round: <select id="round-select">
{options}
</select></label> ({who}; full trace: <code>simkit trace show trace.jsonl</code>).
A message is drawn when it is delivered; a red dashed line ending in &#215;: lost; a dashed
arrow: still in flight when the round ended; blue boxes: protocol marks (rounds, SecAgg
stages); red boxes: faults (crashes, a peer declared gone).</p>
<div class="seq-box">
{figures}
</div>
<script>
document.getElementById("round-select").addEventListener("change", function (ev) {{
  for (const f of document.querySelectorAll("figure.seq")) {{
    f.hidden = f.dataset.index !== ev.target.value;
  }}
}});
</script>"""


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
        f"<tr><th>{esc(t)}</th><td>{count[t]}</td><td>{size[t]:,}</td>"
        f"<td>{100 * size[t] / total:.1f} %</td></tr>"
        for t in order
    )


def _headline(result: Run, summary: dict[str, Any], title: str) -> str:
    cause = summary.get("dropped_by_cause") or {}
    split = ", ".join(f"{len(v)} {k.replace('_', ' ')}" for k, v in cause.items() if v)
    late = sum(r.late for r in result.rounds)
    return (
        f"{esc(title)}: {len(result.clients)} clients, "
        f"{summary['rounds_completed']}/{len(result.rounds)} rounds completed, "
        f"{len(summary['dropped'])} dropped{f' ({split})' if split else ''}"
        f"{f', {late} late replies discarded' if late else ''}, "
        f"{result.virtual_time_s:.2f} s of virtual time."
    )


def index_html(
    result: Run,
    summary: dict[str, Any],
    events: Sequence[Event],
    *,
    title: str,
    files: Sequence[str],
) -> str:
    """The whole page: plots first, then the diagram, then the tables (scrollable)."""
    facts = "\n".join(
        f"<tr><th>{esc(key)}</th><td>{esc(_fact(value))}</td></tr>"
        for key, value in summary.items()
        if key != "metrics"
    )
    secagg = _SECAGG_SECTION if "secagg.png" in files else ""
    labels = _LABELS_SECTION if "labels.png" in files else ""
    return _PAGE.format(
        title=esc(f"{result.scenario} — simkit report"),
        heading=esc(result.scenario),
        headline=_headline(result, summary, title),
        facts=facts,
        rounds=rounds_table(result, events),
        sequence=sequence_section(result, events),
        secagg=secagg,
        labels=labels,
        bytes=_bytes_by_type(events),
    )


_SECAGG_SECTION: Final = """<h2>What the server sees under secure aggregation</h2>
<p>Left: one client's true update in the first secure round (the simulator
sees it; it never leaves the client). Middle: what the server receives from
that client, its masked input, indistinguishable from uniform noise. Right:
the mean update the server unmasks from the sum of all survivors' inputs.
The timeline shades the SecAgg stages; the bytes table below shows what key
agreement and secret sharing (SecAgg*) cost next to the model traffic.</p>
<img src="secagg.png" alt="a client's update, its masked input, the unmasked mean">
"""

_LABELS_SECTION: Final = """<h2>Data: labels per client</h2>
<p>How many training samples of each label every client holds: the skew
(non-IID data) federated averaging has to cope with.</p>
<img src="labels.png" alt="stacked label counts per client">
"""

_PAGE: Final = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }}
th, td {{ border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: right; }}
th {{ background: #f4f4f4; text-align: left; position: sticky; top: 0; }}
tr.aborted td {{ background: #fde8e8; }}
img {{ max-width: 100%; border: 1px solid #eee; }}
.scroll {{ max-height: 22em; overflow-y: auto; display: inline-block; }}
.seq-box {{ overflow-x: auto; }}
figcaption {{ color: #555; font-size: 0.85em; }}
</style>
</head>
<body>
<h1>{heading}</h1>
<p>{headline}</p>
<p>Files: <a href="summary.json">summary.json</a> · <a href="trace.jsonl">trace.jsonl</a>
(<code>simkit trace show trace.jsonl</code>) · <a href="sequence.mmd">sequence.mmd</a>
· <a href="sequence.svg">sequence.svg</a></p>
<h2>Metrics</h2>
<img src="metrics.png" alt="loss and accuracy per round">
<h2>Timeline</h2>
<img src="timeline.png" alt="per-client activity over virtual time">
<h2>Message by message</h2>
{sequence}
{secagg}{labels}<h2>Rounds</h2>
<div class="scroll">
{rounds}
</div>
<h2>Bytes by message type</h2>
<div class="scroll">
<table>
<tr><th>type</th><th>messages</th><th>bytes</th><th>share</th></tr>
{bytes}
</table>
</div>
<details><summary>Summary (the <code>--json</code> object)</summary>
<table>
{facts}
</table>
</details>
</body>
</html>
"""
