"""The protocol plugin interface: how ``simkit run`` finds and drives a protocol.

simkit never imports ``protocols/``. A protocol package registers a plugin
object under the entry-point group ``simkit.protocols``::

    [project.entry-points."simkit.protocols"]
    fedavg = "protocols.fedavg:PLUGIN"

The scenario loader turns a scenario file into a :class:`ScenarioSetup`
(clients with their data shards and speeds, model and optimizer factories,
training settings) and hands it, with a fresh
:class:`~simkit.simulation.Simulation`, to the plugin's ``build``. The plugin
adds its actors and returns a :class:`ProtocolRun` that reports rounds and
final weights once the simulation has run. A third-party package registers its
own protocol the same way.

Most protocols have a server actor named ``"server"`` that clients join and
that owns the round records. A *serverless* protocol (gossip, say) sets the
plugin attribute ``server = None``: every actor is a peer, the protocol's run
merges the peers' views into the round records (it says what a round is),
and the report draws peers only. :func:`server_name` reads the attribute.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from simkit.rng import SeedTree

if TYPE_CHECKING:
    from simkit.executor import Executor
    from simkit.simulation import Simulation
    from simkit.training import (
        Aggregator,
        CostModel,
        Dataset,
        Model,
        ModelPool,
        Optimizer,
        Weights,
    )

__all__ = [
    "ENTRY_POINT_GROUP",
    "ClientSetup",
    "ProtocolPlugin",
    "ProtocolRun",
    "RoundRecord",
    "ScenarioSetup",
    "TrainingSetup",
    "UnknownProtocol",
    "available_protocols",
    "find_protocol",
    "server_name",
]

ENTRY_POINT_GROUP = "simkit.protocols"

SERVER = "server"
"""The name protocols give their server actor: clients connect to it by this name."""


class UnknownProtocol(LookupError):
    """No plugin is registered under that name."""


@dataclass(frozen=True, slots=True)
class ClientSetup:
    """One client: its name, data shard and compute speed.

    Args:
        name: The client's actor name (``c000`` ...).
        train: Its training shard.
        valid: Its evaluation shard (``None``: none).
        speed: Compute speed factor (2.0 twice as fast, 0.25 a straggler).
    """

    name: str
    train: Dataset
    valid: Dataset | None = None
    speed: float = 1.0


@dataclass(frozen=True, slots=True)
class TrainingSetup:
    """The local work a client does per round (DecLearn's effort constraints).

    Training stops at whichever limit comes first.
    """

    batch_size: int = 32
    n_epoch: int | None = 1
    n_steps: int | None = None
    timeout: float | None = None
    eval_batch_size: int = 256


@dataclass(slots=True, weakref_slot=True)
class ScenarioSetup:
    """Everything a protocol needs to build its actors, already validated.

    Attributes:
        name: The scenario's name.
        seed: The run's seed.
        seeds: The root of the seed tree.
        rounds: Number of rounds to run.
        clients: The clients, sorted by name.
        test: Held-out data the server evaluates the global model on, if any.
        model: Returns a fresh model with the initial weights (same every call).
        client_optimizer: Returns a fresh client optimizer.
        server_optimizer: Returns a fresh server optimizer.
        aggregator: How client updates are combined.
        training: The per-round local work.
        cost: The compute cost model (virtual seconds).
        protocol: The scenario's ``[protocol]`` table, for the plugin to validate.
        secagg: The scenario's ``[secagg]`` table (``{"mode": "off"}`` by default).
        on_round: Called by the protocol after every round (progress display).
        checkpoint_dir: Where the protocol saves its state after every round
            (``None``: no checkpoints). The layout inside is the protocol's.
        resume_dir: A directory written through ``checkpoint_dir`` by an earlier
            run of the same scenario and seed: continue from its last round.
        executor: Where client compute runs: ``"inline"``, ``"process"`` or
            ``"ray"`` (the ``[execution]`` table; see :mod:`simkit.executor`).
        workers: Its number of workers (``None``: one per CPU).
        models: One model per worker, made by ``model``, that clients borrow
            for each round instead of holding one each (docs/performance.md,
            the memory model).
    """

    name: str
    seed: int
    seeds: SeedTree
    rounds: int
    clients: tuple[ClientSetup, ...]
    test: Dataset | None
    model: Callable[[], Model]
    client_optimizer: Callable[[], Optimizer]
    server_optimizer: Callable[[], Optimizer]
    aggregator: Aggregator
    training: TrainingSetup
    cost: CostModel
    protocol: Mapping[str, Any] = field(default_factory=dict)
    secagg: Mapping[str, Any] = field(default_factory=lambda: {"mode": "off"})
    on_round: Callable[[RoundRecord], None] | None = None
    checkpoint_dir: Path | None = None
    resume_dir: Path | None = None
    executor: str = "inline"
    workers: int | None = None
    models: ModelPool = field(init=False, repr=False)
    _outside: list[Executor] = field(init=False, repr=False, default_factory=list)

    def __post_init__(self) -> None:
        from simkit.training import ModelPool

        self.models = ModelPool(self.model)

    def outside(self) -> Executor | None:
        """The executor client compute runs on (made once), or ``None`` for inline.

        Shut down when the setup is garbage-collected, or by :meth:`close`.
        """
        if self.executor == "inline":
            return None
        if not self._outside:
            import weakref

            from simkit.executor import make_executor

            pool = make_executor(self.executor, self.workers)
            self._outside.append(pool)
            weakref.finalize(self, pool.shutdown)
        return self._outside[0]

    def close(self) -> None:
        """Shut the executor down (if one was made)."""
        while self._outside:
            self._outside.pop().shutdown()

    @property
    def client_names(self) -> list[str]:
        """The clients' names, sorted."""
        return [c.name for c in self.clients]


@dataclass(frozen=True, slots=True)
class RoundRecord:
    """What happened in one round, as the server saw it (or, in a serverless
    protocol, as the protocol's run merges its peers' views: the plugin's
    documentation says how).

    Attributes:
        round: Round number (1-based).
        sampled: Clients asked to take part (sorted).
        replied: Clients whose reply was used (sorted).
        failed: Sampled clients that did not reply in time or went away (sorted).
        late: Replies from earlier rounds that arrived during this one (discarded).
        loss: Training loss (mean over the replies), if known.
        accuracy: Accuracy of the new global model on evaluation data, if evaluated.
        eval_loss: Loss of the new global model on evaluation data, if evaluated.
        t_start: Virtual time the round started.
        t_end: Virtual time the round ended.
        aborted: The round ended without an update (too few replies ...).
        reason: Why it aborted.
    """

    round: int
    sampled: tuple[str, ...]
    replied: tuple[str, ...]
    failed: tuple[str, ...]
    late: int = 0
    loss: float | None = None
    accuracy: float | None = None
    eval_loss: float | None = None
    t_start: float = 0.0
    t_end: float = 0.0
    aborted: bool = False
    reason: str = ""


@runtime_checkable
class ProtocolRun(Protocol):
    """A built protocol, queried after the simulation has run."""

    def rounds(self) -> list[RoundRecord]:
        """The rounds run so far, in order (aborted ones included)."""
        ...

    def weights(self) -> Weights:
        """The final global model weights."""
        ...

    # Optional: ``artifacts() -> dict`` (extras for the report) and
    # ``privacy() -> dict | None`` (its DP mechanism and ``epsilon``, one value
    # per round: ``RunResult.privacy``, ``--json``'s ``privacy``).


@runtime_checkable
class ProtocolPlugin(Protocol):
    """What a protocol package registers under ``simkit.protocols``."""

    name: str
    # Optional: ``checkpoints = True`` when the protocol saves its state to
    # ``setup.checkpoint_dir`` and resumes from ``setup.resume_dir``; without
    # it ``--checkpoint`` and ``--resume`` are refused (exit 2).
    # Optional: ``server = None`` for a serverless protocol (no actor named
    # ``"server"``; ``simkit serve``/``client`` and ``--processes`` refuse it).
    # Optional: ``round_message = "MyRequest"``, the message type that starts
    # a client's round, counted by ``faults.dropout`` / ``faults.per_round``
    # when the scenario names none (default ``"TrainRequest"``).
    # Optional: ``json_schema() -> dict``, the JSON Schema of its ``[protocol]``
    # keys, shown by ``simkit scenario schema`` when ``protocol.name`` names it.

    def validate(self, table: Mapping[str, Any], source: str) -> None:
        """Check the scenario's ``[protocol]`` table.

        Raises:
            ValueError: A bad key or value; the message names ``source`` and
                the key path (``scenarios/x.toml: protocol.fraction must ...``).
        """
        ...

    def build(
        self, setup: ScenarioSetup, sim: Simulation, only: Collection[str] | None = None
    ) -> ProtocolRun:
        """Add the protocol's actors to ``sim`` and return a handle on the run.

        Args:
            setup: The validated scenario.
            sim: The simulation (virtual or real, in-memory or TCP transport).
            only: Add only the actors with these names (``"server"``, client
                names): ``simkit serve`` builds the server alone, ``simkit
                client`` one client. ``None``: all of them.
        """
        ...


def server_name(plugin: ProtocolPlugin) -> str | None:
    """The plugin's server actor: its ``server`` attribute when it is a name,
    ``"server"`` otherwise; ``None`` when the plugin says ``server = None``
    (a serverless protocol, every actor a peer).
    """
    name = getattr(plugin, "server", SERVER)
    if name is None:
        return None
    return name if isinstance(name, str) and name else SERVER


def available_protocols() -> list[str]:
    """The names registered under ``simkit.protocols``, sorted."""
    return sorted({ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)})


def find_protocol(name: str) -> ProtocolPlugin:
    """Load the plugin registered as ``name``.

    Raises:
        UnknownProtocol: Nothing is registered under that name.
        TypeError: The registered object is not a protocol plugin.
    """
    matches = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
    if not matches:
        known = ", ".join(available_protocols()) or "none"
        raise UnknownProtocol(f"unknown protocol {name!r} (registered: {known})")
    plugin = matches[0].load()
    if not isinstance(plugin, ProtocolPlugin):
        raise TypeError(f"entry point {name!r} is not a simkit protocol plugin: {plugin!r}")
    return plugin
