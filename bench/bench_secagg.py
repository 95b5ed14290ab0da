"""SecAgg benchmarks (issue 6). Prints one JSON object; asserts nothing.

1. ``mask_expansion``: GB/s of mask generation from a 32-byte seed, for each
   generator, against the raw generator in the same run: numpy
   ``random_raw`` (PCG64, Philox) and AES-256-CTR over zeros through
   ``cryptography``. ``expand`` allocates and returns a reduced mask;
   ``add`` adds a mask into an existing accumulator chunk by chunk (the hot
   path of masking and unmasking). The ratios divide by the faster of the
   two raw baselines: one allocating call, or the same chunks discarded.
2. ``rounds``: one SecAgg / SecAgg+ round driven through the pure cores
   for n in {100, 500}, d in {10^4, 10^5}, no dropout and 10 % of the
   clients dropped after ShareKeys (before their masked input: the costly
   recovery path). CPU seconds (process time) per surviving client and for
   the server, by stage; bytes per stage; expansion against plain FedAvg (a
   float32 vector per client).
3. ``scenarios``: whole runs, each in a fresh interpreter, of
   ``scenarios/secagg.toml``, ``scenarios/secagg_plus.toml`` and FedAvg over
   1,000 clients (``scenarios/scale.toml``, 1 round, d = 1,010) with SecAgg+,
   each beside the same run with ``secagg.mode="off"``.

Usage: ``python bench/bench_secagg.py [--quick]`` (about 10 minutes in
full, mostly SecAgg at n = 500; quick: n = 100, d = 10^4, 200 clients).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from bench_fedavg import run_child  # bench/ is on sys.path when run as a script
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from simkit.codec import packb
from simkit.messages import Message
from simkit.rng import SeedTree
from simkit.secagg import (
    PRGS,
    SecAggClient,
    SecAggConfig,
    SecAggServer,
    add_mask,
    default_degree,
    expand_mask,
)
from simkit.secagg._masking import _CHUNK

SEED = bytes(range(32))
SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"
T = TypeVar("T")
STAGE_NAMES = ("advertise_keys", "share_keys", "masked_input", "unmasking")


def best_seconds(fn: Callable[[], object], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def raw_generator(prg: str, length: int) -> Callable[[], object]:
    """The bare generator, ``length`` uint64 in one call (allocating them)."""
    if prg == "aes-ctr":
        zeros = bytes(8 * length)
        return lambda: Cipher(algorithms.AES(SEED), modes.CTR(bytes(16))).encryptor().update(zeros)
    if prg == "philox":
        return lambda: np.random.Philox(key=1).random_raw(length)
    return lambda: np.random.PCG64(1).random_raw(length)


def raw_chunked(prg: str, length: int) -> Callable[[], object]:
    """The bare generator in the chunks ``add_mask`` uses, discarding each."""

    def run() -> None:
        if prg == "aes-ctr":
            enc = Cipher(algorithms.AES(SEED), modes.CTR(bytes(16))).encryptor()
            zeros, buf = bytes(8 * _CHUNK), bytearray(8 * _CHUNK + 15)
            for _ in range(0, length, _CHUNK):
                enc.update_into(zeros, buf)
            return
        bg = np.random.Philox(key=1) if prg == "philox" else np.random.PCG64(1)
        for _ in range(0, length, _CHUNK):
            bg.random_raw(_CHUNK)

    return run


def bench_masks(length: int, repeats: int) -> dict[str, Any]:
    out: dict[str, Any] = {"length": length}
    acc = np.zeros(length, dtype=np.uint64)
    gb = 8 * length / 1e9
    for prg in PRGS:
        raw_alloc = gb / best_seconds(raw_generator(prg, length), repeats)
        raw_chunks = gb / best_seconds(raw_chunked(prg, length), repeats)
        raw = max(raw_alloc, raw_chunks)
        expand = gb / best_seconds(partial(expand_mask, SEED, length, 62, prg), repeats)
        add = gb / best_seconds(partial(add_mask, acc, SEED, 1, prg), repeats)
        out[prg] = {
            "raw_gb_s": round(raw_alloc, 3),
            "raw_chunked_gb_s": round(raw_chunks, 3),
            "expand_gb_s": round(expand, 3),
            "add_gb_s": round(add, 3),
            "ratio_add_to_raw": round(add / raw, 3),
            "ratio_expand_to_raw": round(expand / raw, 3),
        }
    return out


def _timed(fn: Callable[[], T]) -> tuple[T, float]:
    start = time.process_time()
    out = fn()
    return out, time.process_time() - start


def bench_round(n: int, length: int, mode: str, drop: float, prg: str = "philox") -> dict[str, Any]:
    """One round through the pure cores; ``drop`` of the clients leave after ShareKeys.

    The dropped clients answer AdvertiseKeys and ShareKeys, then never send
    their masked input (they are in ``U2 \\ U3``): the expensive case, where
    the survivors reveal shares of each one's ``s_sk`` and the server
    rebuilds it and removes one pairwise mask per surviving neighbour.
    CPU is process time, summed per client over the stages it ran.
    """
    names = [f"c{i:04d}" for i in range(n)]
    k = default_degree(n)
    degree = n - 1 if mode == "secagg" else min(n - 1, k + k % 2)
    config = SecAggConfig(
        threshold=degree // 2 + 1,
        bits=32,
        length=length,
        mode=mode,  # type: ignore[arg-type]
        prg=prg,  # type: ignore[arg-type]
    )
    server = SecAggServer(config, names, SeedTree(1))
    rng = SeedTree(2).numpy("inputs")
    clients = {
        n_: SecAggClient(n_, SeedTree(1), rng.integers(0, 2**32, length, dtype=np.uint64))
        for n_ in names
    }
    dropped = set(rng.choice(names, size=int(drop * n), replace=False).tolist())
    cpu = dict.fromkeys(names, 0.0)
    client_stage = dict.fromkeys(STAGE_NAMES, 0.0)
    server_stage = dict.fromkeys(STAGE_NAMES, 0.0)
    up = dict.fromkeys(STAGE_NAMES, 0)
    down = dict.fromkeys(STAGE_NAMES, 0)
    traffic = dict.fromkeys(names, 0)  # bytes sent + received per client
    sends: dict[str, Message]
    sends, server_stage["advertise_keys"] = _timed(server.start)
    for stage, label in enumerate(STAGE_NAMES, 1):
        replies = {}
        for name, msg in sends.items():
            size = len(packb(msg))
            down[label] += size
            traffic[name] += size
            if name in dropped and stage == 3:  # gone after ShareKeys: no masked input
                continue
            reply, seconds = _timed(partial(clients[name].receive, msg))
            cpu[name] += seconds
            client_stage[label] += seconds
            if reply is not None:
                size = len(packb(reply))
                up[label] += size
                traffic[name] += size
                replies[name] = reply
        alive = [c for c in names if not (c in dropped and stage >= 3)]
        sends, server_stage[label] = _timed(partial(server.step, replies, alive))
        if server.result is not None:
            break
    result = server.result
    if result is None or not result.ok:
        raise RuntimeError(f"the benchmark round did not complete: {result}")
    survivors, sizes = result.survivors, [len(u) for u in server.survivors]
    if sizes != [n, n, n - len(dropped), n - len(dropped)] or set(survivors) & dropped:
        raise RuntimeError(f"the dropped clients are not exactly U2 \\ U3: {sizes}")
    vector = 4 * length  # one float32 update in the clear (plain FedAvg upload)
    per_survivor = [cpu[s] for s in survivors]
    mean_traffic = sum(traffic[s] for s in survivors) / len(survivors)
    return {
        "n": n,
        "d": length,
        "mode": mode,
        "prg": prg,
        "degree": server.graph.degree,
        "threshold": config.threshold,
        "dropout": drop,
        "dropped_after_share_keys": len(dropped),
        "stage_sizes": sizes,
        "client_cpu_s": round(sum(per_survivor) / len(per_survivor), 4),
        "client_cpu_max_s": round(max(per_survivor), 4),
        "client_cpu_by_stage_s": {k_: round(v / n, 4) for k_, v in client_stage.items()},
        "server_cpu_s": round(sum(server_stage.values()), 4),
        "server_cpu_by_stage_s": {k_: round(v, 4) for k_, v in server_stage.items()},
        "bytes_up": up,
        "bytes_down": down,
        # what the server receives, against the float32 uploads of the same summed clients
        "expansion_upload": round(sum(up.values()) / (vector * len(survivors)), 3),
        # a surviving client's traffic, sent and received, over its vector sent in the clear
        "expansion_client": round(mean_traffic / vector, 3),
    }


def run_scenario_child(path: str, overrides: list[str]) -> dict[str, Any]:
    """One ``run_scenario`` in a fresh interpreter (wall and CPU include imports)."""
    report = run_child(overrides, SCENARIOS / path)
    return {"scenario": path, "overrides": overrides, **report}


def bench_scenarios(clients: int) -> list[dict[str, Any]]:
    """Whole FedAvg runs with SecAgg / SecAgg+ and with ``secagg.mode="off"``."""
    off = ['secagg.mode="off"']
    scale = [f"clients.count={clients}", "rounds=1"]
    cases = [
        ("secagg.toml", []),
        ("secagg.toml", off),
        ("secagg_plus.toml", []),
        ("secagg_plus.toml", off),
        ("scale.toml", [*scale, 'secagg.mode="secagg+"']),
        ("scale.toml", scale),
    ]
    return [run_scenario_child(path, overrides) for path, overrides in cases]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one repeat")
    args = parser.parse_args()
    length = 10**6 if args.quick else 10**7
    repeats = 2 if args.quick else 5
    report: dict[str, Any] = {"mask_expansion": bench_masks(length, repeats)}
    sizes = [(100, 10**4)] if args.quick else [(n, d) for n in (100, 500) for d in (10**4, 10**5)]
    bench_round(20, 1000, "secagg", 0.1)  # warm-up: first key agreements, imports, caches
    report["rounds"] = [
        bench_round(n, d, mode, drop)
        for n, d in sizes
        for mode in ("secagg", "secagg+")
        for drop in (0.0, 0.1)
    ]
    # The costliest case again with the fastest generator here (AES-NI).
    n, d = sizes[-1]
    report["rounds"].append(bench_round(n, d, "secagg", 0.1, prg="aes-ctr"))
    report["scenarios"] = bench_scenarios(200 if args.quick else 1000)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
