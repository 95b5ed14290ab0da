"""TCP channel benchmarks (issue 7). Prints one JSON object; asserts nothing.

1. ``big_update``: one 100 MB update (a float32 array in a ``Send`` payload)
   over loopback TCP through simkit channels (sender and receiver each on
   their own thread and event loop, as two processes would be), against, in
   the same run, raw blocking sockets doing ``sendall`` / ``recv_into`` into
   a preallocated buffer on two threads. ``ratio`` is raw time / simkit time
   (the target is >= 0.7).
2. ``heartbeats``: 500 client actors joined to one server actor over TCP,
   idle but for 1 s heartbeats (3 misses), for ``--duration`` seconds (60 by
   default): false dropouts (any ``peer_down``) and CPU seconds.

Usage: ``python bench/bench_tcp.py [--quick] [--duration S] [--clients N] [--mb M]``
"""

from __future__ import annotations

import argparse
import json
import resource
import socket
import statistics
import threading
import time
from dataclasses import dataclass
from typing import Any

import anyio
import numpy as np

from simkit.actors import Actor, Context
from simkit.channels import Channel, TcpTransport
from simkit.heartbeat import HeartbeatConfig
from simkit.messages import ActionMessage, Message, Send
from simkit.simulation import Simulation


@dataclass(frozen=True, slots=True)
class BenchUpdate(Message):
    round: int
    weights: np.ndarray


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# ----------------------------------------------------------------------------- big update


def simkit_transfers(array: np.ndarray, repeats: int) -> list[float]:
    """Seconds per transfer of ``array`` through a TcpChannel (sender thread -> receiver)."""
    address: list[str] = []
    ready = threading.Event()
    arrived: list[float] = []
    done = threading.Event()
    stop = threading.Event()

    async def receiver() -> None:
        # No Join here, so the first frame is the update itself.
        transport = TcpTransport(max_body=2**31 - 1, max_first_body=2**31 - 1)
        listener = transport.listen("receiver", "127.0.0.1:0")
        address.append(listener.address)

        def on_message(msg: ActionMessage) -> None:
            assert isinstance(msg, Send)
            update = msg.payload.decode()  # type: ignore[union-attr]
            assert isinstance(update, BenchUpdate)
            assert update.weights.nbytes == array.nbytes
            arrived.append(time.perf_counter())
            done.set()

        def on_accept(channel: Channel) -> None:
            channel.start(on_message, lambda reason: None)

        listener.start(on_accept)
        ready.set()
        await anyio.to_thread.run_sync(stop.wait)
        await transport.aclose()

    thread = threading.Thread(target=anyio.run, args=(receiver,))
    thread.start()
    ready.wait()
    times: list[float] = []

    async def sender() -> None:
        transport = TcpTransport(max_body=2**31 - 1)
        channel = await transport.connect("sender", address[0])
        channel.start(lambda msg: None, lambda reason: None)
        for i in range(repeats + 1):  # the first one warms up
            done.clear()
            start = time.perf_counter()
            await channel.send(Send("BenchUpdate", BenchUpdate(i, array)))
            await anyio.to_thread.run_sync(done.wait)
            if i:
                times.append(arrived[-1] - start)
        channel.close("done")
        await transport.aclose()

    anyio.run(sender)
    stop.set()
    thread.join()
    return times


def raw_transfers(nbytes: int, repeats: int) -> list[float]:
    """Seconds per transfer of ``nbytes`` with blocking sendall / recv_into on two threads."""
    payload = memoryview(np.ones(nbytes, dtype=np.uint8).data)
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        arrived: list[float] = []

        def receive(conn: socket.socket) -> None:
            buf = bytearray(nbytes)  # preallocated once, as a tuned receiver would
            view = memoryview(buf)
            for _ in range(repeats + 1):
                header = conn.recv(4, socket.MSG_WAITALL)
                size = int.from_bytes(header, "big")
                got = 0
                while got < size:
                    got += conn.recv_into(view[got:size])
                arrived.append(time.perf_counter())
                conn.sendall(b"k")

        with socket.create_connection(("127.0.0.1", port)) as client:
            conn, _ = server.accept()
            with conn:
                thread = threading.Thread(target=receive, args=(conn,))
                thread.start()
                times = []
                for i in range(repeats + 1):
                    start = time.perf_counter()
                    client.sendall(nbytes.to_bytes(4, "big"))
                    client.sendall(payload)
                    client.recv(1)
                    if i:
                        times.append(arrived[i] - start)
                thread.join()
    return times


