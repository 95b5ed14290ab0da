"""Faults as data: what goes wrong, to whom, and when.

A fault happens either at a virtual time (``at``) or on a trigger (``on``): the
``count``-th event of a given kind that matches the trigger's filters, e.g.
"when c3 sends its 2nd MaskedInput" is
``Trigger(kind="send", src="c3", type="MaskedInput", count=2)``, and "when c3
receives its first UnmaskRequest" is
``Trigger(kind="deliver", dst="c3", type="UnmaskRequest")``. A triggered fault
applies at the very event that triggers it: a client crashed on its own send
loses that message; one crashed on a delivery never handles the message.

A :class:`FaultSchedule` is a list of faults; it converts to and from plain
tables (``to_dict``/``from_dict``), TOML and JSON, and replays exactly. The
generators at the bottom draw schedules from the seed tree.
"""

from __future__ import annotations

import json
import math
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

import numpy as np

__all__ = [
    "Crash",
    "Degrade",
    "Fault",
    "FaultError",
    "FaultSchedule",
    "Heal",
    "Partition",
    "Restart",
    "Restore",
    "Slowdown",
    "Trigger",
    "describe_fault",
    "per_round_dropouts",
    "random_crashes",
]

CrashMode = Literal["silent", "loud"]


class FaultError(ValueError):
    """A fault or schedule is malformed (the message names the entry and key)."""


@dataclass(frozen=True, slots=True)
class Trigger:
    """The ``count``-th trace event of ``kind`` matching every filter given.

    Args:
        kind: Trace event kind, usually ``"send"`` or ``"deliver"``.
        src: Sender filter.
        dst: Receiver filter.
        type: Message type filter.
        count: Which matching event triggers (1 = the first).
    """

    kind: str = "send"
    src: str | None = None
    dst: str | None = None
    type: str | None = None
    count: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 1:
            raise FaultError(f"trigger count must be an integer >= 1, got {self.count!r}")
        if not isinstance(self.kind, str) or not self.kind:
            raise FaultError(f"trigger kind must be a non-empty string, got {self.kind!r}")
        for key in ("src", "dst", "type"):
            value = getattr(self, key)
            if value is not None and not (isinstance(value, str) and value):
                raise FaultError(f"trigger {key} must be a non-empty string, got {value!r}")

    def matches(self, kind: str, src: str, dst: str, type_name: str) -> bool:
        """Whether one event passes the filters (the count is kept elsewhere)."""
        return (
            kind == self.kind
            and (self.src is None or src == self.src)
            and (self.dst is None or dst == self.dst)
            and (self.type is None or type_name == self.type)
        )

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True, slots=True)
class _Timing:
    at: float | None = None
    on: Trigger | None = None

    def _check_timing(self, what: str) -> None:
        if (self.at is None) == (self.on is None):
            raise FaultError(f"{what}: give exactly one of 'at' (a time) or 'on' (a trigger)")
        if self.at is not None and not (
            isinstance(self.at, (int, float)) and math.isfinite(self.at) and self.at >= 0
        ):
            raise FaultError(f"{what}: 'at' must be a time >= 0 in seconds, got {self.at!r}")


@dataclass(frozen=True, slots=True)
class Crash(_Timing):
    """The actor dies: ``silent`` (stops answering) or ``loud`` (connections close)."""

    actor: str = ""
    mode: CrashMode = "silent"

    def __post_init__(self) -> None:
        self._check_timing("crash")
        _check_actor("crash", self.actor)
        if self.mode not in ("silent", "loud"):
            raise FaultError(f"crash mode must be 'silent' or 'loud', got {self.mode!r}")


@dataclass(frozen=True, slots=True)
class Restart(_Timing):
    """A fresh incarnation of the actor starts (and rejoins, as its code says)."""

    actor: str = ""

    def __post_init__(self) -> None:
        self._check_timing("restart")
        _check_actor("restart", self.actor)


@dataclass(frozen=True, slots=True)
class Partition(_Timing):
    """Messages between the two groups are lost until a :class:`Heal`."""

    groups: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())

    def __post_init__(self) -> None:
        self._check_timing("partition")
        if len(self.groups) != 2 or not all(self.groups):
            raise FaultError("partition: 'groups' must be two non-empty lists of actor names")
        object.__setattr__(self, "groups", (tuple(self.groups[0]), tuple(self.groups[1])))


@dataclass(frozen=True, slots=True)
class Heal(_Timing):
    """Every partition ends."""

    def __post_init__(self) -> None:
        self._check_timing("heal")


