"""The report's figures (matplotlib's object API and the Agg canvas; never pyplot).

Choices a lecturer can defend in front of a class: integer round ticks;
accuracy on [0, 1] and losses from 0, so noise does not look like a jump;
aborted rounds shaded and labelled; diverging colormaps centred on zero.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING, Any, Final

from simkit.report._activity import STATES, client_activity, replies, reply_staleness
from simkit.trace import Event

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from simkit.report._run import Run

__all__ = [
    "MAX_TIMELINE_ROWS",
    "algorithm",
    "plot_labels",
    "plot_metrics",
    "plot_secagg",
    "plot_timeline",
]

MAX_TIMELINE_ROWS: Final = 40
"""Clients drawn in the timeline and the label plot (the first ones, by name)."""

COLORS: Final = {
    "idle": "#ececec",
    "training": "#4c78a8",
    "secagg": "#9d6fb5",
    "sending": "#f58518",
    "waiting": "#b9d3ea",
    "dropped": "#e45756",
}
_ABORTED: Final = "#f4b6b6"
_SECAGG_STAGES: Final = ("advertise-keys", "share-keys", "masked-input", "unmasking")
_STAGE_SHADES: Final = ("#d9c9ee", "#b9a0dc", "#9675c6", "#7351ad")

Target = str | os.PathLike[str] | IO[bytes]


def algorithm(result: Run) -> str:
    """The name a lecturer would say: ``fedprox`` for FedAvg with a proximal term, ..."""
    name = result.protocol
    try:
        client = result.setup.client_optimizer()
        server = result.setup.server_optimizer()
    except Exception:  # a stand-in setup: keep the protocol's name
        return name
    found = [type(m).__name__ for m in getattr(client, "modules", [])]
    found += [type(m).__name__ for m in getattr(server, "modules", [])]
    if any(getattr(r, "mu", 0) > 0 for r in getattr(client, "regularizers", [])):
        name = "fedprox" if name == "fedavg" else f"{name}+prox"
    if "ScaffoldClientModule" in found:
        name = "scaffold"
    for module, label in (("YogiModule", "fedyogi"), ("AdagradModule", "fedadagrad")):
        if module in found and name == "fedavg":
            name = label
    if "AdamModule" in found and name == "fedavg":
        name = "fedadam"
    mode = str(result.setup.secagg.get("mode", "off"))
    return name if mode == "off" else f"{name} + {mode}"


def _title(result: Run) -> str:
    return f"{result.scenario} ({algorithm(result)}, seed {result.seed})"


def _rounds_axis(ax: Axes, result: Run) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("update" if result.protocol == "fedbuff" else "round")
    ax.grid(alpha=0.3)
    for r in result.rounds:
        if r.aborted:
            ax.axvspan(
                r.round - 0.4,
                r.round + 0.4,
                color=_ABORTED,
                alpha=0.6,
                zorder=0,
                label="aborted round",
            )


def _dedup_legend(ax: Axes) -> None:
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    if unique:
        ax.legend(unique.values(), unique.keys(), fontsize=8)


def _line(ax: Axes, xs: list[int], ys: Sequence[float | None], label: str, **kw: Any) -> None:
    points = [(x, y) for x, y in zip(xs, ys, strict=True) if y is not None]
    if points:
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label, **kw)


def plot_metrics(result: Run, target: Target, dpi: int = 110) -> None:
    """Loss and accuracy per round; for FedBuff also staleness and late replies."""
    from matplotlib.figure import Figure

    fedbuff = result.server is not None and (
        result.protocol == "fedbuff" or any(r.late for r in result.rounds)
    )
    fig = Figure(figsize=(13 if fedbuff else 9, 3.6), layout="constrained")
    axes = fig.subplots(1, 3 if fedbuff else 2)
    rounds = [r.round for r in result.rounds]
    loss_ax, acc_ax = axes[0], axes[1]
    _line(loss_ax, rounds, [r.loss for r in result.rounds], "clients' local training loss")
    _line(loss_ax, rounds, [r.eval_loss for r in result.rounds], _global_loss_label(result))
    _line(acc_ax, rounds, [r.accuracy for r in result.rounds], "global model accuracy")
    losses = [v for r in result.rounds for v in (r.loss, r.eval_loss) if v is not None]
    loss_ax.set_ylim(0, max(losses) * 1.08 if losses and max(losses) > 0 else 1.0)
    acc_ax.set_ylim(0, 1)
    for ax, values in ((loss_ax, losses), (acc_ax, [r.accuracy for r in result.rounds])):
        if not any(v is not None for v in values):
            ax.text(0.5, 0.5, "no value recorded", transform=ax.transAxes, ha="center")
    loss_ax.set_title("loss")
    acc_ax.set_title("accuracy")
    if fedbuff:
        _plot_staleness(axes[2], result)
    for ax in axes:
        _rounds_axis(ax, result)
        _dedup_legend(ax)
    fig.suptitle(_title(result))
    fig.savefig(target, dpi=dpi, format="png")


def _global_loss_label(result: Run) -> str:
    where = str(result.setup.protocol.get("evaluate", "auto"))
    return {
        "train": "global model, training loss (all clients' data)",
        "clients": "global model, clients' validation loss",
        "server": "global model, test loss",
    }.get(where, "global model, evaluation loss")


def _plot_staleness(ax: Axes, result: Run) -> None:
    events = result.trace.events if result.trace.keep else []
    stale = reply_staleness(events, result.rounds)
    rounds = [r.round for r in result.rounds]
    means = [sum(s) / len(s) if s else None for s in stale]
    _line(ax, rounds, [max(s) if s else None for s in stale], "max staleness", color="#e45756")
    _line(ax, rounds, means, "mean staleness", color="#4c78a8")
    ax.bar(rounds, [r.late for r in result.rounds], color="#bbbbbb", label="late (discarded)")
    ax.set_ylim(bottom=0)
    ax.set_title("staleness of replies and late replies")
    ax.set_ylabel("server updates behind")


def plot_timeline(result: Run, events: Sequence[Event], target: Target) -> None:
    """Per-client Gantt over virtual time: states, crash and declared-gone marks."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    shown = result.clients[:MAX_TIMELINE_ROWS]
    activity = client_activity(events, shown, result.virtual_time_s, result.rounds)
    fig = Figure(figsize=(11, 1.9 + 0.26 * len(shown)), layout="constrained")
    ax = fig.subplots()
    _background(ax, result, events)
    for row, name in enumerate(shown):
        for state in STATES:
            bars = [(s.start, s.end - s.start) for s in activity[name] if s.state == state]
            if bars:
                ax.broken_barh(bars, (row - 0.38, 0.76), color=COLORS[state], linewidth=0)
        for mark, style in (("crash", "x"), ("gone", "v")):
            ts = [s.start for s in activity[name] if s.state == mark]
            if ts:
                ax.scatter(ts, [row] * len(ts), marker=style, color="black", s=36, zorder=3)
    top = -1.5 if _stages(events) else -0.5
    if result.protocol == "fedbuff" or any(r.late for r in result.rounds):
        _staleness_marks(fig, ax, result, events, shown)
    ax.set_yticks(range(len(shown)), shown, fontsize=7)
    if top < -1:
        ax.set_yticks([-1, *range(len(shown))], ["SecAgg stage", *shown], fontsize=7)
    ax.set_ylim(len(shown) - 0.5, top)
    ax.set_xlim(0, max(result.virtual_time_s, 1e-9))
    ax.set_xlabel("virtual time (s); thin lines: round starts; shaded red: aborted rounds")
    more = len(result.clients) - len(shown)
    ax.set_title("client activity" + (f" (first {len(shown)}; {more} more)" if more else ""))
    used = {s.state for spans in activity.values() for s in spans}
    handles: list[Any] = [Patch(color=COLORS[s], label=s) for s in STATES if s in used]
    for mark, style, label in (("crash", "x", "crash"), ("gone", "v", "declared gone")):
        if mark in used:
            handles.append(Line2D([], [], marker=style, linestyle="", color="k", label=label))
    if _stages(events):
        handles += [
            Patch(color=c, label=s) for s, c in zip(_SECAGG_STAGES, _STAGE_SHADES, strict=True)
        ]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 6), fontsize=8)
    fig.savefig(target, dpi=110, format="png")


