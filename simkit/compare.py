"""``simkit compare RUN...``: several runs side by side, curves overlaid.

A RUN is either a JSON summary (``summary.json`` of a report, or the output
of ``simkit run --json``: its last line is read) or a scenario file, with
overrides attached by ``@``::

    simkit compare scenarios/stragglers.toml \\
        scenarios/stragglers.toml@optimizer.client.prox_mu=0 \\
        scenarios/stragglers.toml@optimizer.client.prox_mu=0@training.timeout=1000

Scenario runs are simulated here (same seed for all unless ``--seed``;
``--set`` applies to every one of them). :func:`write_comparison` writes
into a directory ``compare.png`` (loss and accuracy per round, one colour
per run, aborted rounds crossed), ``compare.html`` (the figure and a table
with one column per run) and ``compare.json`` (the labelled summaries).
The module imports nothing heavy until a comparison runs, so ``simkit
--help`` stays fast.
"""

from __future__ import annotations

import argparse
import html
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

__all__ = [
    "CompareError",
    "Compared",
    "compare_args",
    "compare_command",
    "load_run",
    "table_html",
    "table_rows",
    "write_comparison",
]

SEPARATOR: Final = "@"
"""Separates a scenario file from its overrides in a RUN argument."""


class CompareError(ValueError):
    """A RUN argument that is neither a readable summary nor a scenario file."""


@dataclass(slots=True)
class Compared:
    """One run to compare: its label, JSON summary and per-round curves.

    ``global_loss`` (the global model's evaluation loss) is known only for
    runs simulated here; a JSON summary carries the clients' training loss.
    """

    label: str
    summary: dict[str, Any]
    algorithm: str = ""
    global_loss: list[float | None] = field(default_factory=list)
    aborted: list[int] = field(default_factory=list)

    @property
    def rounds(self) -> list[int]:
        return [int(m["round"]) for m in self.summary.get("metrics", [])]

    def curve(self, key: str) -> list[float | None]:
        return [m.get(key) for m in self.summary.get("metrics", [])]


def _label(path: Path, overrides: Sequence[str]) -> str:
    short = [f"{o.partition('=')[0].rsplit('.', 1)[-1]}={o.partition('=')[2]}" for o in overrides]
    return " ".join([path.stem, *short])


