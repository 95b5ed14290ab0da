"""The Builder: a validated scenario -> ScenarioSetup + Simulation.

All randomness comes from ``SeedTree(seed)`` by named paths, so each piece
is independent of the others and of the order it is built in:

====================================  =========================================
path                                  draws
====================================  =========================================
``("data", "synthetic", k)``          client ``k``'s Synthetic(alpha, beta) data
``("data", "test")``                  the server's test split (pooled sources)
``("data", "test", name)``            a client's test split (synthetic)
``("data", "partition")``             the partition of a pooled data set
``("data", "valid", name)``           a client's validation split
``("data", "user")``                  the seed a user's loader may take
``("clients", "speeds")``             client speeds
``("model",)``                        initial weights (seeded inits, a user's factory)
``("faults", "dropout")``             who drops and when
``("faults", "per_round")``           per-round dropouts
====================================  =========================================

The simulation itself uses ``("net", ...)`` and ``("actor", ...)``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from simkit.channels import LinkModel, MemoryNetwork, NetworkModel, Transport, latency_from_spec
from simkit.faults import (
    Crash,
    CrashMode,
    Degrade,
    Fault,
    FaultError,
    FaultSchedule,
    Heal,
    Partition,
    Restart,
    Restore,
    Trigger,
    fault_from_dict,
    fault_kind,
    per_round_dropouts,
)
from simkit.heartbeat import HeartbeatConfig
from simkit.protocol import ClientSetup, RoundRecord, ScenarioSetup, TrainingSetup
from simkit.rng import SeedTree
from simkit.scenario._data import client_data
from simkit.scenario._load import Scenario, ScenarioError
from simkit.scenario._schema import (
    AdamConfig,
    ConstantSpeed,
    LinearModelConfig,
    LinearSchedule,
    ListSpeed,
    LogisticModelConfig,
    LogNormalSpeed,
    MLPModelConfig,
    ScenarioConfig,
    UserModelConfig,
)
from simkit.scenario._user import user_model_factory
from simkit.trace import Trace
from simkit.training import (
    SGD,
    Adam,
    Aggregator,
    CostModel,
    FedAdagrad,
    FedAdam,
    FedAvg,
    FedAvgM,
    FedYogi,
    LinearDecay,
    LinearRegression,
    LogisticRegression,
    Mean,
    Median,
    Model,
    MultiLinearDecay,
    Optimizer,
    Schedule,
    TrimmedMean,
    WeightedMean,
)

if TYPE_CHECKING:
    from simkit.simulation import Simulation

__all__ = ["ROUND_MESSAGE", "Built", "build", "client_names"]

ROUND_MESSAGE = "TrainRequest"
"""The round request of FedAvg and FedBuff: the default of a plugin's ``round_message``."""


def client_names(count: int) -> list[str]:
    """``c000``, ``c001``, ... (wider when there are more than 1,000 clients)."""
    width = max(3, len(str(count - 1)))
    return [f"c{i:0{width}d}" for i in range(count)]


@dataclass(frozen=True, slots=True)
class Built:
    """What the Builder makes of a scenario.

    Attributes:
        setup: What the protocol plugin builds its actors from.
        sim: A fresh simulation with the network, heartbeats and faults.
    """

    setup: ScenarioSetup
    sim: Simulation


def build(
    scenario: Scenario,
    *,
    extra_faults: FaultSchedule | None = None,
    on_round: Callable[[RoundRecord], None] | None = None,
    checkpoint_dir: Path | None = None,
    resume_dir: Path | None = None,
    transport: Transport | None = None,
    only: Collection[str] | None = None,
    round_message: str = ROUND_MESSAGE,
) -> Built:
    """Build the setup and the simulation of ``scenario``.

    Args:
        scenario: A validated scenario.
        extra_faults: Faults added to the scenario's (``--faults FILE``).
        on_round: Called by the protocol after every round.
        checkpoint_dir: Where the protocol saves its state every round.
        resume_dir: Where an earlier run saved its state.
        transport: A transport (TCP) instead of the in-memory network the
            ``[network]`` table describes; a real network has no model, so
            only faults on actors (crash, restart, slowdown) apply.
        only: The actors this process runs (``simkit serve``, ``simkit
            client``): faults on other actors are left to their processes.
        round_message: The request type that starts a client's round (a
            plugin's ``round_message``): what ``faults.dropout`` and
            ``faults.per_round`` count when their ``message`` is left out.

    Raises:
        ScenarioError: Something valid in form but impossible to build (a
            missing data file, more clients than samples ...), or a network
            fault with a ``transport``.
    """
    from simkit.simulation import Simulation  # the runtime loads only when running

    cfg = scenario.config
    seeds = SeedTree(cfg.seed)
    names = client_names(cfg.clients.count)
    shards, test, n_features, n_classes = client_data(scenario, names, seeds)
    speeds = _speeds(cfg, seeds)
    bad = next((v for v in speeds if not (math.isfinite(v) and v > 0)), None)
    if bad is not None:
        raise scenario.error("clients.speeds", f"draws a speed of {bad!r}: make sigma smaller")
    clients = tuple(
        ClientSetup(name, train, valid, speed)
        for name, (train, valid), speed in zip(names, shards, speeds, strict=True)
    )
    setup = ScenarioSetup(
        name=scenario.name,
        seed=cfg.seed,
        seeds=seeds,
        rounds=cfg.rounds,
        clients=clients,
        test=test,
        model=_model_factory(scenario, seeds, clients, n_features, n_classes),
        client_optimizer=_client_optimizer(cfg),
        server_optimizer=_server_optimizer(cfg),
        aggregator=_aggregator(cfg),
        training=_training(cfg),
        cost=CostModel(**cfg.cost.model_dump()),
        protocol=cfg.protocol.options(),
        secagg={k: v for k, v in cfg.secagg.model_dump().items() if v is not None},
        on_round=on_round,
        checkpoint_dir=checkpoint_dir,
        resume_dir=resume_dir,
        executor=cfg.execution.executor,
        workers=cfg.execution.workers,
    )
    faults = _faults(scenario, names, seeds, round_message)
    if extra_faults is not None:
        faults = faults + extra_faults
    if transport is not None and not isinstance(transport, MemoryNetwork):
        _check_actor_faults(scenario, faults)
    if only is not None:
        faults = FaultSchedule(tuple(f for f in faults if getattr(f, "actor", None) in only))
    sim = Simulation(
        cfg.seed,
        network=_network(cfg),
        heartbeat=HeartbeatConfig(**cfg.heartbeat.model_dump()),
        faults=faults,
        trace=Trace(heartbeats=cfg.run.trace_heartbeats),
        fail_fast=cfg.run.fail_fast,
        max_time=cfg.run.max_time,
        transport=transport,
    )
    return Built(setup, sim)


