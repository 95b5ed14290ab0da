"""Actors and raw-socket helpers shared by the TCP tests."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import anyio

from simkit.actors import Actor, Context, PeerGone
from simkit.channels import TcpTransport
from simkit.codec import DecodeError
from simkit.heartbeat import HeartbeatConfig
from simkit.messages import ActionMessage, Join, Message, decode_action, encode_action_bytes
from simkit.simulation import Simulation, SimulationResult


async def wait_until(condition: Callable[[], object], timeout: float = 5.0) -> None:
    """Poll ``condition`` until true (virtual or real seconds)."""
    with anyio.fail_after(timeout):
        while not condition():  # noqa: ASYNC110 (polling plain state, no event to wait on)
            await anyio.sleep(0.002)


@dataclass(frozen=True, slots=True)
class TcpNote(Message):
    n: int


@dataclass(frozen=True, slots=True)
class TcpAck(Message):
    n: int


class Echo(Actor):
    """Answers every TcpNote with a TcpAck until told to stop (n < 0)."""

    def __init__(self, token: str = "") -> None:
        self.name = "server"
        self.token = token
        self.undecodable = 0

    async def run(self, ctx: Context) -> None:
        ctx.listen(token=self.token)
        while True:
            got = await ctx.recv(TcpNote)
            try:
                note = got.decode()
            except DecodeError as exc:  # a hostile payload: log it, go on serving
                self.undecodable += 1
                ctx.log(f"undecodable {got.type} from {got.src}: {exc}")
                continue
            assert isinstance(note, TcpNote)
            if note.n < 0:
                return
            try:
                await ctx.send(got.src, TcpAck(note.n))
            except PeerGone:
                pass


class Pinger(Actor):
    """Sends ``count`` notes, one request/reply each; optionally stops the server."""

    def __init__(
        self, name: str, count: int, gap: float = 0.05, stop: bool = False, token: str = ""
    ) -> None:
        self.name = name
        self.count = count
        self.gap = gap
        self.stop = stop
        self.token = token
        self.acks: list[int] = []

    async def run(self, ctx: Context) -> None:
        await ctx.connect("server", token=self.token)
        for i in range(self.count):
            reply = await ctx.request("server", TcpNote(i), TcpAck, timeout=5)
            ack = reply.decode()
            assert isinstance(ack, TcpAck)
            self.acks.append(ack.n)
            await ctx.sleep(self.gap)
        if self.stop:
            await ctx.send("server", TcpNote(-1))


def frame(msg: ActionMessage) -> bytes:
    """One TCP frame: length prefix and body."""
    body = encode_action_bytes(msg)
    return struct.pack(">I", len(body)) + body


def join_frame(name: str, token: str, version: str = "1.0") -> bytes:
    return frame(Join(name, version, token))


@dataclass
class Reply:
    """What a server sent back before closing: frames, close notice, how it ended."""

    messages: list[ActionMessage] = field(default_factory=list)
    notice: str | None = None
    ended: str = ""  # "eof", "reset" or "timeout"


def parse_reply(data: bytes) -> Reply:
    reply = Reply()
    pos = 0
    while pos + 4 <= len(data):
        (n,) = struct.unpack_from(">I", data, pos)
        pos += 4
        if n == 0:
            (k,) = struct.unpack_from(">H", data, pos)
            reply.notice = data[pos + 2 : pos + 2 + k].decode()
            break
        reply.messages.append(decode_action(data[pos : pos + n]))
        pos += n
    return reply


def attack(
    address: tuple[str, int], data: bytes, *, half_close: bool = True, timeout: float = 5.0
) -> Reply:
    """Send ``data`` on a fresh connection and read what comes back until the server closes."""
    with socket.create_connection(address, timeout=timeout) as sock:
        if data:
            try:
                sock.sendall(data)
            except OSError:
                pass
        if half_close:
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        chunks: list[bytes] = []
        ended = "eof"
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                ended = "timeout"
                break
            except ConnectionResetError:
                ended = "reset"
                break
            if not chunk:
                break
            chunks.append(chunk)
    reply = parse_reply(b"".join(chunks))
    reply.ended = ended
    return reply


@dataclass
class LiveServer:
    sim: Simulation
    transport: TcpTransport
    echo: Echo
    address: tuple[str, int]
    thread: threading.Thread
    result: dict[str, SimulationResult]


@contextmanager
def live_server(
    token: str, /, heartbeat: tuple[float, int] = (0.5, 2), **options: object
) -> Iterator[LiveServer]:
    """An Echo server in real time on its own thread; stopped by an honest client."""
    transport = TcpTransport(**options)  # type: ignore[arg-type]
    sim = Simulation(seed=1, transport=transport, heartbeat=HeartbeatConfig(*heartbeat))
    echo = Echo(token=token)
    sim.add(echo)
    result: dict[str, SimulationResult] = {}
    thread = threading.Thread(target=lambda: result.update(r=sim.run(mode="real")), daemon=True)
    thread.start()
    for _ in range(500):
        address = transport.addresses.get("server")
        if address is not None:
            break
        threading.Event().wait(0.01)
    assert address is not None, "the server did not start listening"
    host, _, port = address.rpartition(":")
    server = LiveServer(sim, transport, echo, (host, int(port)), thread, result)
    try:
        yield server
    finally:
        if thread.is_alive():
            honest_round(server, token, stop=True)
        thread.join(10)
        assert not thread.is_alive(), "the server did not stop"


def honest_round(
    server: LiveServer, token: str, *, stop: bool = False, n: int = 3
) -> list[list[int]]:
    """``n`` honest clients each make 2 requests; returns each one's acks."""
    host, port = server.address
    book = {"server": f"{host}:{port}"}
    sim = Simulation(seed=2, transport=TcpTransport(book), heartbeat=HeartbeatConfig(0.5, 2))
    pingers = [Pinger(f"honest{i}", 2, token=token) for i in range(n)]
    for pinger in pingers:
        sim.add(pinger)
    if stop:
        sim.add(Pinger("stopper", 0, stop=True, token=token), start_at=0.3)
    result = sim.run(mode="real")
    assert not result.errors, result.errors
    return [p.acks for p in pingers]
