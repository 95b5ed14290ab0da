"""SecAgg benchmarks (issue 6). Prints one JSON object; asserts nothing.

1. ``mask_expansion``: GB/s of mask generation from a 32-byte seed, for each
   generator, against the raw generator in the same run: numpy
   ``random_raw`` (PCG64, Philox) and AES-256-CTR over zeros through
   ``cryptography``. ``expand`` allocates and returns a reduced mask;
   ``add`` adds a mask into an existing accumulator chunk by chunk (the hot
   path of masking and unmasking). The ratios divide by the faster of the
   two raw baselines: one allocating call, or the same chunks discarded.
2. ``rounds``: one SecAgg / SecAgg+ round driven through the pure cores:
   CPU seconds per client and for the server, and bytes sent per stage
   against plain FedAvg (a float32 vector per client).

Usage: ``python bench/bench_secagg.py [--quick]``
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np
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
        expand = gb / best_seconds(lambda p=prg: expand_mask(SEED, length, 62, p), repeats)
        add = gb / best_seconds(lambda p=prg: add_mask(acc, SEED, 1, p), repeats)
        out[prg] = {
            "raw_gb_s": round(raw_alloc, 3),
            "raw_chunked_gb_s": round(raw_chunks, 3),
            "expand_gb_s": round(expand, 3),
            "add_gb_s": round(add, 3),
            "ratio_add_to_raw": round(add / raw, 3),
            "ratio_expand_to_raw": round(expand / raw, 3),
        }
    return out


def bench_round(n: int, length: int, mode: str, drop: float) -> dict[str, Any]:
    names = [f"c{i:04d}" for i in range(n)]
    k = default_degree(n)
    degree = n - 1 if mode == "secagg" else min(n - 1, k + k % 2)
    config = SecAggConfig(threshold=degree // 2 + 1, bits=32, length=length, mode=mode)  # type: ignore[arg-type]
    server = SecAggServer(config, names, SeedTree(1))
    rng = SeedTree(2).numpy("inputs")
    clients = {
        n_: SecAggClient(n_, SeedTree(1), rng.integers(0, 2**32, length, dtype=np.uint64))
        for n_ in names
    }
    dropped = set(rng.choice(names, size=int(drop * n), replace=False).tolist())
    client_cpu = server_cpu = 0.0
    up = dict.fromkeys(STAGE_NAMES, 0)
    down = dict.fromkeys(STAGE_NAMES, 0)
    start = time.process_time()
    sends: dict[str, Message] = server.start()
    server_cpu += time.process_time() - start
    for stage, label in enumerate(STAGE_NAMES, 1):
        replies = {}
        for name, msg in sends.items():
            down[label] += len(packb(msg))
            if name in dropped and stage == 3:  # drop after sharing keys: the costly case
                continue
            start = time.process_time()
            reply = clients[name].receive(msg)
            client_cpu += time.process_time() - start
            if reply is not None:
                up[label] += len(packb(reply))
                replies[name] = reply
        alive = [c for c in names if not (c in dropped and stage >= 3)]
        start = time.process_time()
        sends = server.step(replies, alive)
        server_cpu += time.process_time() - start
        if server.result is not None:
            break
    if server.result is None or not server.result.ok:
        raise RuntimeError(f"the benchmark round did not complete: {server.result}")
    plain = 4 * length * len(server.result.survivors)  # float32 inputs of the same clients
    return {
        "n": n,
        "d": length,
        "mode": mode,
        "degree": server.graph.degree,
        "threshold": config.threshold,
        "dropout": drop,
        "client_cpu_s": round(client_cpu / n, 4),
        "server_cpu_s": round(server_cpu, 4),
        "bytes_up": up,
        "bytes_down": down,
        "expansion_vs_fedavg_upload": round(sum(up.values()) / plain, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one repeat")
    args = parser.parse_args()
    length = 10**6 if args.quick else 10**7
    repeats = 2 if args.quick else 5
    report: dict[str, Any] = {"mask_expansion": bench_masks(length, repeats)}
    # SecAgg (complete graph) at n = 500 takes minutes in one process: SecAgg+ only there.
    cases = [(100, 10**4, "secagg"), (100, 10**4, "secagg+")]
    if not args.quick:
        cases += [(100, 10**5, "secagg"), (100, 10**5, "secagg+"), (500, 10**4, "secagg+")]
    report["rounds"] = [
        bench_round(n, d, mode, drop) for n, d, mode in cases for drop in (0.0, 0.1)
    ]
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
