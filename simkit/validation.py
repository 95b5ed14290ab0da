"""Validation of peer replies at one boundary, before any protocol code uses them.

Every peer input is untrusted (docs/protocols.md, "Hostile replies"). A
protocol driver hands each reply it receives to :func:`check_reply` with an
:class:`Expect` saying what it waits for from that peer now (the message
types, the round of the request outstanding, a check per type) and gets back
one of three things:

* the decoded message, checked: protocol code may use it as it is;
* :class:`Late`: a well-formed answer to an earlier request, or a reply from
  a peer that has no request outstanding (discard it, count it late);
* :class:`Bad`: the sender's failure, with a reason naming the problem (log
  it, count the peer as failed for the round, as with an ``Error`` reply).

Nothing raises: a payload that does not decode (bad array headers, unknown
types, wrong fields, nesting too deep ...), a value that does not fit the
receiver's model (shapes, dtypes, names, non-finite numbers, unknown
auxiliary-variable modules) and a round from the future all become a
:class:`Bad`, never an exception in the receiving actor.

The checks of the training core's values (:func:`check_train_result`,
:func:`check_eval_result`, :func:`check_weights_like`, :func:`check_metrics`,
:func:`check_effort`, :func:`check_aux`) raise :class:`Invalid`; protocols
compose them into their :class:`Expect` (see ``protocols.messages``).

A driver's use, once per reply::

    got = check_reply(received, Expect((TrainReply, Error), round=3, checks=checks))
    if isinstance(got, Bad):
        ...  # log got.reason; the sender failed this round
    elif isinstance(got, Late):
        ...  # discard, count it late
    else:
        ...  # a checked TrainReply or Error of round 3
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from simkit.training import (
    Aggregate,
    AuxVar,
    Effort,
    EvalResult,
    MetricState,
    ModelUpdates,
    TrainResult,
    Weights,
)
from simkit.wire import DecodeError, Message

__all__ = [
    "Bad",
    "Expect",
    "Incoming",
    "Invalid",
    "Late",
    "check_aux",
    "check_effort",
    "check_eval_result",
    "check_fields",
    "check_metrics",
    "check_real",
    "check_reply",
    "check_train_result",
    "check_weights_like",
]


class Invalid(ValueError):
    """A decoded value that does not fit what the receiver expects (the text says where)."""


class Incoming(Protocol):
    """What :func:`check_reply` reads of a received message (``simkit.actors.Received``)."""

    @property
    def src(self) -> str:
        """The sender."""
        ...

    @property
    def type(self) -> str:
        """The registered type name, known without decoding."""
        ...

    def decode(self) -> Message:
        """Decode the payload (raises :class:`~simkit.codec.DecodeError`)."""
        ...


@dataclass(frozen=True, slots=True)
class Bad:
    """A reply that failed validation: its sender's failure, never the receiver's.

    Attributes:
        src: The sender.
        type: The message's type name.
        reason: What is wrong, naming the field (one line).
    """

    src: str
    type: str
    reason: str

    def __str__(self) -> str:
        return f"bad {self.type} from {self.src}: {self.reason}"


@dataclass(frozen=True, slots=True)
class Late:
    """A reply that answers no request outstanding now: discard it.

    Attributes:
        src: The sender.
        type: The message's type name.
        round: The round it answers (``None``: not decoded, as nothing was outstanding).
    """

    src: str
    type: str
    round: int | None


Check = Callable[[Any], None]
"""Checks one decoded message; raises :class:`Invalid` (or anything: it is caught)."""


@dataclass(frozen=True, slots=True)
class Expect:
    """What a receiver waits for from one peer now.

    Attributes:
        types: The message classes accepted.
        round: The round of the request outstanding for that peer (``None``:
            none is; every reply is then :class:`Late`). A message with an
            int ``round`` field below it is :class:`Late`, above it
            :class:`Bad` (a reply sent before its request).
        checks: Per accepted class, a check of the decoded message.
    """

    types: tuple[type[Message], ...]
    round: int | None
    checks: Mapping[type[Message], Check] = field(default_factory=dict)

    @property
    def names(self) -> tuple[str, ...]:
        """The accepted type names."""
        return tuple(t.typename for t in self.types)


def check_reply(item: Incoming, expect: Expect) -> Message | Bad | Late:
    """Decode ``item`` and check it against ``expect``; never raises.

    Returns:
        The checked message, :class:`Late` or :class:`Bad` (see the module docstring).
    """
    if expect.round is None:
        return Late(item.src, item.type, None)  # not even decoded: nothing was asked
    if item.type not in expect.names:
        wanted = " or ".join(expect.names)
        return Bad(item.src, item.type, f"unexpected message type {item.type!r} ({wanted} wanted)")
    try:
        msg = item.decode()
    except DecodeError as exc:
        return Bad(item.src, item.type, f"undecodable: {exc}")
    except Exception as exc:  # DecodeError is the contract; anything else is still the input's
        return Bad(item.src, item.type, f"undecodable (unexpectedly): {type(exc).__name__}: {exc}")
    got = _round_of(msg)
    if got is not None and got < expect.round:
        return Late(item.src, item.type, got)
    if got is not None and got > expect.round:
        return Bad(
            item.src,
            item.type,
            f"answers round {got} before its request (round {expect.round} is outstanding)",
        )
    check = expect.checks.get(type(msg))
    if check is not None:
        try:
            check(msg)
        except Invalid as exc:
            return Bad(item.src, item.type, str(exc))
        except Exception as exc:  # a check tripping on hostile input fails the input
            return Bad(
                item.src, item.type, f"failed a check unexpectedly: {type(exc).__name__}: {exc}"
            )
    return msg


def _round_of(msg: Message) -> int | None:
    value = getattr(msg, "round", None)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# ----------------------------------------------------------------------------- values


def _tname(value: object) -> str:
    return type(value).__name__


def check_real(value: object, where: str, *, minimum: float | None = None) -> float:
    """A finite real number (int or float, numpy ones too, not a bool), ``>= minimum``.

    Raises:
        Invalid: It is not.
    """
    if isinstance(value, bool | np.bool_) or not isinstance(
        value, int | float | np.integer | np.floating
    ):
        raise Invalid(f"{where} must be a number, got {_tname(value)}")
    number = float(value)
    if not math.isfinite(number):
        raise Invalid(f"{where} must be finite, got {number}")
    if minimum is not None and number < minimum:
        raise Invalid(f"{where} must be >= {minimum:g}, got {number}")
    return number


def _all_finite(array: np.ndarray[Any, Any]) -> bool:
    if array.dtype.kind not in "fc":
        return True
    with np.errstate(all="ignore"):  # a finite sum proves every value finite (fast path)
        if np.isfinite(np.sum(array)):
            return True
    return bool(np.isfinite(array).all())


def check_weights_like(weights: object, template: Weights, where: str) -> None:
    """``weights`` has the names, dtypes and shapes of ``template`` and finite values.

    Raises:
        Invalid: Names missing or extra, a dtype or shape differs, or a value
            is NaN or infinite.
    """
    if not isinstance(weights, Weights):
        raise Invalid(f"{where} must be Weights, got {_tname(weights)}")
    if weights.names != template.names:
        missing = sorted(set(template.names) - set(weights.names))
        extra = sorted(set(weights.names) - set(template.names))
        raise Invalid(
            f"{where}: names differ from the global weights (missing {missing}, unexpected {extra})"
        )
    for name, array in weights.items():
        ref = template[name]
        if array.dtype != ref.dtype:
            raise Invalid(
                f"{where}[{name!r}]: dtype {array.dtype}, the global weights' is {ref.dtype}"
            )
        if array.shape != ref.shape:
            raise Invalid(
                f"{where}[{name!r}]: shape {array.shape}, the global weights' is {ref.shape}"
            )
        if not _all_finite(array):
            raise Invalid(f"{where}[{name!r}]: holds NaN or infinite values")


def check_fields(value: Aggregate, template: Weights | None, where: str) -> None:
    """Every field of an aggregate is finite: numbers, arrays, ``Weights`` like ``template``.

    ``None`` fields pass; dict fields are checked item by item.

    Raises:
        Invalid: A field is of another kind, or not finite.
    """
    for f in dataclasses.fields(value):
        _check_value(getattr(value, f.name), template, f"{where}.{f.name}")


def _check_value(value: object, template: Weights | None, where: str) -> None:
    if value is None:
        return
    if isinstance(value, Weights):
        if template is None:
            raise Invalid(f"{where}: no weights expected here")
        check_weights_like(value, template, where)
    elif isinstance(value, np.ndarray):
        if not _all_finite(value):
            raise Invalid(f"{where}: holds NaN or infinite values")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_value(item, template, f"{where}[{key!r}]")
    else:
        check_real(value, where)


def check_metrics(metrics: object, where: str) -> None:
    """A dict of metric name -> :class:`~simkit.training.MetricState` with finite fields.

    Raises:
        Invalid: Another kind of value, or a field not finite.
    """
    if not isinstance(metrics, dict):
        raise Invalid(f"{where} must be a dict, got {_tname(metrics)}")
    for name, state in metrics.items():
        if not isinstance(name, str) or not isinstance(state, MetricState):
            raise Invalid(f"{where}[{name!r}] must be a MetricState, got {_tname(state)}")
        check_fields(state, None, f"{where}[{name!r}]")


def check_effort(effort: object, where: str) -> None:
    """An :class:`~simkit.training.Effort` (its fields are checked on construction).

    Raises:
        Invalid: Another kind of value.
    """
    if not isinstance(effort, Effort):
        raise Invalid(f"{where} must be an Effort, got {_tname(effort)}")


def check_aux(
    aux: object, template: Weights, types: Mapping[str, type[AuxVar]], where: str
) -> None:
    """Auxiliary variables for modules that take them, of their type, finite.

    Args:
        aux: Module name -> auxiliary variable, as received.
        template: The global weights (``Weights`` fields must look like them).
        types: Module name -> the type it takes (``Optimizer.aux_types()``).
        where: Names the value in errors.

    Raises:
        Invalid: An unknown module, another type, or a field that does not fit.
    """
    if not isinstance(aux, dict):
        raise Invalid(f"{where} must be a dict, got {_tname(aux)}")
    for module, var in aux.items():
        wanted = types.get(module) if isinstance(module, str) else None
        if wanted is None:
            known = ", ".join(sorted(types)) or "none"
            raise Invalid(
                f"{where}: no module {module!r} takes an auxiliary variable (known: {known})"
            )
        if type(var) is not wanted:
            raise Invalid(f"{where}[{module!r}] must be a {wanted.__name__}, got {_tname(var)}")
        check_fields(var, template, f"{where}[{module!r}]")


def check_train_result(
    result: object,
    *,
    round: int,
    weights: Weights,
    aux_types: Mapping[str, type[AuxVar]],
    where: str = "result",
) -> None:
    """A training result of ``round`` whose update fits ``weights``.

    Args:
        result: The decoded value.
        round: The round of the request it answers.
        weights: The global weights (names, dtypes, shapes to match).
        aux_types: Module name -> auxiliary variable type the server takes.
        where: Names the value in errors.

    Raises:
        Invalid: Anything that does not fit, named by its path.
    """
    if not isinstance(result, TrainResult):
        raise Invalid(f"{where} must be a TrainResult, got {_tname(result)}")
    if result.round != round:
        raise Invalid(f"{where}.round is {result.round}, the request's is {round}")
    updates = result.updates
    if not isinstance(updates, ModelUpdates):
        raise Invalid(f"{where}.updates must be ModelUpdates, got {_tname(updates)}")
    check_real(updates.weight, f"{where}.updates.weight", minimum=0.0)
    check_weights_like(updates.updates, weights, f"{where}.updates.updates")
    check_aux(result.aux, weights, aux_types, f"{where}.aux")
    check_metrics(result.metrics, f"{where}.metrics")
    check_effort(result.effort, f"{where}.effort")


def check_eval_result(result: object, *, round: int, where: str = "result") -> None:
    """An evaluation result of ``round`` with finite metric states.

    Raises:
        Invalid: Anything that does not fit, named by its path.
    """
    if not isinstance(result, EvalResult):
        raise Invalid(f"{where} must be an EvalResult, got {_tname(result)}")
    if result.round != round:
        raise Invalid(f"{where}.round is {result.round}, the request's is {round}")
    check_metrics(result.metrics, f"{where}.metrics")
    check_effort(result.effort, f"{where}.effort")
