"""Gossip averaging: decentralized SGD without a server (D-PSGD, Lian et al. 2017).

Peers on a ring or a seeded random graph each train on their own shard,
send their weights to their neighbours, and average what they hear. A
neighbour that went away or stays silent past ``share_timeout`` is skipped
for the round; a restarted peer redials, catches up with its neighbours'
round and goes on. There is no server: ``simkit run`` and the report work
from the round records the run merges from the peers' views.

The decisions are :class:`GossipCore` (sans-I/O: events in, commands out,
time passed in); :class:`GossipPeer` is a thin actor around it and the
training core. Registered as the ``gossip`` protocol (``PLUGIN``).
"""

from protocols.gossip._core import (
    RETRY,
    Arrived,
    Command,
    Connect,
    Connected,
    Event,
    GossipCore,
    Listen,
    LocalRound,
    Look,
    Peers,
    Record,
    Send,
    Sent,
    Stop,
    Train,
    Trained,
    Wait,
)
from protocols.gossip._graph import Graph, random_graph, ring
from protocols.gossip._messages import Share
from protocols.gossip._options import GossipOptions
from protocols.gossip._peer import GossipPeer
from protocols.gossip._plugin import PLUGIN, GossipPlugin, GossipRun, build_graph

__all__ = [
    "PLUGIN",
    "RETRY",
    "Arrived",
    "Command",
    "Connect",
    "Connected",
    "Event",
    "GossipCore",
    "GossipOptions",
    "GossipPeer",
    "GossipPlugin",
    "GossipRun",
    "Graph",
    "Listen",
    "LocalRound",
    "Look",
    "Peers",
    "Record",
    "Send",
    "Sent",
    "Share",
    "Stop",
    "Train",
    "Trained",
    "Wait",
    "build_graph",
    "random_graph",
    "ring",
]
