"""Hypothesis strategies for simkit runs: seeds, fault schedules, network models.

Every strategy shrinks toward the *simplest* run that still fails: fewer
faults, faults that happen later (a later round, a later protocol stage,
a later time), silent rather than loud crashes, an ideal network. A shrunk
failure is therefore a short story ("c02 drops when the last round's
unmasking starts") that :func:`simkit.testing.replay_snippet` prints as a
fault file ``simkit run --faults`` replays.

Stages are named by the message type whose *delivery* to a client starts
it: a client that crashes on receiving its ``r``-th ``SecAggKeyList`` has
answered the earlier stages of round ``r`` and answers none after.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from hypothesis import strategies as st

from simkit.channels.memory import Constant, LinkModel, LogNormal, NetworkModel, Uniform
from simkit.faults import Crash, CrashMode, Fault, FaultSchedule, Restart, Trigger
from simkit.heartbeat import HeartbeatConfig
from simkit.protocol import ProtocolPlugin
from simkit.testing._options import option_strategies, resolve_protocol

__all__ = [
    "fault_schedules",
    "heartbeat_configs",
    "latencies",
    "network_models",
    "protocol_options",
    "scenarios",
    "seeds",
    "speeds",
    "stage_crashes",
    "timed_crashes",
]

MAX_SEED = 2**32 - 1


def seeds() -> st.SearchStrategy[int]:
    """Run seeds; they shrink toward 0."""
    return st.integers(min_value=0, max_value=MAX_SEED)


def stage_crashes(
    clients: Sequence[str],
    stages: Sequence[str],
    *,
    rounds: int = 1,
    modes: Sequence[CrashMode] = ("silent", "loud"),
) -> st.SearchStrategy[Crash]:
    """One client crashing as one protocol stage of one round starts.

    Shrinks toward the first client, the last round, the last stage and the
    first mode.

    Args:
        clients: Candidate client names.
        stages: Message types that start each stage, in protocol order.
        rounds: Rounds the run has (1-based ``count`` of the trigger).
        modes: Crash modes to draw from.
    """
    names = _sorted_names(clients)
    if not stages:
        raise ValueError("stage_crashes needs at least one stage message type")
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    last_stage = len(stages) - 1

    # A composite, not st.builds: a failing example then prints as the Crash
    # itself, not as the calls that built it.
    @st.composite
    def crash(draw: st.DrawFn) -> Crash:
        name = draw(st.sampled_from(names))
        back_rounds = draw(st.integers(0, rounds - 1))
        back_stages = draw(st.integers(0, last_stage))
        mode = draw(st.sampled_from(list(modes)))
        trigger = Trigger(
            kind="deliver",
            dst=name,
            type=stages[last_stage - back_stages],
            count=rounds - back_rounds,
        )
        return Crash(on=trigger, actor=name, mode=mode)

    return crash()


def timed_crashes(
    clients: Sequence[str],
    *,
    horizon: float,
    modes: Sequence[CrashMode] = ("silent", "loud"),
    restart_after: float | None = None,
) -> st.SearchStrategy[tuple[Fault, ...]]:
    """One client crashing at a time in ``[0, horizon]`` (shrinks toward ``horizon``).

    With ``restart_after``, the crash may come with a restart that long after.
    """
    names = _sorted_names(clients)
    if not horizon > 0:
        raise ValueError(f"horizon must be > 0, got {horizon}")

    @st.composite
    def crash(draw: st.DrawFn) -> tuple[Fault, ...]:
        name = draw(st.sampled_from(names))
        early = draw(st.floats(0.0, horizon, allow_nan=False))
        mode = draw(st.sampled_from(list(modes)))
        restart = draw(st.booleans()) if restart_after is not None else False
        at = round(horizon - early, 6)
        fault = Crash(at=at, actor=name, mode=mode)
        if restart and restart_after is not None:
            return (fault, Restart(at=at + restart_after, actor=name))
        return (fault,)

    return crash()


def fault_schedules(
    clients: Sequence[str],
    *,
    stages: Sequence[str] | None = None,
    rounds: int = 1,
    max_faults: int = 3,
    min_faults: int = 0,
    horizon: float | None = None,
    modes: Sequence[CrashMode] = ("silent", "loud"),
    restart_after: float | None = None,
) -> st.SearchStrategy[FaultSchedule]:
    """Schedules of client crashes: who drops, when, in which stage.

    Give ``stages`` (stage-start message types) for crashes tied to protocol
    stages, ``horizon`` for crashes at virtual times, or both. A client
    crashes at most once. Shrinks toward fewer and later faults.

    Args:
        clients: Candidate client names.
        stages: Message types that start each protocol stage, in order.
        rounds: Rounds in the run (for stage crashes).
        max_faults: Most faults in one schedule.
        min_faults: Fewest faults in one schedule.
        horizon: Latest virtual time of a timed crash.
        modes: Crash modes to draw from (the first is the simplest).
        restart_after: Timed crashes may restart this many seconds later.
    """
    if stages is None and horizon is None:
        raise ValueError("fault_schedules needs stages=, horizon= or both")
    if not 0 <= min_faults <= max_faults:
        raise ValueError(f"need 0 <= min_faults <= max_faults, got {min_faults}, {max_faults}")
    options: list[st.SearchStrategy[tuple[Fault, ...]]] = []
    if stages is not None:
        crashes = stage_crashes(clients, stages, rounds=rounds, modes=modes)
        options.append(_singletons(crashes))
    if horizon is not None:
        options.append(
            timed_crashes(clients, horizon=horizon, modes=modes, restart_after=restart_after)
        )
    groups = st.lists(
        st.one_of(options),
        min_size=min_faults,
        max_size=max_faults,
        unique_by=lambda group: _actor(group[0]),
    )

    @st.composite
    def schedule(draw: st.DrawFn) -> FaultSchedule:
        return _schedule(draw(groups))

    return schedule()


def latencies(max_seconds: float = 0.1) -> st.SearchStrategy[Constant | Uniform | LogNormal]:
    """Latency models; they shrink toward no latency at all."""
    low = st.floats(0.0, max_seconds, allow_nan=False)
    return st.one_of(
        st.just(Constant(0.0)),
        low.map(Constant),
        st.tuples(low, low).map(lambda ab: Uniform(min(ab), max(ab))),
        st.builds(
            LogNormal,
            st.floats(max_seconds / 100, max_seconds, allow_nan=False),
            st.floats(0.0, 1.0, allow_nan=False),
        ),
    )


def network_models(
    *, max_latency: float = 0.1, max_loss: float = 0.0, bandwidth: bool = True
) -> st.SearchStrategy[NetworkModel]:
    """Network models (per-link FIFO); they shrink toward an ideal network.

    Args:
        max_latency: Largest one-way latency (or lognormal median), seconds.
        max_loss: Largest loss probability (0: lossless).
        bandwidth: Whether finite bandwidths are drawn.
    """
    bandwidths: st.SearchStrategy[float | None] = st.none()
    if bandwidth:
        bandwidths = st.one_of(st.none(), st.floats(1e5, 1e9, allow_nan=False))
    losses = st.just(0.0) if max_loss <= 0 else st.floats(0.0, max_loss, allow_nan=False)
    links = st.builds(LinkModel, latencies(max_latency), bandwidths, losses)
    return links.map(NetworkModel)


def heartbeat_configs(
    *, intervals: Sequence[float] = (1.0, 0.5, 2.0, 5.0), max_misses: int = 5
) -> st.SearchStrategy[HeartbeatConfig]:
    """Heartbeat settings (shrink toward the first interval and 2 misses)."""
    return st.builds(HeartbeatConfig, st.sampled_from(list(intervals)), st.integers(2, max_misses))


def speeds(
    count: int, *, choices: Sequence[float] = (1.0, 0.5, 0.2, 0.05)
) -> st.SearchStrategy[Any]:
    """A ``[clients] speeds`` value for ``count`` clients (shrinks toward all at 1.0).

    Either ``{"kind": "constant", "value": 1.0}`` or one speed per client
    (``{"kind": "list", "values": [...]}``) from ``choices``, the first the
    simplest: a failure that needs one straggler shrinks to one straggler.
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    values = st.lists(st.sampled_from(list(choices)), min_size=count, max_size=count)
    return st.one_of(
        st.just({"kind": "constant", "value": float(choices[0])}),
        values.map(lambda v: {"kind": "list", "values": v}),
    )


