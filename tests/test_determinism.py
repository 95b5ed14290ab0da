"""A seed names a run: same digest across processes and hash seeds."""

from __future__ import annotations

import os
import subprocess
import sys

CODE = """
import sys
from simkit.demo import build_demo
from simkit.channels import LinkModel, LogNormal, NetworkModel
sim = build_demo(int(sys.argv[1]))
# Make the network lossy too: random latencies, losses and crashes all in one run.
sim.transport.model = NetworkModel(LinkModel(latency=LogNormal(0.05, 0.8), loss=0.05))
print(sim.run().digest)
"""


def digest_in_subprocess(seed: int, hashseed: str) -> str:
    env = {**os.environ, "PYTHONHASHSEED": hashseed}
    out = subprocess.run(
        [sys.executable, "-c", CODE, str(seed)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        timeout=120,
    )
    return out.stdout.strip().splitlines()[-1]


def test_same_seed_same_digest_whatever_the_hash_seed() -> None:
    digests = {digest_in_subprocess(7, hashseed) for hashseed in ("0", "1", "4242")}
    assert len(digests) == 1
    (digest,) = digests
    assert len(digest) == 64


def test_another_seed_gives_another_digest() -> None:
    assert digest_in_subprocess(7, "0") != digest_in_subprocess(8, "0")
