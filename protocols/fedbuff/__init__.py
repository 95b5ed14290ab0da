"""FedBuff (Nguyen et al. 2022): asynchronous federated learning with a buffer.

Clients train continuously: the server keeps every connected client (or
``concurrency`` of them) busy and gives a client new work as soon as it
replies. Updates go into a buffer, each weighted by how stale it is (how many
server updates were applied since the weights it trained from); every
``buffer_size`` arrivals the server applies their weighted mean through its
optimizer. A client is re-sent the global weights only every
``sync_interval`` server updates; in between it trains again from the global
weights it holds: a training loop decoupled from weight synchronisation.

``rounds`` of a scenario counts server updates; each has a
:class:`~simkit.protocol.RoundRecord`. The logic is :class:`FedBuffCore` (no
I/O); :class:`FedBuffServer` is a thin actor around it; the clients are
:class:`~protocols.fedavg.FedAvgClient` unchanged. Registered as the
``fedbuff`` protocol (``PLUGIN``).
"""

from protocols.fedbuff._core import FedBuffCore, Job
from protocols.fedbuff._options import FedBuffOptions, Staleness, staleness_weight
from protocols.fedbuff._plugin import PLUGIN, FedBuffPlugin, FedBuffRun
from protocols.fedbuff._server import SERVER_NAME, FedBuffServer, checkpoint_path

__all__ = [
    "PLUGIN",
    "SERVER_NAME",
    "FedBuffCore",
    "FedBuffOptions",
    "FedBuffPlugin",
    "FedBuffRun",
    "FedBuffServer",
    "Job",
    "Staleness",
    "checkpoint_path",
    "staleness_weight",
]
