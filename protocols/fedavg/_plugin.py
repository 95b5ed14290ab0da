"""The ``fedavg`` protocol plugin: validate the ``[protocol]`` table, build the actors."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

import numpy as np

from protocols._tables import read_checkpoint
from protocols.fedavg._client import FedAvgClient
from protocols.fedavg._core import FedAvgCore
from protocols.fedavg._options import FedAvgOptions, fedavg_json_schema
from protocols.fedavg._privacy import privacy_report
from protocols.fedavg._secure import check_secagg, plain_round_faults, update_layout
from protocols.fedavg._server import SERVER_NAME, FedAvgServer, checkpoint_path
from protocols.fedavg._strategy import load_mods, local_mechanism
from protocols.secagg import ServerFactory, unflatten_fields
from simkit.protocol import ClientSetup, RoundRecord, ScenarioSetup
from simkit.scenario import ScenarioError
from simkit.secagg import SecAggServer
from simkit.simulation import Simulation
from simkit.training import Weights

__all__ = ["PLUGIN", "FedAvgPlugin", "FedAvgRun"]


class FedAvgRun:
    """The handle :meth:`FedAvgPlugin.build` returns: rounds and final weights."""

    def __init__(self, core: FedAvgCore) -> None:
        self.core = core
        self.server: FedAvgServer | None = None
        self.clients: dict[str, FedAvgClient] = {}  # the latest incarnation of each

    def rounds(self) -> list[RoundRecord]:
        """Every round so far (those restored from a checkpoint first)."""
        return list(self.core.records)

    def weights(self) -> Weights:
        """The global weights."""
        return self.core.weights

    def privacy(self) -> dict[str, Any] | None:
        """The run's DP mechanism and epsilon after each round (``None``: no noise).

        The strategy's (central) mechanism if it has one, else the clients'
        ``clip`` + ``gaussian`` mods (local); see :mod:`protocols.fedavg._privacy`.
        """
        mechanism = self.core.strategy.mechanism() or local_mechanism(
            load_mods(self.core.options.mods)
        )
        return privacy_report(mechanism, self.core.records)

    def artifacts(self) -> dict[str, Any]:
        """What the report shows besides the rounds: the SecAgg teaching view.

        ``{"secagg": {round, client, bits, true, masked, mean}}`` for the first
        secure round: the client's true update, the masked input the server
        received from it (integers modulo ``2**bits``, scaled to [0, 1)) and
        the mean update the server unmasked, each as ``{array name: array}``.
        The simulator sees the client's side; the server never does.
        """
        seen = self.server.seen_masked if self.server is not None else None
        if seen is None:
            return {}
        client = self.clients.get(seen["client"])
        true = client.secure_inputs.get(seen["round"]) if client is not None else None
        spec, template = update_layout(self.core.weights)

        def updates(vector: Any, *, mean: bool) -> dict[str, Any] | None:
            try:
                agg = unflatten_fields(np.asarray(vector, np.float64), spec, template)
                return (agg.mean() if mean else agg.updates).to_dict()
            except (ValueError, ZeroDivisionError):  # a garbage sum (a buggy server)
                return None

        masked = np.asarray(seen["masked"], np.float64) / float(2 ** seen["bits"])
        return {
            "secagg": {
                "round": seen["round"],
                "client": seen["client"],
                "bits": seen["bits"],
                "true": updates(true, mean=True) if true is not None else None,
                "masked": updates(masked, mean=False),
                "mean": updates(seen["total"], mean=True),
            }
        }


class FedAvgPlugin:
    """Registered under ``simkit.protocols`` as ``fedavg``.

    Args:
        secagg_factory: Builds the SecAgg server core of secure rounds; a
            plugin built with a :class:`~simkit.secagg.SecAggServer` subclass
            runs a changed (say, deliberately buggy) server.
    """

    name = "fedavg"
    checkpoints = True  # --checkpoint / --resume work (the runner asks)

    def __init__(self, secagg_factory: ServerFactory = SecAggServer) -> None:
        self.secagg_factory = secagg_factory

    def validate(self, table: Mapping[str, Any], source: str) -> None:
        """Check the ``[protocol]`` table (see :class:`FedAvgOptions`)."""
        FedAvgOptions.from_table(table, source)

    def json_schema(self) -> dict[str, Any]:
        """The ``[protocol]`` keys for ``simkit scenario schema`` (strategies and mods too)."""
        return fedavg_json_schema()

    def options(self, setup: ScenarioSetup) -> FedAvgOptions:
        """The scenario's validated options."""
        return FedAvgOptions.from_table(setup.protocol, setup.name)

    def build(
        self, setup: ScenarioSetup, sim: Simulation, only: Collection[str] | None = None
    ) -> FedAvgRun:
        """Add the server and the clients (or ``only`` those named) to ``sim``.

        Raises:
            ScenarioError: ``setup.resume_dir`` holds a checkpoint of another
                scenario, seed or client set, or an unreadable one.
        """
        secagg = check_secagg(setup)
        if secagg is None:
            sim.faults = plain_round_faults(sim.faults)
        core = FedAvgCore(setup, self.options(setup))
        if setup.resume_dir is not None:
            _resume(core, setup)
        server_here = only is None or SERVER_NAME in only
        run = FedAvgRun(core)
        if server_here:
            run.server = FedAvgServer(core, secagg=secagg, secagg_factory=self.secagg_factory)
            sim.add(run.server)
        for client in setup.clients:
            if only is None or client.name in only:
                sim.add(_client(setup, client, run), name=client.name, daemon=server_here)
        return run


def _client(
    setup: ScenarioSetup, client: ClientSetup, run: FedAvgRun
) -> Callable[[], FedAvgClient]:
    # A factory: a restarted client is a fresh process (fresh state, rejoins).
    def make() -> FedAvgClient:
        actor = FedAvgClient(setup, client)
        run.clients[client.name] = actor
        return actor

    return make


def _resume(core: FedAvgCore, setup: ScenarioSetup) -> None:
    assert setup.resume_dir is not None
    path = checkpoint_path(setup.resume_dir)
    state = read_checkpoint(setup, path, "FedAvg")
    try:
        core.load_state_dict(state["core"])
    except (KeyError, ValueError) as exc:
        raise ScenarioError(f"{path}: checkpoint does not fit this scenario: {exc}") from None


PLUGIN = FedAvgPlugin()
