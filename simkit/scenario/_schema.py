"""The scenario file schema: pydantic v2 models, one per TOML table.

Every model forbids unknown keys and validates strictly (a string is not a
number, a float is not an integer, ``inf`` and ``nan`` are not numbers), so a
typo or a wrong type fails with the key path in the message. Tables with
variants (client speeds, data sources, models, optimizers, schedules,
aggregators, latencies) are unions tagged by
``kind`` (``source`` for ``[data]``); a missing tag takes the documented
default variant. ``docs/scenarios.md`` documents every key; this module is
the source of truth and :func:`scenario_json_schema` exports it for editors.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from simkit.scenario._schema_base import (
    Fraction,
    NonNegFloat,
    PosFloat,
    PosInt,
    Probability,
    Table,
    default_tag,
)
from simkit.scenario._schema_data import (
    DataConfig,
    DigitsData,
    LinearModelConfig,
    LogisticModelConfig,
    MLPModelConfig,
    ModelConfig,
    NpzData,
    PartitionConfig,
    SyntheticData,
    UserData,
    UserModelConfig,
)

__all__ = [
    "AdamConfig",
    "AggregatorConfig",
    "ClientsConfig",
    "CostConfig",
    "DataConfig",
    "DigitsData",
    "DropoutConfig",
    "ExecutionConfig",
    "FaultsConfig",
    "HeartbeatConfig",
    "LinearModelConfig",
    "LogisticModelConfig",
    "MLPModelConfig",
    "NetworkConfig",
    "NpzData",
    "OptimizerConfig",
    "PartitionConfig",
    "ProtocolConfig",
    "RunConfig",
    "SGDConfig",
    "ScenarioConfig",
    "SecAggConfig",
    "ServerOptimizerConfig",
    "SyntheticData",
    "TrainingConfig",
    "UserData",
    "UserModelConfig",
    "scenario_json_schema",
]

# ----------------------------------------------------------------------------- protocol


class ProtocolConfig(BaseModel):
    """``[protocol]``: which protocol runs; other keys go to the plugin's ``validate``."""

    model_config = ConfigDict(extra="allow", strict=True, frozen=True)

    name: str = Field(default="fedavg", min_length=1, description="Registered protocol name.")

    def options(self) -> dict[str, Any]:
        """The table without ``name``: what the plugin validates."""
        return dict(self.model_extra or {})


# ----------------------------------------------------------------------------- clients


class ConstantSpeed(Table):
    """Every client has the same speed."""

    kind: Literal["constant"] = "constant"
    value: PosFloat = Field(default=1.0, description="Speed factor of every client.")


class ListSpeed(Table):
    """One speed per client, in name order."""

    kind: Literal["list"] = "list"
    values: list[PosFloat] = Field(min_length=1, description="Speeds of c000, c001, ...")


class LogNormalSpeed(Table):
    """Speeds drawn from a log-normal distribution (seeded)."""

    kind: Literal["lognormal"] = "lognormal"
    median: PosFloat = Field(default=1.0, description="Median speed.")
    sigma: NonNegFloat = Field(default=0.5, description="Log-space standard deviation.")


class TwoTierSpeed(Table):
    """A seeded ``fraction`` of the clients are stragglers running at ``factor``."""

    kind: Literal["two_tier"] = "two_tier"
    fraction: Probability = Field(default=0.2, description="Share of stragglers.")
    factor: PosFloat = Field(default=0.25, description="Stragglers' speed (others: 1.0).")


SpeedConfig = Annotated[
    ConstantSpeed | ListSpeed | LogNormalSpeed | TwoTierSpeed, Field(discriminator="kind")
]


class ClientsConfig(Table):
    """``[clients]``: how many clients (named c000, c001, ...) and how fast."""

    count: PosInt = Field(default=10, description="Number of clients.")
    speeds: SpeedConfig = Field(default=ConstantSpeed(), description="Speed model.")

    @field_validator("speeds", mode="before")
    @classmethod
    def _speed_kind(cls, value: Any) -> Any:
        return default_tag(value, "kind", "constant")

    @model_validator(mode="after")
    def _speeds_match_count(self) -> ClientsConfig:
        if isinstance(self.speeds, ListSpeed) and len(self.speeds.values) != self.count:
            raise ValueError(
                f"speeds.values has {len(self.speeds.values)} entries for {self.count} clients"
            )
        return self