def protocol_options(
    protocol: str | ProtocolPlugin = "fedavg", *, options: Mapping[str, Any] | None = None
) -> st.SearchStrategy[dict[str, Any]]:
    """A protocol's ``[protocol]`` table, ``name`` included, drawn from its options.

    The plugin declares its option strategies or simkit derives them from its
    option model (:mod:`simkit.testing._options`); every key is present and
    shrinks toward its default. Tables the plugin's ``validate`` refuses are
    filtered out.

    Args:
        protocol: A registered name, ``"package.module:OBJECT"`` or a plugin.
        options: Fixed values or strategies that replace the drawn ones
            (``{"round_timeout": 5.0, "min_replies": st.integers(1, 3)}``).

    Raises:
        ValueError: An unknown protocol, or fixed options of a protocol with
            no option model that its ``validate`` refuses.
    """
    name, plugin = resolve_protocol(protocol)
    drawn = option_strategies(plugin)
    fixed = dict(options or {})
    if not drawn and not any(isinstance(v, st.SearchStrategy) for v in fixed.values()):
        _check_fixed(plugin, name, fixed)  # a constant table: refuse it now, clearly
    for key, value in fixed.items():
        drawn[key] = value if isinstance(value, st.SearchStrategy) else st.just(value)

    def valid(table: dict[str, Any]) -> bool:
        options = {key: value for key, value in table.items() if key != "name"}
        try:
            plugin.validate(options, "<scenarios>")
        except ValueError:
            return False
        return True

    # A composite, not .map: a failing example prints the table, not a lambda.
    @st.composite
    def table(draw: st.DrawFn) -> dict[str, Any]:
        # keys drawn in the model's order, so the table reads like its docs
        return {"name": name, **{key: draw(strategy) for key, strategy in drawn.items()}}

    return table().filter(valid)


