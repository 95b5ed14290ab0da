"""Where a client's SecAgg secrets come from: the seed tree (replayable) or the OS (real).

A virtual run draws keys, self-mask seeds, Shamir coefficients and nonces
from the seed tree, so the same seed replays the same transcript. Over real
sockets the same choice would hand every secret to whoever knows the seed
(``simkit serve`` and ``simkit client`` share ``--seed``): the server
operator could recompute each client's keys and unmask every update. So in
real mode (``Context.virtual`` is false) the secrets come from
``os.urandom`` unless the scenario says ``secagg.keys = "seeded"``, which
prints a one-line warning.

Active mode adds a long-term Ed25519 identity per client, whose public half
the other clients must learn without the server (a PKI). simkit simulates
that PKI with the seed tree: client ``c``'s identity is drawn at
``("actor", c, "secagg", "identity")``, so every client can look up every
other's verification key, and the server is assumed not to (it relays
signatures it cannot forge). A real deployment needs a real PKI.
"""

from __future__ import annotations

import sys
from typing import Final

from protocols.secagg._settings import SecAggSettings
from simkit.rng import SeedTree
from simkit.secagg import ByteSource, Identity, OsEntropy, Registry

__all__ = ["SEEDED_WARNING", "identity_for", "key_source", "registry_for", "warn_if_seeded"]

SEEDED_WARNING: Final = (
    "simkit: warning: secagg.keys = 'seeded' over real sockets: SecAgg keys come from "
    "the shared seed, so the server operator can unmask every update"
)

_warned: list[bool] = []  # once per process: the warning is about the deployment, not a round


def uses_os_keys(settings: SecAggSettings, virtual: bool) -> bool:
    """Whether secrets come from the OS: ``keys = "os"``, or real mode unless ``"seeded"``."""
    if settings.keys is None:
        return not virtual
    return settings.keys == "os"


def key_source(settings: SecAggSettings, virtual: bool, seeds: ByteSource) -> ByteSource:
    """The client's source of secret bytes for a round (see the module doc)."""
    if uses_os_keys(settings, virtual):
        return OsEntropy()
    warn_if_seeded(settings, virtual)
    return seeds


def warn_if_seeded(settings: SecAggSettings, virtual: bool) -> None:
    """Print :data:`SEEDED_WARNING` on stderr once, when seeded keys go over real sockets."""
    if virtual or settings.keys != "seeded" or _warned:
        return
    _warned.append(True)
    sys.stderr.write(SEEDED_WARNING + "\n")


def _identity_seed(seed: int, name: str) -> bytes:
    return SeedTree(seed).child("actor", name).bytes("secagg", "identity")


def identity_for(seeds: SeedTree, name: str) -> Identity:
    """Client ``name``'s long-term identity in the simulated PKI (see the module doc)."""
    return Identity.from_seed(_identity_seed(seeds.seed, name))


def registry_for(seeds: SeedTree) -> Registry:
    """The simulated PKI: any client name -> its Ed25519 verification key."""
    cache: dict[str, bytes] = {}

    def lookup(name: str) -> bytes | None:
        if name not in cache:
            cache[name] = Identity.from_seed(_identity_seed(seeds.seed, name)).public
        return cache[name]

    return lookup
