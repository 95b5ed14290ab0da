"""SecAgg and SecAgg+ over actors: the drivers of :mod:`simkit.secagg`'s cores.

- :class:`SecAggSettings`: the ``[secagg]`` scenario table, and the defaults
  a round's :class:`~simkit.secagg.SecAggConfig` is built with;
- :func:`secure_sum` (server) runs one round among connected clients and
  returns a :class:`SecureSumOutcome`; :func:`release` tells clients left out
  of a round to stop waiting;
- :func:`secure_contribute` (client) answers one round's stage messages;
- :func:`flatten_fields` / :func:`unflatten_fields`: an aggregate's masked
  fields as the flat vector that is summed, and back; :func:`cap_weight`
  keeps a sample-count weight within the clipping range.

See docs/secagg.md, "Running SecAgg over actors".
"""

from __future__ import annotations

from protocols.secagg._client import secure_contribute
from protocols.secagg._messages import SecAggQuantization
from protocols.secagg._packing import FieldSpec, cap_weight, flatten_fields, unflatten_fields
from protocols.secagg._server import (
    STAGES,
    SecureSumOutcome,
    ServerFactory,
    release,
    secure_sum,
)
from protocols.secagg._settings import SecAggSettings, effective_degree

__all__ = [
    "STAGES",
    "FieldSpec",
    "SecAggQuantization",
    "SecAggSettings",
    "SecureSumOutcome",
    "ServerFactory",
    "cap_weight",
    "effective_degree",
    "flatten_fields",
    "release",
    "secure_contribute",
    "secure_sum",
    "unflatten_fields",
]
