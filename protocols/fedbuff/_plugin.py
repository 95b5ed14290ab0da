"""The ``fedbuff`` protocol plugin: validate the ``[protocol]`` table, build the actors."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

from protocols._tables import read_checkpoint
from protocols.fedavg import FedAvgClient
from protocols.fedbuff._core import FedBuffCore
from protocols.fedbuff._options import FedBuffOptions
from protocols.fedbuff._server import SERVER_NAME, FedBuffServer, checkpoint_path
from simkit.protocol import ClientSetup, RoundRecord, ScenarioSetup
from simkit.scenario import ScenarioError
from simkit.simulation import Simulation
from simkit.training import ScaffoldClientModule, ScaffoldServerModule, Weights

__all__ = ["PLUGIN", "FedBuffPlugin", "FedBuffRun"]


class FedBuffRun:
    """The handle :meth:`FedBuffPlugin.build` returns: one record per update, final weights."""

    def __init__(self, core: FedBuffCore) -> None:
        self.core = core

    def rounds(self) -> list[RoundRecord]:
        """Every server update so far (those restored from a checkpoint first)."""
        return list(self.core.records)

    def weights(self) -> Weights:
        """The global weights."""
        return self.core.weights


class FedBuffPlugin:
    """Registered under ``simkit.protocols`` as ``fedbuff``."""

    name = "fedbuff"
    checkpoints = True  # --checkpoint / --resume work (the runner asks)

    def validate(self, table: Mapping[str, Any], source: str) -> None:
        """Check the ``[protocol]`` table (see :class:`FedBuffOptions`)."""
        FedBuffOptions.from_table(table, source)

    def options(self, setup: ScenarioSetup) -> FedBuffOptions:
        """The scenario's validated options."""
        return FedBuffOptions.from_table(setup.protocol, setup.name)

    def build(
        self, setup: ScenarioSetup, sim: Simulation, only: Collection[str] | None = None
    ) -> FedBuffRun:
        """Add the server and the clients (or ``only`` those named) to ``sim``.

        Clients are :class:`~protocols.fedavg.FedAvgClient`\\ s: they keep
        the global weights they are sent and train from them when a request
        carries only their version.

        Raises:
            ScenarioError: Secure aggregation or SCAFFOLD asked for (both
                assume synchronous rounds), or ``setup.resume_dir`` holds a
                checkpoint of another scenario, seed or client set, or an
                unreadable one.
        """
        mode = setup.secagg.get("mode", "off")
        if mode != "off":
            raise ScenarioError(
                f"{setup.name}: secagg.mode = {mode!r} is not supported by protocol 'fedbuff' "
                "(secure aggregation needs synchronous rounds)"
            )
        core = FedBuffCore(setup, self.options(setup))
        _refuse_scaffold(setup, core)
        if setup.resume_dir is not None:
            _resume(core, setup)
        server_here = only is None or SERVER_NAME in only
        if server_here:
            sim.add(FedBuffServer(core))
        for client in setup.clients:
            if only is None or client.name in only:
                sim.add(_client(setup, client), name=client.name, daemon=server_here)
        return FedBuffRun(core)


def _client(setup: ScenarioSetup, client: ClientSetup) -> Callable[[], FedAvgClient]:
    # A factory: a restarted client is a fresh process (fresh state, rejoins).
    return lambda: FedAvgClient(setup, client)


def _refuse_scaffold(setup: ScenarioSetup, core: FedBuffCore) -> None:
    client_modules = setup.client_optimizer().modules
    if any(isinstance(m, ScaffoldServerModule) for m in core.optimizer.modules) or any(
        isinstance(m, ScaffoldClientModule) for m in client_modules
    ):
        raise ScenarioError(
            f"{setup.name}: SCAFFOLD is not supported by protocol 'fedbuff' "
            "(its control variates assume synchronous rounds)"
        )


def _resume(core: FedBuffCore, setup: ScenarioSetup) -> None:
    assert setup.resume_dir is not None
    path = checkpoint_path(setup.resume_dir)
    state = read_checkpoint(setup, path, "FedBuff")
    try:
        core.load_state_dict(state["core"])
    except (KeyError, ValueError) as exc:
        raise ScenarioError(f"{path}: checkpoint does not fit this scenario: {exc}") from None


PLUGIN = FedBuffPlugin()
