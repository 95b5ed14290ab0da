"""Channels: one interface, several transports (in-memory and TCP)."""

from simkit.channels._base import (
    BrokenChannel,
    Channel,
    ChannelClosed,
    ChannelError,
    ConnectError,
    ConnectRefused,
    Listener,
    OnClose,
    OnMessage,
    Transport,
)
from simkit.channels.memory import (
    Constant,
    Latency,
    LinkModel,
    LogNormal,
    MemoryChannel,
    MemoryListener,
    MemoryNetwork,
    NetworkModel,
    Uniform,
    latency_from_spec,
)
from simkit.channels.tcp import RealTimeOnly, TcpChannel, TcpListener, TcpTransport

__all__ = [
    "BrokenChannel",
    "Channel",
    "ChannelClosed",
    "ChannelError",
    "ConnectError",
    "ConnectRefused",
    "Constant",
    "Latency",
    "LinkModel",
    "Listener",
    "LogNormal",
    "MemoryChannel",
    "MemoryListener",
    "MemoryNetwork",
    "NetworkModel",
    "OnClose",
    "OnMessage",
    "RealTimeOnly",
    "TcpChannel",
    "TcpListener",
    "TcpTransport",
    "Transport",
    "Uniform",
    "latency_from_spec",
]
