"""Runtime benchmarks (issue 3). Prints one JSON object; asserts nothing.

1. ``messages``: small messages per second through simkit (encode, seeded
   network, trace on, deliver, decode) against, in the same run, a bare anyio
   memory object stream carrying msgpack-packed payloads of the same size.
2. ``big_array``: one 10^7-element float32 array across the in-memory channel,
   against ``np.copy`` of the same array (the channel makes one copy).
3. ``heartbeats``: 100 actors heartbeating every second for one virtual hour.

Usage: ``python bench/bench_runtime.py [--quick]``
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.lowlevel
import msgpack
import numpy as np

from simkit.actors import Actor, Context
from simkit.heartbeat import HeartbeatConfig
from simkit.messages import Message
from simkit.runtime import run
from simkit.simulation import Simulation
from simkit.trace import Trace


@dataclass(frozen=True, slots=True)
class Blob(Message):
    seq: int
    data: bytes


@dataclass(frozen=True, slots=True)
class Tensor(Message):
    array: np.ndarray


class Sink(Actor):
    name = "sink"

    def __init__(self, count: int) -> None:
        self.count = count
        self.total = 0

    async def run(self, ctx: Context) -> None:
        ctx.listen()
        for _ in range(self.count):
            got = await ctx.recv()
            msg = got.decode()
            self.total += getattr(msg, "seq", 1)


class Source(Actor):
    name = "source"

    def __init__(self, messages: list[Message]) -> None:
        self.messages = messages

    async def run(self, ctx: Context) -> None:
        await ctx.connect("sink")
        for i, msg in enumerate(self.messages):
            ctx.send_nowait("sink", msg)
            if i % 64 == 63:
                await anyio.lowlevel.checkpoint()
        await ctx.sleep(1e6)


def simkit_messages(n: int, size: int, trace_heartbeats: bool = True) -> dict[str, Any]:
    payload = bytes(size)
    msgs: list[Message] = [Blob(i, payload) for i in range(n)]
    sim = Simulation(seed=1, trace=Trace(keep=True, heartbeats=trace_heartbeats))
    sink = Sink(n)
    sim.add(sink)
    sim.add(Source(msgs), daemon=True)
    t0, c0 = time.perf_counter(), time.process_time()
    result = sim.run()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    sends = [e for e in result.trace.events if e.kind == "send" and e.type == "Blob"]
    return {"wall_s": wall, "per_s": n / wall, "per_cpu_s": n / cpu, "frame_bytes": sends[0].nbytes}


def bare_stream_messages(n: int, size: int, virtual: bool) -> dict[str, Any]:
    payload = bytes(size)

    async def main() -> float:
        send, receive = anyio.create_memory_object_stream[bytes](max_buffer_size=float("inf"))
        total = 0

        async def consumer() -> None:
            nonlocal total
            async with receive:
                async for raw in receive:
                    total += msgpack.unpackb(raw)["seq"]

        t0 = time.perf_counter()
        async with anyio.create_task_group() as tg:
            tg.start_soon(consumer)
            async with send:
                for i in range(n):
                    send.send_nowait(msgpack.packb({"seq": i, "data": payload}))
                    if i % 64 == 63:
                        await anyio.lowlevel.checkpoint()
        return time.perf_counter() - t0

    c0 = time.process_time()
    wall = run(main, mode="virtual" if virtual else "real")
    cpu = time.process_time() - c0
    return {"wall_s": wall, "per_s": n / wall, "per_cpu_s": n / cpu}


class TimedSink(Actor):
    """Receives ``count`` arrays and notes the wall time of the last decode."""

    name = "sink"

    def __init__(self, count: int) -> None:
        self.count = count
        self.done_at = 0.0

    async def run(self, ctx: Context) -> None:
        ctx.listen()
        for _ in range(self.count):
            tensor = (await ctx.recv(Tensor)).decode()
            assert isinstance(tensor, Tensor)
        self.done_at = time.perf_counter()


class TimedSource(Actor):
    """Sends ``count`` arrays once connected and notes the wall time it started."""

    name = "source"

    def __init__(self, arr: np.ndarray, count: int) -> None:
        self.arr = arr
        self.count = count
        self.started_at = 0.0

    async def run(self, ctx: Context) -> None:
        await ctx.connect("sink")
        self.started_at = time.perf_counter()
        for _ in range(self.count):
            ctx.send_nowait("sink", Tensor(self.arr))
        await ctx.sleep(1e6)


def big_array(n: int, repeat: int = 5) -> dict[str, Any]:
    """One transfer = one copy of the array into a fresh buffer (the body).

    Two baselines: ``np.copyto`` into a buffer reused every time (memory
    bandwidth alone) and ``np.copy`` into fresh buffers kept alive, as the
    channel's bodies are until decoded (bandwidth plus page faults of new
    memory) — the cost of exactly one copy.
    """
    arr = np.arange(n, dtype=np.float32)
    out: dict[str, Any] = {"elements": n, "bytes": arr.nbytes}
    dst = np.empty_like(arr)
    np.copyto(dst, arr)
    t0 = time.perf_counter()
    for _ in range(repeat):
        np.copyto(dst, arr)
    warm_s = (time.perf_counter() - t0) / repeat
    out["memcpy_warm_GBps"] = arr.nbytes / warm_s / 1e9
    t0 = time.perf_counter()
    kept = [np.copy(arr) for _ in range(repeat)]
    copy_s = (time.perf_counter() - t0) / repeat
    del kept
    out["np_copy_fresh_GBps"] = arr.nbytes / copy_s / 1e9
    for digests in (False, True):
        sim = Simulation(seed=1)
        sim.transport.digests = digests  # type: ignore[attr-defined]
        sink, source = TimedSink(repeat), TimedSource(arr, repeat)
        sim.add(sink)
        sim.add(source, daemon=True)
        sim.run()
        per_transfer = (sink.done_at - source.started_at) / repeat
        key = "channel_with_digest" if digests else "channel"
        out[f"{key}_GBps"] = arr.nbytes / per_transfer / 1e9
        out[f"{key}_vs_np_copy_fresh"] = copy_s / per_transfer
        out[f"{key}_vs_memcpy_warm"] = warm_s / per_transfer
    return out


class Idle(Actor):
    def __init__(self, name: str, server: bool) -> None:
        self.name = name
        self.server = server

    async def run(self, ctx: Context) -> None:
        if self.server:
            ctx.listen()
        else:
            await ctx.connect("hub")
        await ctx.sleep(1e9)


def heartbeats(actors: int, seconds: float, keep: bool) -> dict[str, Any]:
    sim = Simulation(seed=1, heartbeat=HeartbeatConfig(1.0, 3), trace=Trace(keep=keep))
    sim.add(Idle("hub", True), daemon=True)
    for i in range(actors - 1):
        sim.add(Idle(f"n{i:03d}", False), daemon=True)
    t0 = time.perf_counter()
    result = sim.run(until=seconds)
    wall = time.perf_counter() - t0
    stats = result.trace.stats()
    downs = result.trace.count("peer_down")
    return {
        "actors": actors,
        "virtual_s": seconds,
        "wall_s": wall,
        "messages": stats["messages"],
        "messages_per_s": stats["messages"] / wall,
        "false_dropouts": downs,
        "trace_kept": keep,
    }


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median rate."""
    return sorted(runs, key=lambda r: float(r["per_s"]))[len(runs) // 2]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    parser.add_argument("--repeat", type=int, default=5, help="message runs (median kept)")
    args = parser.parse_args()
    n = 20_000 if args.quick else 100_000
    size = 200 - 20  # payload bytes, so that the encoded message is ~200 bytes
    trials = []  # interleaved, so that machine noise hits every side alike
    for _ in range(args.repeat):
        trials.append(
            (
                simkit_messages(n, size),
                bare_stream_messages(n, size, virtual=True),
                bare_stream_messages(n, size, virtual=False),
            )
        )
    ours, bare_virtual, bare_real = (_median_run([trial[i] for trial in trials]) for i in range(3))
    report: dict[str, Any] = {
        "messages": {
            "count": n,
            "repeats": args.repeat,
            "simkit": ours,
            "bare_anyio_stream_virtual_loop": bare_virtual,
            "bare_anyio_stream_asyncio_loop": bare_real,
            "ratio_vs_bare_virtual": ours["per_s"] / bare_virtual["per_s"],
            "ratio_vs_bare_asyncio": ours["per_s"] / bare_real["per_s"],
            # CPU time: steadier than wall time on a shared machine
            "cpu_ratio_vs_bare_virtual": ours["per_cpu_s"] / bare_virtual["per_cpu_s"],
        },
        "big_array": big_array(10**6 if args.quick else 10**7),
        "heartbeats": heartbeats(100, 600.0 if args.quick else 3600.0, keep=False),
        "peak_rss_MiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