# ----------------------------------------------------------------------------- clients


def _speeds(cfg: ScenarioConfig, seeds: SeedTree) -> list[float]:
    spec, n = cfg.clients.speeds, cfg.clients.count
    if isinstance(spec, ConstantSpeed):
        return [spec.value] * n
    if isinstance(spec, ListSpeed):
        return list(spec.values)
    rng = seeds.numpy("clients", "speeds")
    if isinstance(spec, LogNormalSpeed):
        return [float(v) for v in spec.median * np.exp(spec.sigma * rng.standard_normal(n))]
    slow = set(rng.permutation(n)[: round(spec.fraction * n)].tolist())
    return [spec.factor if i in slow else 1.0 for i in range(n)]


# ----------------------------------------------------------------------------- model


def _model_factory(
    scenario: Scenario,
    seeds: SeedTree,
    clients: Sequence[ClientSetup],
    n_features: int,
    n_classes: int,
) -> Callable[[], Model]:
    spec = scenario.config.model
    if isinstance(spec, UserModelConfig):
        shape = tuple(int(n) for n in clients[0].train.rows(0, 1)[0].shape[1:])
        return user_model_factory(scenario, spec, seeds.child("model"), shape, n_classes)
    # picklable factories: a process-pool worker makes its own model from them
    if isinstance(spec, LogisticModelConfig):
        seed = seeds.child("model") if spec.init == "normal" else None
        return functools.partial(LogisticRegression, n_features, n_classes, seed=seed)
    if isinstance(spec, LinearModelConfig):
        return functools.partial(LinearRegression, n_features, 1)
    return _MLPFactory(spec, seeds.child("model"), n_features, n_classes)


@dataclass(frozen=True, slots=True)
class _MLPFactory:
    spec: MLPModelConfig
    seed: SeedTree
    n_features: int
    n_classes: int

    def __call__(self) -> Model:
        import torch  # only torch scenarios pay for the import

        from simkit.training import TorchModel

        spec = self.spec
        activations: dict[str, Callable[[], torch.nn.Module]] = {
            "relu": torch.nn.ReLU,
            "tanh": torch.nn.Tanh,
            "sigmoid": torch.nn.Sigmoid,
            "gelu": torch.nn.GELU,
            "leaky_relu": torch.nn.LeakyReLU,
            "elu": torch.nn.ELU,
        }
        layers: list[torch.nn.Module] = []
        width = self.n_features
        for hidden in spec.hidden:
            layers += [torch.nn.Linear(width, hidden), activations[spec.activation]()]
            if spec.dropout > 0:
                layers.append(torch.nn.Dropout(spec.dropout))
            width = hidden
        layers.append(torch.nn.Linear(width, self.n_classes))
        module = torch.nn.Sequential(*layers)
        loss = torch.nn.CrossEntropyLoss()
        return TorchModel(module, loss, seed=self.seed, num_threads=spec.num_threads)


# ----------------------------------------------------------------------------- optimizers


def _schedule(spec: Any) -> Schedule | None:
    if spec is None:
        return None
    if isinstance(spec, LinearSchedule):
        return LinearDecay(spec.steps, spec.start, spec.end)
    return MultiLinearDecay([LinearDecay(p.steps, p.start, p.end) for p in spec.pieces])