def _read_summary(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CompareError(f"{path}: cannot read: {exc.strerror or exc}") from None
    for candidate in (text, text.strip().splitlines()[-1] if text.strip() else ""):
        try:
            found = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(found, dict) and isinstance(found.get("metrics"), list):
            return found
    raise CompareError(f"{path}: not a simkit run summary (no JSON object with 'metrics')")


def load_run(
    spec: str, *, seed: int | None = None, common: Sequence[str] = (), label: str | None = None
) -> Compared:
    """One RUN argument: a JSON summary, or a scenario file (``FILE@KEY=VALUE@...``) run now.

    Raises:
        CompareError: Neither a summary nor a scenario file.
        ScenarioError: A bad scenario or override.
        RunError: The simulation failed.
    """
    path_text, *overrides = spec.split(SEPARATOR)
    path = Path(path_text)
    if path.suffix == ".toml":
        return _simulate(path, [*common, *overrides], seed, label or _label(path, overrides))
    if overrides:
        raise CompareError(f"{spec}: overrides ('{SEPARATOR}KEY=VALUE') need a scenario file")
    summary = _read_summary(path)
    name = label or (path.parent.name if path.name == "summary.json" else path.stem)
    return Compared(name, summary, str(summary.get("protocol", "")))


def _simulate(path: Path, overrides: list[str], seed: int | None, label: str) -> Compared:
    from simkit.report import algorithm
    from simkit.runner import run_scenario

    result = run_scenario(path, seed=seed, overrides=overrides)
    return Compared(
        label,
        result.summary(),
        algorithm(result),
        [r.eval_loss for r in result.rounds],
        [r.round for r in result.rounds if r.aborted],
    )


# ----------------------------------------------------------------------------- writing


def write_comparison(runs: Sequence[Compared], directory: str | os.PathLike[str]) -> Path:
    """Write ``compare.png``, ``compare.html`` and ``compare.json``; return the page's path."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    _plot(runs, out / "compare.png")
    labelled = [{"label": r.label, **r.summary} for r in runs]
    (out / "compare.json").write_text(json.dumps(labelled, indent=2) + "\n", encoding="utf-8")
    page = out / "compare.html"
    page.write_text(_page(runs), encoding="utf-8")
    return page


def _plot(runs: Sequence[Compared], path: Path) -> None:
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    panels = [("loss", "clients' local training loss"), ("accuracy", "global model accuracy")]
    if any(any(v is not None for v in r.global_loss) for r in runs):
        panels.insert(0, ("global_loss", "global model loss"))
    fig = Figure(figsize=(4.6 * len(panels), 3.8), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (key, title) in zip(axes, panels, strict=True):
        for run in runs:
            ys = run.global_loss if key == "global_loss" else run.curve(key)
            points = [(x, y) for x, y in zip(run.rounds, ys, strict=False) if y is not None]
            if points:
                ax.plot(*zip(*points, strict=True), marker=".", label=run.label)
            for x in run.aborted:
                ax.axvline(x, color="#e45756", alpha=0.25, linewidth=3)
        ax.set_title(title)
        ax.set_xlabel("round")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylim(0, 1 if key == "accuracy" else None)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("comparison: " + ", ".join(r.label for r in runs))
    fig.savefig(path, dpi=110, format="png")


def table_rows(runs: Sequence[Compared]) -> list[tuple[str, list[str]]]:
    """The comparison table: one row per fact, one column per run."""

    def last(run: Compared, key: str) -> str:
        values = [v for v in run.curve(key) if v is not None]
        return f"{values[-1]:.4f}" if values else "-"

    def best(run: Compared) -> str:
        values = [v for v in run.curve("accuracy") if v is not None]
        return f"{max(values):.4f}" if values else "-"

    def cause(run: Compared) -> str:
        split = run.summary.get("dropped_by_cause") or {}
        return ", ".join(f"{len(v)} {k.replace('_', ' ')}" for k, v in split.items() if v) or "-"

    s = [r.summary for r in runs]
    return [
        (
            "algorithm",
            [r.algorithm or str(x.get("protocol", "")) for r, x in zip(runs, s, strict=True)],
        ),
        ("seed", [str(x.get("seed", "")) for x in s]),
        ("clients", [str(x.get("clients", "")) for x in s]),
        ("rounds completed", [f"{x.get('rounds_completed')}/{len(x['metrics'])}" for x in s]),
        ("dropped", [str(len(x.get("dropped", []))) for x in s]),
        ("dropped by cause", [cause(r) for r in runs]),
        ("final training loss", [last(r, "loss") for r in runs]),
        ("final accuracy", [last(r, "accuracy") for r in runs]),
        ("best accuracy", [best(r) for r in runs]),
        ("virtual time (s)", [f"{x.get('virtual_time_s', 0):.2f}" for x in s]),
        ("messages", [str(x.get("messages", "")) for x in s]),
        ("bytes", [f"{x.get('bytes', 0):,}" for x in s]),
        ("weights digest", [str(x.get("weights_digest", ""))[:16] for x in s]),
    ]


def table_html(runs: Sequence[Compared]) -> str:
    """The comparison table as HTML (a notebook shows it with ``IPython.display.HTML``)."""
    esc = html.escape
    head = "".join(f"<th>{esc(r.label)}</th>" for r in runs)
    body = "\n".join(
        f"<tr><th>{esc(name)}</th>" + "".join(f"<td>{esc(v)}</td>" for v in values) + "</tr>"
        for name, values in table_rows(runs)
    )
    return f"<table>\n<tr><th></th>{head}</tr>\n{body}\n</table>"


def _page(runs: Sequence[Compared]) -> str:
    title = html.escape(", ".join(r.label for r in runs))
    return _PAGE.format(table=table_html(runs), title=title)


_PAGE: Final = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>simkit comparison: {title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1400px; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }}
th, td {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }}
th {{ background: #f4f4f4; text-align: left; }}
img {{ max-width: 100%; }}
</style>
</head>
<body>
<h1>Comparison</h1>
<img src="compare.png" alt="loss and accuracy per round, one curve per run">
{table}
<p>Data: <a href="compare.json">compare.json</a> (each run's summary, labelled).</p>
</body>
</html>
"""


# ----------------------------------------------------------------------------- CLI


def compare_args(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``simkit compare``."""
    parser.add_argument(
        "runs",
        nargs="+",
        metavar="RUN",
        help=f"a JSON summary, or a scenario file with overrides: FILE{SEPARATOR}KEY=VALUE...",
    )
    parser.add_argument("-o", "--output", default="compare", metavar="DIR", help="output dir")
    parser.add_argument("--seed", type=int, help="seed of every scenario run")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a key in every scenario run (repeatable)",
    )
    parser.add_argument(
        "--label",
        dest="labels",
        action="append",
        default=[],
        metavar="NAME",
        help="name the runs, in order (repeatable)",
    )


def compare_command(args: argparse.Namespace) -> int:
    """Compare runs; write the report; print the table. 2 for bad input."""
    from simkit._cli_error import CLIError
    from simkit.runner import RunError
    from simkit.scenario import ScenarioError

    if args.labels and len(args.labels) != len(args.runs):
        raise CLIError(f"{len(args.labels)} --label for {len(args.runs)} runs")
    labels: Iterable[str | None] = args.labels or [None] * len(args.runs)
    try:
        runs = [
            load_run(spec, seed=args.seed, common=args.overrides, label=label)
            for spec, label in zip(args.runs, labels, strict=True)
        ]
        page = write_comparison(runs, args.output)
    except (CompareError, ScenarioError) as exc:
        raise CLIError(str(exc)) from None
    except RunError as exc:
        raise CLIError(f"a run failed: {exc}") from None
    except OSError as exc:
        raise CLIError(f"{args.output}: cannot write: {exc}") from None
    _print_table(runs)
    print(f"comparison written to {page}")  # noqa: T201 (the command's output)
    return 0


def _print_table(runs: Sequence[Compared]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="comparison")
    table.add_column("")
    for run in runs:
        table.add_column(run.label, justify="right")
    for name, values in table_rows(runs):
        table.add_row(name, *values)
    Console(highlight=False).print(table)