@dataclass(frozen=True, slots=True)
class Degrade(_Timing):
    """The actor's links get a new latency, loss and/or bandwidth."""

    actor: str = ""
    latency: float | Mapping[str, Any] | None = None
    loss: float | None = None
    bandwidth: float | None = None

    def __post_init__(self) -> None:
        self._check_timing("degrade")
        _check_actor("degrade", self.actor)
        if self.latency is None and self.loss is None and self.bandwidth is None:
            raise FaultError("degrade: give at least one of latency, loss, bandwidth")
        if self.latency is not None:
            from simkit.channels.memory import latency_from_spec  # channels import faults

            try:
                latency_from_spec(self.latency)
            except ValueError as exc:
                raise FaultError(f"degrade: {exc}") from None
        if self.loss is not None and not (_is_number(self.loss) and 0 <= self.loss <= 1):
            raise FaultError(f"degrade: 'loss' must be a probability in [0, 1], got {self.loss!r}")
        if self.bandwidth is not None and not (_is_number(self.bandwidth) and self.bandwidth > 0):
            raise FaultError(
                f"degrade: 'bandwidth' must be a finite number > 0, got {self.bandwidth!r}"
            )

    def changes(self) -> dict[str, Any]:
        """The link fields that change."""
        out: dict[str, Any] = {}
        for key in ("latency", "loss", "bandwidth"):
            value = getattr(self, key)
            if value is not None:
                out[key] = dict(value) if isinstance(value, Mapping) else value
        return out


@dataclass(frozen=True, slots=True)
class Restore(_Timing):
    """The actor's links return to the network model."""

    actor: str = ""

    def __post_init__(self) -> None:
        self._check_timing("restore")
        _check_actor("restore", self.actor)


@dataclass(frozen=True, slots=True)
class Slowdown(_Timing):
    """The actor's modelled compute takes ``factor`` times as long (1 = normal)."""

    actor: str = ""
    factor: float = 1.0

    def __post_init__(self) -> None:
        self._check_timing("slowdown")
        _check_actor("slowdown", self.actor)
        if not (_is_number(self.factor) and self.factor > 0):
            raise FaultError(f"slowdown factor must be a finite number > 0, got {self.factor!r}")


Fault = Crash | Restart | Partition | Heal | Degrade | Restore | Slowdown

_KINDS: dict[str, type[Fault]] = {
    "crash": Crash,
    "restart": Restart,
    "partition": Partition,
    "heal": Heal,
    "degrade": Degrade,
    "restore": Restore,
    "slowdown": Slowdown,
}
_KIND_OF = {cls: kind for kind, cls in _KINDS.items()}


def _is_number(value: object) -> bool:
    """A finite int or float (``True`` is not a number here)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_actor(what: str, actor: str) -> None:
    if not isinstance(actor, str) or not actor:
        raise FaultError(f"{what}: 'actor' must be a non-empty name, got {actor!r}")


def fault_kind(fault: Fault) -> str:
    """The schedule name of a fault's type (``"crash"``, ``"heal"`` ...)."""
    return _KIND_OF[type(fault)]


def describe_fault(fault: Fault) -> str:
    """One phrase: ``crash c003 at 12.5 s``, ``crash c003 on deliver TrainRequest #4 to c003``."""
    words = [fault_kind(fault)]
    actor = getattr(fault, "actor", "")
    groups = getattr(fault, "groups", None)
    if actor:
        words.append(actor)
    elif groups is not None:
        words.append(" | ".join(",".join(g) for g in groups))
    if fault.at is not None:
        words.append(f"at {fault.at:g} s")
    elif fault.on is not None:
        on = fault.on
        words += ["on", on.kind, on.type or "any message", f"#{on.count}"]
        words += [f"from {on.src}"] if on.src else []
        words += [f"to {on.dst}"] if on.dst else []
    return " ".join(words)


def fault_to_dict(fault: Fault) -> dict[str, Any]:
    """A plain table for one fault (``kind`` first, unset fields left out)."""
    out: dict[str, Any] = {"kind": fault_kind(fault)}
    for f in fields(fault):
        value = getattr(fault, f.name)
        if value is None:
            continue
        if isinstance(value, Trigger):
            value = value.to_dict()
        elif f.name == "groups":
            value = [list(g) for g in value]
        elif isinstance(value, Mapping):
            value = dict(value)
        out[f.name] = value
    return out


def fault_from_dict(table: Mapping[str, Any], where: str = "fault") -> Fault:
    """Build a fault from a plain table.

    Raises:
        FaultError: Unknown kind or key, or a bad value; the message names ``where``.
    """
    if not isinstance(table, Mapping):
        raise FaultError(f"{where}: expected a table, got {type(table).__name__}")
    params = dict(table)
    kind = params.pop("kind", None)
    cls = _KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise FaultError(f"{where}.kind: must be one of {sorted(_KINDS)}, got {kind!r}")
    allowed = {f.name for f in fields(cls)}
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise FaultError(f"{where}: unknown key {unknown[0]!r} for a {kind} fault")
    if "on" in params:
        on = params["on"]
        if not isinstance(on, Mapping):
            raise FaultError(f"{where}.on: expected a table, got {on!r}")
        bad = sorted(set(on) - {f.name for f in fields(Trigger)})
        if bad:
            raise FaultError(f"{where}.on: unknown key {bad[0]!r}")
        params["on"] = _build(Trigger, dict(on), f"{where}.on")
    if "groups" in params:
        groups = params["groups"]
        if not (isinstance(groups, Sequence) and len(groups) == 2):
            raise FaultError(f"{where}.groups: expected two lists of actor names")
        params["groups"] = tuple(tuple(g) for g in groups)
    fault: Fault = _build(cls, params, where)
    return fault


