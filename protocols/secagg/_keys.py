"""Where a client's SecAgg secrets come from: the seed tree (replayable) or the OS (real).

A virtual run draws keys, self-mask seeds, Shamir coefficients and nonces
from the seed tree, so the same seed replays the same transcript. Over real
sockets the same choice would hand every secret to whoever knows the seed
(``simkit serve`` and ``simkit client`` share ``--seed``): the server
operator could recompute each client's keys and unmask every update. So in
real mode (``Context.virtual`` is false) the secrets come from
``os.urandom`` unless the scenario says ``secagg.keys = "seeded"``, which
prints a one-line warning.
"""

from __future__ import annotations

import sys
from typing import Final

from protocols.secagg._settings import SecAggSettings
from simkit.secagg import ByteSource, OsEntropy

__all__ = ["SEEDED_WARNING", "key_source", "warn_if_seeded"]

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
