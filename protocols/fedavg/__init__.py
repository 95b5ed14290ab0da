"""FedAvg (McMahan et al. 2017) and its family as simkit actors.

The server samples clients each round (seeded), sends the global weights to
those that lack them, waits for replies until the round deadline, aggregates
with the scenario's aggregator and server optimizer (FedAvg, FedProx,
FedAvgM, FedAdam/FedYogi/FedAdagrad, SCAFFOLD, robust aggregators) and
evaluates every ``eval_every`` rounds. Dropouts are seen through heartbeats
and deadlines; late replies are counted and discarded; restarted clients
rejoin. The server checkpoints after every round and a run resumes from it.

The round logic is :class:`FedAvgCore` (no I/O); :class:`FedAvgServer` and
:class:`FedAvgClient` are thin actors around it and the training core.
Registered as the ``fedavg`` protocol (``PLUGIN``).
"""

from protocols.fedavg._client import FedAvgClient, client_checkpoint_path
from protocols.fedavg._core import FedAvgCore, RoundOutcome
from protocols.fedavg._options import FedAvgOptions
from protocols.fedavg._plugin import PLUGIN, FedAvgPlugin, FedAvgRun
from protocols.fedavg._privacy import GaussianMechanism
from protocols.fedavg._server import SERVER_NAME, FedAvgServer, checkpoint_path
from protocols.fedavg._strategy import ClientMod, NoOptions, Strategy

__all__ = [
    "PLUGIN",
    "SERVER_NAME",
    "ClientMod",
    "FedAvgClient",
    "FedAvgCore",
    "FedAvgOptions",
    "FedAvgPlugin",
    "FedAvgRun",
    "FedAvgServer",
    "GaussianMechanism",
    "NoOptions",
    "RoundOutcome",
    "Strategy",
    "checkpoint_path",
    "client_checkpoint_path",
]
