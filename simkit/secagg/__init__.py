"""Secure aggregation: SecAgg (Bonawitz et al. 2017) and SecAgg+ (Bell et al. 2020).

The primitives (quantization, Shamir sharing, X25519 + HKDF + AES-GCM, mask
expansion, masked sum and unmasking) and the pure, sans-I/O protocol cores
(:class:`SecAggClient`, :class:`SecAggServer`) that drivers feed. Keys,
seeds, nonces and the SecAgg+ graph all come from the seed tree, so a run
replays exactly. See ``docs/secagg.md``.
"""

from __future__ import annotations

from simkit.secagg._client import SecAggClient
from simkit.secagg._crypto import (
    KEY_BYTES,
    NONCE_BYTES,
    ByteSource,
    KeyPair,
    OsEntropy,
    agree,
    decrypt,
    encrypt,
    encryption_key,
    mask_seed,
)
from simkit.secagg._design import DESIGN_ABORT_RATE, DESIGN_DROPOUT, abort_bound, degree_for
from simkit.secagg._errors import (
    SecAggCryptoError,
    SecAggError,
    SecAggLocalError,
    SecAggRemoteError,
)
from simkit.secagg._graph import DEGREE_TABLE, NeighbourGraph, default_degree
from simkit.secagg._masking import (
    DEFAULT_PRG,
    PRGS,
    Prg,
    add_mask,
    expand_mask,
    mask_input,
    pair_sign,
    sum_masked,
    unmask_sum,
    wire_dtype,
)
from simkit.secagg._messages import (
    SecAggAbort,
    SecAggAdvertiseKeys,
    SecAggCiphertexts,
    SecAggConfig,
    SecAggKeyList,
    SecAggMaskedInput,
    SecAggResult,
    SecAggSetup,
    SecAggShareKeys,
    SecAggStage,
    SecAggUnmaskRequest,
    SecAggUnmaskShares,
)
from simkit.secagg._quantize import MAX_BITS, Quantizer
from simkit.secagg._server import SecAggServer
from simkit.secagg._shamir import (
    SECRET_BYTES,
    SHAMIR_PRIME,
    SHARE_BYTES,
    ShamirError,
    Share,
    interpolate_at_zero,
    reconstruct_secret,
    split_secret,
)

__all__ = [
    "DESIGN_ABORT_RATE",
    "DESIGN_DROPOUT",
    "DEFAULT_PRG",
    "DEGREE_TABLE",
    "KEY_BYTES",
    "MAX_BITS",
    "NONCE_BYTES",
    "PRGS",
    "SECRET_BYTES",
    "SHAMIR_PRIME",
    "SHARE_BYTES",
    "ByteSource",
    "KeyPair",
    "NeighbourGraph",
    "OsEntropy",
    "Prg",
    "Quantizer",
    "SecAggAbort",
    "SecAggAdvertiseKeys",
    "SecAggCiphertexts",
    "SecAggClient",
    "SecAggConfig",
    "SecAggCryptoError",
    "SecAggError",
    "SecAggKeyList",
    "SecAggLocalError",
    "SecAggMaskedInput",
    "SecAggRemoteError",
    "SecAggResult",
    "SecAggServer",
    "SecAggSetup",
    "SecAggShareKeys",
    "SecAggStage",
    "SecAggUnmaskRequest",
    "SecAggUnmaskShares",
    "ShamirError",
    "Share",
    "abort_bound",
    "add_mask",
    "agree",
    "decrypt",
    "default_degree",
    "degree_for",
    "encrypt",
    "encryption_key",
    "expand_mask",
    "interpolate_at_zero",
    "mask_input",
    "mask_seed",
    "pair_sign",
    "reconstruct_secret",
    "split_secret",
    "sum_masked",
    "unmask_sum",
    "wire_dtype",
]