def scenarios(
    *,
    protocol: str | ProtocolPlugin = "fedavg",
    options: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
    min_clients: int = 2,
    max_clients: int = 10,
    max_rounds: int = 3,
    latency: bool = True,
    stragglers: bool = True,
) -> st.SearchStrategy[dict[str, Any]]:
    """Small scenario mappings for :func:`~simkit.testing.run_scenario_example` (fast to run).

    Tiny synthetic data and a numpy logistic regression. Drawn: the seed, the
    number of clients and rounds, the protocol's options (see
    :func:`protocol_options`), client speeds, the latency and the heartbeat;
    they shrink toward 2 clients, 1 round, default options, equal speeds and
    an ideal network. Everything drawn is in the mapping, so
    :func:`~simkit.testing.replay_file` writes it back as a scenario file.
    Add faults (e.g. from :func:`fault_schedules`) with ``faults=``.

    Args:
        protocol: A registered name, ``"package.module:OBJECT"`` or a plugin
            object (then run it with ``run_scenario_example(..., plugin=)``).
        options: Fixed values or strategies for protocol options.
        overrides: Dotted scenario keys set after drawing, as fixed values
            or strategies (``{"secagg.mode": "secagg"}``).
        min_clients: Fewest clients.
        max_clients: Most clients.
        max_rounds: Most rounds.
        latency: Draw a network latency (else none).
        stragglers: Draw client speeds (else all run at speed 1).

    Raises:
        ValueError: Bad bounds or an unknown protocol.
    """
    if not 1 <= min_clients <= max_clients:
        raise ValueError(f"need 1 <= min_clients <= max_clients, got {min_clients}, {max_clients}")
    if max_rounds < 1:
        raise ValueError(f"max_rounds must be >= 1, got {max_rounds}")
    tables = protocol_options(protocol, options=options)
    extra = dict(overrides or {})

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        count = draw(st.integers(min_clients, max_clients))
        lat = draw(st.sampled_from([0.0, 0.01, 0.05])) if latency else 0.0
        clients: dict[str, Any] = {"count": count}
        if stragglers:
            clients["speeds"] = draw(speeds(count))
        scenario = {
            "name": "example",
            "seed": draw(seeds()),
            "rounds": draw(st.integers(1, max_rounds)),
            "protocol": draw(tables),
            "clients": clients,
            "data": {"alpha": 0.5, "beta": 0.5, "samples": 30, "dim": 5, "classes": 3},
            "training": {"batch_size": 8, "n_epoch": 1},
            "optimizer": {"client": {"lr": 0.1}},
            "network": {"latency": lat},
            "heartbeat": {"interval": draw(st.sampled_from([1.0, 0.5])), "misses": 2},
            "run": {"trace_heartbeats": False},
        }
        for key, value in extra.items():
            got = draw(value) if isinstance(value, st.SearchStrategy) else value
            _set_dotted(scenario, key, got)
        return scenario

    return build()


# ----------------------------------------------------------------------------- helpers


def _check_fixed(plugin: ProtocolPlugin, name: str, table: dict[str, Any]) -> None:
    try:
        plugin.validate(table, "<scenarios>")
    except ValueError as exc:
        problem = f"scenarios(protocol={name!r}): the options {table} are refused: {exc}"
        raise ValueError(problem) from None


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    *parents, last = key.split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = copy.deepcopy(value)


def _sorted_names(clients: Sequence[str]) -> list[str]:
    names = sorted(set(clients))
    if not names:
        raise ValueError("need at least one client name")
    return names


def _singletons(crashes: st.SearchStrategy[Crash]) -> st.SearchStrategy[tuple[Fault, ...]]:
    @st.composite
    def one(draw: st.DrawFn) -> tuple[Fault, ...]:
        return (draw(crashes),)

    return one()


def _actor(fault: Fault) -> str:
    return getattr(fault, "actor", "")


def _schedule(groups: list[tuple[Fault, ...]]) -> FaultSchedule:
    """Faults in a canonical order: by actor, so equal sets print alike."""
    ordered = sorted(groups, key=lambda group: _actor(group[0]))
    return FaultSchedule(tuple(fault for group in ordered for fault in group))