def _client_optimizer(cfg: ScenarioConfig) -> Callable[[], Optimizer]:
    spec = cfg.optimizer.client
    if isinstance(spec, AdamConfig):
        a = spec
        return lambda: Adam(
            a.lr, a.beta1, a.beta2, a.eps, a.weight_decay, a.prox_mu, schedule=_schedule(a.schedule)
        )
    s = spec
    return lambda: SGD(
        s.lr,
        momentum=s.momentum,
        weight_decay=s.weight_decay,
        nesterov=s.nesterov,
        mu=s.prox_mu,
        scaffold=s.scaffold,
        schedule=_schedule(s.schedule),
    )


def _server_optimizer(cfg: ScenarioConfig) -> Callable[[], Optimizer]:
    spec = cfg.optimizer.server
    client = cfg.optimizer.client
    scaffold = not isinstance(client, AdamConfig) and client.scaffold
    common: dict[str, Any] = {"scaffold": scaffold, "n_clients": cfg.clients.count}
    adaptive = spec.kind in ("fedadam", "fedyogi", "fedadagrad")
    lr = spec.lr if spec.lr is not None else (0.01 if adaptive else 1.0)
    beta1 = spec.beta1 if spec.beta1 is not None else (0.0 if spec.kind == "fedadagrad" else 0.9)

    def make() -> Optimizer:
        schedule = _schedule(spec.schedule)
        if spec.kind == "fedavg":
            return FedAvg(lr, schedule=schedule, **common)
        if spec.kind == "fedavgm":
            return FedAvgM(lr, spec.momentum, schedule=schedule, **common)
        if spec.kind == "fedadagrad":
            return FedAdagrad(lr, beta1, spec.tau, schedule=schedule, **common)
        preset = FedAdam if spec.kind == "fedadam" else FedYogi
        return preset(lr, beta1, spec.beta2, spec.tau, schedule=schedule, **common)

    return make


def _aggregator(cfg: ScenarioConfig) -> Aggregator:
    spec = cfg.aggregator
    if spec.kind == "weighted_mean":
        return WeightedMean(by=spec.by)
    if spec.kind == "mean":
        return Mean()
    if spec.kind == "median":
        return Median()
    return TrimmedMean(spec.fraction)


def _training(cfg: ScenarioConfig) -> TrainingSetup:
    t = cfg.training
    n_epoch = t.n_epoch
    if n_epoch is None and t.n_steps is None and t.timeout is None:
        n_epoch = 1
    return TrainingSetup(t.batch_size, n_epoch, t.n_steps, t.timeout, t.eval_batch_size)


# ----------------------------------------------------------------------------- network, faults


def _network(cfg: ScenarioConfig) -> NetworkModel:
    net = cfg.network
    spec = net.latency if isinstance(net.latency, float) else net.latency.model_dump()
    link = LinkModel(latency=latency_from_spec(spec), bandwidth=net.bandwidth, loss=net.loss)
    return NetworkModel(default=link, reorder=net.reorder)


_NETWORK_FAULTS = (Partition, Heal, Degrade, Restore)


def _check_actor_faults(scenario: Scenario, faults: FaultSchedule) -> None:
    """Over a real network only faults on actors can be applied."""
    for fault in faults:
        if isinstance(fault, _NETWORK_FAULTS):
            raise scenario.error(
                "faults",
                f"a {fault_kind(fault)} fault needs the in-memory network; over TCP "
                "only crash, restart and slowdown faults apply",
            )


def _faults(
    scenario: Scenario, names: list[str], seeds: SeedTree, round_message: str
) -> FaultSchedule:
    cfg = scenario.config
    faults: list[Fault] = []
    for i, table in enumerate(cfg.faults.events):
        try:
            faults.append(fault_from_dict(table, f"faults.events[{i}]"))
        except FaultError as exc:
            raise ScenarioError(f"{scenario.source}: {exc}") from None
    drop = cfg.faults.dropout
    if drop is not None and drop.fraction > 0:
        rng = seeds.numpy("faults", "dropout")
        chosen = sorted(rng.permutation(names)[: round(drop.fraction * len(names))].tolist())
        mode: CrashMode = "loud" if drop.loud else "silent"
        for name in chosen:
            if drop.when == "round":
                r = int(rng.integers(1, cfg.rounds + 1))
                message = drop.message or round_message
                trigger = Trigger(kind="deliver", dst=name, type=message, count=r)
                faults.append(Crash(on=trigger, actor=name, mode=mode))
            else:
                at = float(rng.uniform(drop.window[0], drop.window[1]))
                faults.append(Crash(at=at, actor=name, mode=mode))
                if drop.restart_after is not None:
                    faults.append(Restart(at=at + drop.restart_after, actor=name))
    schedule = FaultSchedule(tuple(faults))
    per_round = cfg.faults.per_round
    if per_round is not None and per_round.rate > 0:
        schedule = schedule + per_round_dropouts(
            names,
            seeds.numpy("faults", "per_round"),
            rate=per_round.rate,
            rounds=cfg.rounds,
            round_type=per_round.message or round_message,
            mode="loud" if per_round.loud else "silent",
        )
    return schedule