def _staleness_marks(
    fig: Any, ax: Axes, result: Run, events: Sequence[Event], shown: Sequence[str]
) -> None:
    """Each reply's arrival as a dot coloured by its staleness (asynchronous protocols)."""
    row = {name: i for i, name in enumerate(shown)}
    found = [(row[c], t, s) for c, t, s in replies(events, result.rounds) if c in row]
    if not found:
        return
    rows, times, stale = zip(*found, strict=True)
    dots = ax.scatter(times, rows, c=stale, cmap="plasma", s=14, zorder=4, vmin=0)
    fig.colorbar(dots, ax=ax, shrink=0.5, pad=0.01, label="reply staleness (updates behind)")


def _stages(events: Sequence[Event]) -> list[tuple[float, str]]:
    return [(e.t, e.info) for e in events if e.kind == "mark" and e.type == "secagg"]


def _background(ax: Axes, result: Run, events: Sequence[Event]) -> None:
    """Round starts, aborted rounds and SecAgg stages behind the bars."""
    for r in result.rounds:
        ax.axvline(r.t_start, color="black", linewidth=0.5, alpha=0.35)
        if r.aborted:
            ax.axvspan(r.t_start, r.t_end, color=_ABORTED, alpha=0.5, zorder=0)
    stages = _stages(events)
    for i, (t, stage) in enumerate(stages):  # a band above the clients: the server's stage
        if stage in _SECAGG_STAGES and i + 1 < len(stages):
            shade = _STAGE_SHADES[_SECAGG_STAGES.index(stage)]
            ax.broken_barh([(t, stages[i + 1][0] - t)], (-1.4, 0.8), color=shade, linewidth=0)