# ----------------------------------------------------------------------------- training


class TrainingConfig(Table):
    """``[training]``: each client's local work per round (first limit wins)."""

    batch_size: PosInt = Field(default=32, description="Samples per step.")
    n_epoch: PosInt | None = Field(
        default=None, description="Epochs per round (default 1 when neither n_steps nor timeout)."
    )
    n_steps: PosInt | None = Field(default=None, description="Steps per round.")
    timeout: PosFloat | None = Field(
        default=None, description="Virtual seconds of training per round."
    )
    eval_batch_size: PosInt = Field(default=256, description="Samples per evaluation step.")


class LinearSchedule(Table):
    """Learning-rate multiplier from ``start`` to ``end`` over ``steps`` rounds."""

    kind: Literal["linear"] = "linear"
    steps: PosInt
    start: float = 1.0
    end: float = 0.0


class MultiLinearSchedule(Table):
    """Linear pieces one after another."""

    kind: Literal["multilinear"] = "multilinear"
    pieces: list[LinearSchedule] = Field(min_length=1)


ScheduleConfig = Annotated[LinearSchedule | MultiLinearSchedule, Field(discriminator="kind")]


class _WithSchedule(Table):
    schedule: ScheduleConfig | None = Field(default=None, description="Learning-rate schedule.")

    @field_validator("schedule", mode="before")
    @classmethod
    def _schedule_kind(cls, value: Any) -> Any:
        return default_tag(value, "kind", "linear")


class SGDConfig(_WithSchedule):
    """Client SGD with momentum, weight decay, FedProx and SCAFFOLD options."""

    kind: Literal["sgd"] = "sgd"
    lr: PosFloat = Field(default=0.1, description="Learning rate.")
    momentum: Fraction = 0.0
    nesterov: bool = False
    weight_decay: NonNegFloat = 0.0
    prox_mu: NonNegFloat = Field(default=0.0, description="FedProx proximal weight (0: FedAvg).")
    scaffold: bool = Field(default=False, description="SCAFFOLD control variates.")


class AdamConfig(_WithSchedule):
    """Client Adam."""

    kind: Literal["adam"] = "adam"
    lr: PosFloat = 1e-3
    beta1: Fraction = 0.9
    beta2: Fraction = 0.999
    eps: PosFloat = 1e-8
    weight_decay: NonNegFloat = 0.0
    prox_mu: NonNegFloat = 0.0


ClientOptimizerConfig = Annotated[SGDConfig | AdamConfig, Field(discriminator="kind")]


class ServerOptimizerConfig(_WithSchedule):
    """The server's optimizer (Reddi et al. 2021 for the adaptive ones)."""

    kind: Literal["fedavg", "fedavgm", "fedadam", "fedyogi", "fedadagrad"] = "fedavg"
    lr: PosFloat | None = Field(
        default=None, description="Default 1.0 (fedavg/fedavgm), 0.01 adaptive."
    )
    momentum: Fraction = Field(default=0.9, description="fedavgm only.")
    beta1: Fraction | None = Field(default=None, description="Default 0.9 (0.0 for fedadagrad).")
    beta2: Fraction = 0.99
    tau: PosFloat = 1e-3


class OptimizerConfig(Table):
    """``[optimizer]``: ``[optimizer.client]`` and ``[optimizer.server]``."""

    client: ClientOptimizerConfig = SGDConfig()
    server: ServerOptimizerConfig = ServerOptimizerConfig()

    @field_validator("client", mode="before")
    @classmethod
    def _client_kind(cls, value: Any) -> Any:
        return default_tag(value, "kind", "sgd")


class AggregatorConfig(Table):
    """``[aggregator]``: how the server combines client updates."""

    kind: Literal["weighted_mean", "mean", "median", "trimmed_mean"] = "weighted_mean"
    by: Literal["samples", "steps", "none"] = Field(
        default="samples", description="weighted_mean only."
    )
    fraction: Annotated[float, Field(ge=0, lt=0.5)] = Field(
        default=0.1, description="trimmed_mean only."
    )


