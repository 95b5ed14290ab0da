"""FedAvg with secure aggregation: what is summed securely, and the checks before a run.

With ``[secagg] mode = "secagg"`` or ``"secagg+"`` a client's weighted
update never leaves it in clear: it replies ``TrainDone`` (loss and effort
only) and then feeds ``ModelUpdates`` (the pre-weighted update and its
weight) to the secure sum. Quantization clips every value to ``[-clip,
clip]``, so the update is first divided by a public weight cap ``W`` (the
largest weight any client can have): the sum of ``w_i u_i / W`` over the sum
of ``w_i / W`` is still the weighted mean, and every weight is at most 1.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import numpy.typing as npt

from protocols.fedavg._options import FedAvgOptions
from protocols.secagg import FieldSpec, SecAggSettings, cap_weight, flatten_fields
from simkit.faults import FaultSchedule
from simkit.protocol import ScenarioSetup
from simkit.scenario import ScenarioError
from simkit.training import ModelUpdates, ScaffoldClientModule, Weights

__all__ = ["check_secagg", "masked_vector", "plain_round_faults", "update_layout", "weight_cap"]

# SecAgg stage messages a client receives -> the equivalent point of a plain
# round: before the masked input its update is not in the sum, so the client
# drops when its TrainRequest arrives; during unmasking its update is in the
# sum, so it drops as the server receives its TrainReply.
_BEFORE_INPUT = frozenset(
    {
        "SecAggQuantization",
        "SecAggSetup",
        "SecAggKeyList",
        "SecAggSignedKeyList",  # active mode
        "SecAggCiphertexts",
    }
)
_AFTER_INPUT = frozenset(
    {"SecAggUnmaskRequest", "SecAggConsistencyCheck", "SecAggSignedUnmaskRequest"}
)


def weight_cap(setup: ScenarioSetup) -> float:
    """The largest weight a client's update can have under the scenario's weighting.

    Raises:
        ScenarioError: Weighting by steps with neither ``n_steps`` nor
            ``n_epoch`` to bound them.
    """
    weighting = setup.aggregator.weighting
    if weighting == "samples":
        return float(max(len(c.train) for c in setup.clients))
    if weighting == "steps":
        t = setup.training
        bounds = []
        for c in setup.clients:
            steps = math.inf
            if t.n_steps is not None:
                steps = t.n_steps
            if t.n_epoch is not None or (t.n_steps is None and t.timeout is None):
                steps = min(steps, c.train.n_batches(t.batch_size) * (t.n_epoch or 1))
            bounds.append(steps)
        cap = max(bounds)
        if not math.isfinite(cap):
            raise ScenarioError(
                f"{setup.name}: secagg with aggregator.by = 'steps' needs training.n_steps "
                "or training.n_epoch (the weights must have a known bound)"
            )
        return float(cap)
    return 1.0


def check_secagg(setup: ScenarioSetup) -> SecAggSettings | None:
    """The scenario's SecAgg settings, after checking FedAvg can use them.

    Raises:
        ScenarioError: A bad ``[secagg]`` table, a threshold above the
            largest cohort or (unless ``secagg.allow_weak_threshold``) not a
            strict majority of it, an aggregator that is not a sum (median,
            trimmed mean), or SCAFFOLD (its control variates would travel in
            clear).
    """
    try:
        settings = SecAggSettings.from_table(setup.secagg, setup.name)
    except ValueError as exc:
        raise ScenarioError(str(exc)) from None
    if settings is None:
        return None
    aggregator = setup.aggregator
    if not aggregator.supports_secagg:
        raise ScenarioError(
            f"{setup.name}: secagg.mode = {settings.mode!r} needs an aggregator that is a sum "
            f"(weighted_mean or mean), not {type(aggregator).__name__}"
        )
    if any(isinstance(m, ScaffoldClientModule) for m in setup.client_optimizer().modules):
        raise ScenarioError(
            f"{setup.name}: secagg.mode = {settings.mode!r} cannot run SCAFFOLD: its control "
            "variates would travel in clear (set optimizer.client.scaffold = false)"
        )
    if len(setup.clients) < 2:
        raise ScenarioError(f"{setup.name}: secure aggregation needs at least 2 clients")
    try:
        settings.check_cohort(largest_cohort(setup))
    except ValueError as exc:
        raise ScenarioError(f"{setup.name}: {exc}") from None
    _check_resolution(settings, setup.name, weight_cap(setup), largest_cohort(setup))
    return settings


def _check_resolution(settings: SecAggSettings, name: str, cap: float, cohort: int) -> None:
    """The quantization step must resolve the smallest weight a client can send.

    A client's weight travels as ``w / cap`` with ``w >= 1`` (one sample, one
    step): a step wider than ``1 / cap`` rounds such weights to zero, and a
    round whose every weight rounds to zero has nothing to divide by.

    Raises:
        ScenarioError: ``secagg.clip`` too large (or ``bits`` too few) for it.
    """
    try:
        step = settings.quantizer(cohort).step
    except ValueError as exc:
        raise ScenarioError(f"{name}: {exc}") from None
    if step > 1.0 / cap:
        raise ScenarioError(
            f"{name}: secagg.clip = {settings.clip:g} with secagg.bits = {settings.bits} "
            f"and a cohort of {cohort} quantizes in steps of {step:.3g}, coarser than the "
            f"smallest client weight 1/{cap:g}: updates would round to zero "
            "(lower secagg.clip or raise secagg.bits)"
        )


def largest_cohort(setup: ScenarioSetup) -> int:
    """The most clients a round samples (all connected): the cohort the threshold must fit."""
    options = FedAvgOptions.from_table(setup.protocol, setup.name)
    count = len(setup.clients)
    return min(count, max(options.min_clients, math.ceil(options.fraction * count - 1e-9)))


def plain_round_faults(faults: FaultSchedule) -> FaultSchedule:
    """Faults written against SecAgg stages, moved to the same point of a plain round.

    ``--set secagg.mode=off`` must compare like with like: a client that
    crashes when it receives its r-th ``SecAggKeyList`` (its update is not in
    round r's sum) crashes, with SecAgg off, when its r-th ``TrainRequest``
    arrives; one that crashes on its r-th ``SecAggUnmaskRequest`` (its update
    is in the sum) crashes as its r-th ``TrainReply`` reaches the server. The same clients
    drop and the same updates are aggregated, so both runs end with the same
    weights up to quantization. Other faults are kept as they are.
    """
    out = []
    for fault in faults:
        trigger = getattr(fault, "on", None)
        if trigger is not None and trigger.kind == "deliver":
            if trigger.type in _BEFORE_INPUT:
                on = dataclasses.replace(trigger, type="TrainRequest")
                fault = dataclasses.replace(fault, on=on)
            elif trigger.type in _AFTER_INPUT:
                on = dataclasses.replace(trigger, src=trigger.dst, dst=None, type="TrainReply")
                fault = dataclasses.replace(fault, on=on)
        out.append(fault)
    return FaultSchedule(tuple(out))


def masked_vector(updates: ModelUpdates, cap: float) -> npt.NDArray[np.float64]:
    """A client's input to the secure sum: its update and weight divided by ``cap``."""
    vector, _spec = flatten_fields(cap_weight(updates, cap))
    return vector


def update_layout(weights: Weights) -> tuple[FieldSpec, ModelUpdates]:
    """The layout of :func:`masked_vector` for models shaped like ``weights``, and a template."""
    template = ModelUpdates.weighted(weights * 0.0, 1.0)
    _vector, spec = flatten_fields(template)
    return spec, template