def plot_labels(result: Run, target: Target) -> bool:
    """Each client's label counts as a stacked bar (the data's skew); False if none."""
    import numpy as np
    from matplotlib.figure import Figure

    clients = result.setup.clients[:MAX_TIMELINE_ROWS]
    labels = [np.asarray(c.train.y) for c in clients]
    if not labels or any(y.ndim != 1 or not np.issubdtype(y.dtype, np.integer) for y in labels):
        return False
    classes = int(max(int(y.max(initial=0)) for y in labels)) + 1
    counts = np.stack([np.bincount(y, minlength=classes) for y in labels])
    fig = Figure(figsize=(9, 1.6 + 0.22 * len(clients)), layout="constrained")
    ax = fig.subplots()
    cmap = _colormap("tab20" if classes > 10 else "tab10")
    left = np.zeros(len(clients))
    for k in range(classes):
        ax.barh(range(len(clients)), counts[:, k], left=left, color=cmap(k % cmap.N), label=str(k))
        left += counts[:, k]
    ax.set_yticks(range(len(clients)), [c.name for c in clients], fontsize=7)
    ax.set_ylim(len(clients) - 0.5, -0.5)
    ax.set_xlabel("training samples, by label")
    more = len(result.setup.clients) - len(clients)
    ax.set_title(
        "label distribution per client" + (f" (first {len(clients)}; {more} more)" if more else "")
    )
    fig.legend(title="label", loc="outside right upper", fontsize=7, ncol=1 + classes // 20)
    fig.savefig(target, dpi=100, format="png")
    return True


def _colormap(name: str) -> Any:
    from matplotlib import colormaps

    return colormaps[name]


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


def plot_secagg(view: dict[str, Any], target: Target) -> None:
    """The teaching view: a client's true update, what the server got, the sum."""
    import numpy as np
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
            image = _image(arrays[name])
            if key == "masked":
                shown = ax.imshow(image, cmap="gray", vmin=0, vmax=1)
            else:  # signed values: a diverging map centred on zero
                bound = float(np.nanmax(np.abs(image))) or 1.0
                shown = ax.imshow(image, cmap="RdBu_r", vmin=-bound, vmax=bound)
            fig.colorbar(shown, ax=ax, shrink=0.8)
            ax.set_title(f"{title}\n{name}" if row == 0 else name, fontsize=9)
    fig.suptitle(
        f"secure aggregation, round {view['round']}: masked inputs are uniform integers "
        f"modulo 2^{view['bits']} (shown scaled to [0, 1)); updates: red > 0 > blue"
    )
    fig.savefig(target, dpi=110, format="png")