class CostConfig(Table):
    """``[cost]``: virtual seconds of compute at speed 1."""

    per_sample: NonNegFloat = 1e-3
    per_step: NonNegFloat = 0.0
    per_round: NonNegFloat = 0.0
    eval_ratio: NonNegFloat = 1.0 / 3.0


# ----------------------------------------------------------------------------- network


class ConstantLatency(Table):
    kind: Literal["constant"] = "constant"
    seconds: NonNegFloat = 0.0


class UniformLatency(Table):
    kind: Literal["uniform"] = "uniform"
    low: NonNegFloat
    high: NonNegFloat


class LogNormalLatency(Table):
    kind: Literal["lognormal"] = "lognormal"
    median: PosFloat
    sigma: NonNegFloat = 0.5


LatencyConfig = Annotated[
    ConstantLatency | UniformLatency | LogNormalLatency, Field(discriminator="kind")
]


class NetworkConfig(Table):
    """``[network]``: every link's latency, bandwidth and loss."""

    latency: NonNegFloat | LatencyConfig = Field(
        default=0.01, description="Seconds, or a table {kind = constant|uniform|lognormal, ...}."
    )
    bandwidth: PosFloat | None = Field(
        default=None, description="Bytes per second (default: infinite)."
    )
    loss: Probability = Field(default=0.0, description="Probability that a message is lost.")
    reorder: bool = Field(
        default=False, description="Let messages on one link overtake each other."
    )

    @field_validator("latency", mode="before")
    @classmethod
    def _latency_kind(cls, value: Any) -> Any:
        return default_tag(value, "kind", "constant")


class HeartbeatConfig(Table):
    """``[heartbeat]``: liveness pings on every connection."""

    interval: PosFloat = 1.0
    misses: Annotated[int, Field(ge=2)] = Field(
        default=3, description="Missed heartbeats (intervals of silence) that declare a peer gone."
    )
    enabled: bool = True


# ----------------------------------------------------------------------------- faults


class DropoutConfig(Table):
    """A seeded share of the clients drops out once each."""

    fraction: Probability = Field(default=0.0, description="Share of clients that drop.")
    when: Literal["round", "time"] = Field(
        default="round",
        description="round: on receiving a request of a random round; time: in window.",
    )
    message: str | None = Field(
        default=None,
        description="Request type counted when 'round' (default: the protocol's round "
        "request, TrainRequest unless its plugin says otherwise).",
    )
    window: list[NonNegFloat] = Field(
        default_factory=lambda: [0.0, 60.0], description="[start, end] seconds when 'time'."
    )
    loud: bool = Field(
        default=False, description="Connections close (seen at once) instead of silence."
    )
    restart_after: PosFloat | None = Field(
        default=None,
        description="Restart each dropped client after this many seconds ('time' only).",
    )

    @model_validator(mode="after")
    def _check(self) -> DropoutConfig:
        if len(self.window) != 2 or self.window[0] > self.window[1]:
            raise ValueError("window must be [start, end] with start <= end")
        if self.restart_after is not None and self.when != "time":
            raise ValueError("restart_after needs when = 'time'")
        return self


class PerRoundDropoutConfig(Table):
    """Each still-alive client drops with probability ``rate`` in each round."""

    rate: Probability = 0.0
    message: str | None = Field(
        default=None, description="Request type of a round (default: the protocol's)."
    )
    loud: bool = False


class FaultsConfig(Table):
    """``[faults]``: explicit events plus seeded generators."""

    events: list[dict[str, Any]] = Field(
        default_factory=list, description="[[faults.events]] as in a FaultSchedule file."
    )
    dropout: DropoutConfig | None = None
    per_round: PerRoundDropoutConfig | None = None


