"""The errors of the SecAgg primitives and protocol cores.

As in h11, errors say which side is at fault: :class:`SecAggLocalError` when
this core was driven wrongly (a message for another stage, a second input),
:class:`SecAggRemoteError` when the peer sent something the protocol forbids.
A round that cannot complete because too few clients survive is *not* an
error: the cores abort and report the reason (see ``SecAggResult``).
"""

from __future__ import annotations

__all__ = [
    "SecAggCryptoError",
    "SecAggError",
    "SecAggLocalError",
    "SecAggRemoteError",
]


class SecAggError(Exception):
    """Base of the SecAgg errors."""


class SecAggLocalError(SecAggError):
    """This core was used wrongly (wrong stage, wrong arguments)."""


class SecAggRemoteError(SecAggError):
    """A peer sent a message the protocol forbids, naming the peer and the problem."""


class SecAggCryptoError(SecAggError):
    """A key agreement or decryption failed: bad public key, forged or misrouted ciphertext."""