def big_update(mb: int, repeats: int) -> dict[str, Any]:
    array = np.random.default_rng(0).random(mb * 2**20 // 4, dtype=np.float32)
    raw = raw_transfers(array.nbytes, repeats)
    ours = simkit_transfers(array, repeats)
    raw_s, ours_s = statistics.median(raw), statistics.median(ours)
    return {
        "bytes": array.nbytes,
        "repeats": repeats,
        "simkit_s": round(ours_s, 4),
        "raw_s": round(raw_s, 4),
        "simkit_gb_s": round(array.nbytes / ours_s / 1e9, 3),
        "raw_gb_s": round(array.nbytes / raw_s / 1e9, 3),
        "ratio": round(raw_s / ours_s, 3),
        "simkit_all_s": [round(t, 4) for t in ours],
        "raw_all_s": [round(t, 4) for t in raw],
    }


# ----------------------------------------------------------------------------- heartbeats


class IdleServer(Actor):
    name = "server"

    def __init__(self, clients: int, duration: float) -> None:
        self.clients = clients
        self.duration = duration
        self.joined_after = 0.0

    async def run(self, ctx: Context) -> None:
        ctx.listen()
        start = ctx.now()
        await ctx.wait_for_peers(self.clients, timeout=120)
        self.joined_after = ctx.now() - start
        await ctx.sleep(self.duration)


class IdleClient(Actor):
    def __init__(self, name: str, lifetime: float) -> None:
        self.name = name
        self.lifetime = lifetime

    async def run(self, ctx: Context) -> None:
        for _attempt in range(50):
            try:
                await ctx.connect("server", timeout=30)
                break
            except OSError:
                await ctx.sleep(0.2)
        await ctx.sleep(self.lifetime)


def heartbeats(clients: int, duration: float) -> dict[str, Any]:
    hb = HeartbeatConfig(interval=1.0, misses=3)
    sim = Simulation(seed=0, transport=TcpTransport(), heartbeat=hb)
    server = IdleServer(clients, duration)
    sim.add(server)
    for i in range(clients):
        # Clients outlive the server's watch, so every peer_down seen in it is false.
        sim.add(IdleClient(f"c{i:04d}", duration + 60), daemon=True, start_at=0.1)
    cpu0, wall0 = _cpu(), time.perf_counter()
    result = sim.run(mode="real")
    cpu, wall = _cpu() - cpu0, time.perf_counter() - wall0
    events = result.trace.events
    # The server's orderly goodbye ("left: ...") at the end is no dropout.
    downs = [e for e in events if e.kind == "peer_down" and not e.info.startswith("left:")]
    joined = sum(1 for e in events if e.kind == "peer_up" and e.src == "server")
    return {
        "clients": clients,
        "heartbeat_interval_s": hb.interval,
        "misses": hb.misses,
        "watched_s": duration,
        "joined_after_s": round(server.joined_after, 3),
        "joined": joined,
        "false_dropouts": len(downs),
        "dropout_reasons": sorted({e.info for e in downs})[:5],
        "errors": len(result.errors),
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "cpu_fraction_of_one_core": round(cpu / wall, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short run (10 s, 3 repeats)")
    parser.add_argument("--duration", type=float, default=None, help="heartbeat watch, s (60)")
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--mb", type=int, default=100, help="update size in MiB (100)")
    parser.add_argument("--repeats", type=int, default=None)
    args = parser.parse_args()
    duration = args.duration if args.duration is not None else (10.0 if args.quick else 60.0)
    repeats = args.repeats if args.repeats is not None else (3 if args.quick else 5)
    report = {
        "big_update": big_update(args.mb, repeats),
        "heartbeats": heartbeats(args.clients, duration),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