class SecAggConfig(Table):
    """``[secagg]``: secure aggregation settings, passed to the protocol."""

    mode: Literal["off", "secagg", "secagg+"] = "off"
    threshold: PosInt | Annotated[float, Field(gt=0, le=1)] | None = Field(
        default=None, description="Shamir threshold: a count, or a share of the clients."
    )
    clip: PosFloat | None = Field(default=None, description="Clip updates to [-clip, clip].")
    bits: Annotated[int, Field(ge=2, le=62)] | None = Field(
        default=None, description="Quantization bits."
    )
    neighbours: PosInt | None = Field(default=None, description="SecAgg+ neighbour degree.")
    allow_weak_threshold: bool | None = Field(
        default=None,
        description="Accept a threshold that is not a strict majority (docs/secagg.md).",
    )
    keys: Literal["os", "seeded"] | None = Field(
        default=None,
        description="Client secrets: default seeded in virtual time, OS entropy over real sockets.",
    )
    adversary: Literal["passive", "active"] | None = Field(
        default=None,
        description="'active': signed keys and a consistency check before unmasking.",
    )
    attack: str | None = Field(
        default=None, description="Teaching: 'split-view:<client>' makes the server lie."
    )


class RunConfig(Table):
    """``[run]``: limits and what the trace keeps."""

    max_time: PosFloat | None = Field(default=None, description="Virtual-time bound (seconds).")
    trace_heartbeats: bool = Field(default=True, description="Record Ping/Pong in the trace.")
    fail_fast: bool = Field(default=False, description="Stop the run when an actor raises.")


class ExecutionConfig(Table):
    """``[execution]``: where client compute runs (results are the same everywhere)."""

    executor: Literal["inline", "process", "ray"] = Field(
        default="inline", description="inline (this thread), process (a local pool) or ray."
    )
    workers: PosInt | None = Field(default=None, description="Workers (default: CPUs).")


# ----------------------------------------------------------------------------- scenario


class ScenarioConfig(Table):
    """A whole scenario file."""

    name: str = Field(default="", description="Scenario name (default: the file's stem).")
    description: str = ""
    seed: int = Field(default=0, description="The run's seed.")
    rounds: PosInt = Field(default=10, description="Rounds to run.")
    protocol: ProtocolConfig = ProtocolConfig()
    clients: ClientsConfig = ClientsConfig()
    data: DataConfig = SyntheticData()
    model: ModelConfig = LogisticModelConfig()
    training: TrainingConfig = TrainingConfig()
    optimizer: OptimizerConfig = OptimizerConfig()
    aggregator: AggregatorConfig = AggregatorConfig()
    cost: CostConfig = CostConfig()
    network: NetworkConfig = NetworkConfig()
    heartbeat: HeartbeatConfig = HeartbeatConfig()
    faults: FaultsConfig = FaultsConfig()
    secagg: SecAggConfig = SecAggConfig()
    run: RunConfig = RunConfig()
    execution: ExecutionConfig = ExecutionConfig()

    @field_validator("data", mode="before")
    @classmethod
    def _data_source(cls, value: Any) -> Any:
        return default_tag(value, "source", "synthetic")

    @field_validator("model", mode="before")
    @classmethod
    def _model_kind(cls, value: Any) -> Any:
        return default_tag(value, "kind", "logistic")


def scenario_json_schema() -> dict[str, Any]:
    """The JSON Schema of a scenario file (for editor completion).

    Returns:
        A JSON-ready mapping (draft 2020-12, as pydantic writes it).
    """
    schema = ScenarioConfig.model_json_schema()
    _protocol_schemas(schema)
    schema["title"] = "simkit scenario"
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


def _protocol_schemas(schema: dict[str, Any]) -> None:
    """Add each installed plugin's ``[protocol]`` keys: a plugin's optional
    ``json_schema()`` applies when ``protocol.name`` names it (``if``/``then``)."""
    from simkit.protocol import available_protocols, find_protocol

    rules = []
    for name in available_protocols():
        try:
            get = getattr(find_protocol(name), "json_schema", None)
        except Exception:  # a broken third-party plugin: its keys stay undescribed
            continue
        if get is not None:
            schema["$defs"][f"protocol-{name}"] = get()
            named: dict[str, Any] = {"properties": {"name": {"const": name}}}
            if name != ProtocolConfig.model_fields["name"].default:
                named["required"] = ["name"]  # an absent name is the default protocol
            rules.append({"if": named, "then": {"$ref": f"#/$defs/protocol-{name}"}})
    if rules:
        schema["$defs"]["ProtocolConfig"]["allOf"] = rules