def _build(cls: type[Any], params: dict[str, Any], where: str) -> Any:
    try:
        return cls(**params)
    except FaultError as exc:
        raise FaultError(f"{where}: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise FaultError(f"{where}: {exc}") from None


@dataclass(frozen=True, slots=True)
class FaultSchedule:
    """An ordered list of faults, serializable and exactly replayable."""

    faults: tuple[Fault, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        object.__setattr__(self, "faults", tuple(self.faults))

    def __len__(self) -> int:
        return len(self.faults)

    def __iter__(self) -> Any:
        return iter(self.faults)

    def __add__(self, other: FaultSchedule) -> FaultSchedule:
        return FaultSchedule(self.faults + other.faults)

    def to_dict(self) -> dict[str, Any]:
        """``{"faults": [table, ...]}``."""
        return {"faults": [fault_to_dict(f) for f in self.faults]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "faults") -> FaultSchedule:
        """Build from ``{"faults": [...]}``.

        Raises:
            FaultError: Malformed; the message names ``source`` and the entry.
        """
        if not isinstance(data, Mapping):
            raise FaultError(f"{source}: expected a table with a 'faults' list")
        extra = sorted(set(data) - {"faults"})
        if extra:
            raise FaultError(f"{source}: unknown key {extra[0]!r} (expected 'faults')")
        items = data.get("faults", [])
        if not isinstance(items, list):
            raise FaultError(f"{source}.faults: expected a list of tables")
        return cls(tuple(fault_from_dict(t, f"{source}.faults[{i}]") for i, t in enumerate(items)))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    @classmethod
    def from_json(cls, text: str, source: str = "faults") -> FaultSchedule:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise FaultError(f"{source}: not valid JSON: {exc}") from None
        return cls.from_dict(data, source)

    def to_toml(self) -> str:
        """The schedule as TOML: one ``[[faults]]`` table per fault."""
        blocks = []
        for fault in self.faults:
            lines = ["[[faults]]"]
            lines += [
                f"{key} = {_toml_value(value)}" for key, value in fault_to_dict(fault).items()
            ]
            blocks.append("\n".join(lines))
        return "\n\n".join(blocks) + ("\n" if blocks else "")

    @classmethod
    def from_toml(cls, text: str, source: str = "faults") -> FaultSchedule:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise FaultError(f"{source}: not valid TOML: {exc}") from None
        return cls.from_dict(data, source)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, Mapping):
        inner = ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items())
        return "{ " + inner + " }"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


# ----------------------------------------------------------------------------- generators


def random_crashes(
    actors: Iterable[str],
    rng: np.random.Generator,
    *,
    rate: float,
    window: tuple[float, float],
    mode: CrashMode = "silent",
    restart_after: float | None = None,
) -> FaultSchedule:
    """Each actor crashes with probability ``rate`` at a uniform time in ``window``.

    Args:
        actors: Candidate actors (taken in sorted order).
        rng: A generator from the seed tree.
        rate: Crash probability per actor.
        window: ``(start, end)`` virtual times.
        mode: Crash mode.
        restart_after: If given, each crashed actor restarts this long after.
    """
    if not 0.0 <= rate <= 1.0:
        raise FaultError(f"crash rate must be in [0, 1], got {rate}")
    start, end = window
    faults: list[Fault] = []
    for actor in sorted(actors):
        crashes = rng.random() < rate
        at = float(rng.uniform(start, end))
        if crashes:
            faults.append(Crash(at=at, actor=actor, mode=mode))
            if restart_after is not None:
                faults.append(Restart(at=at + restart_after, actor=actor))
    return FaultSchedule(tuple(faults))


def per_round_dropouts(
    actors: Iterable[str],
    rng: np.random.Generator,
    *,
    rate: float,
    rounds: int,
    round_type: str,
    mode: CrashMode = "silent",
) -> FaultSchedule:
    """Each still-alive actor drops with probability ``rate`` in each round.

    An actor dropping in round ``r`` crashes when it receives its ``r``-th
    message of type ``round_type`` (e.g. ``"TrainRequest"``), so it never
    answers that round. Actors are visited in sorted order.
    """
    if not 0.0 <= rate <= 1.0:
        raise FaultError(f"dropout rate must be in [0, 1], got {rate}")
    faults: list[Fault] = []
    alive = sorted(actors)
    for r in range(1, rounds + 1):
        draws = rng.random(len(alive))
        dropped = [a for a, u in zip(alive, draws, strict=True) if u < rate]
        for actor in dropped:
            trigger = Trigger(kind="deliver", dst=actor, type=round_type, count=r)
            faults.append(Crash(on=trigger, actor=actor, mode=mode))
        alive = [a for a in alive if a not in dropped]
        if not alive:  # nothing left to draw for (``rounds`` may be huge)
            break
    return FaultSchedule(tuple(faults))
