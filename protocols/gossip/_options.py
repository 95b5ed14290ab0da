"""The ``[protocol]`` table of a gossip scenario."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = ["GossipOptions"]


class GossipOptions(BaseModel):
    """How peers are linked and how long they wait for each other.

    Attributes:
        topology: ``"ring"`` (each peer linked to its ``degree // 2`` next and
            previous peers by name) or ``"random"`` (the union of ``degree // 2``
            seeded random cycles through the peers).
        degree: Neighbours per peer (at most; even: an odd one is rounded down).
        share_timeout: Seconds a peer waits for its neighbours' shares after
            sending its own; a neighbour silent that long is skipped for the round.
        connect_timeout: Seconds a dial waits for the neighbour's ``Accept``.
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    topology: Literal["ring", "random"] = "ring"
    degree: int = Field(default=2, ge=2, le=64)
    share_timeout: float = Field(default=5.0, gt=0, le=3600)
    connect_timeout: float = Field(default=2.0, gt=0, le=600)

    @classmethod
    def from_table(cls, table: Mapping[str, Any], source: str) -> GossipOptions:
        """Validate the ``[protocol]`` table (without ``name``).

        Raises:
            ValueError: One line naming ``source`` and ``protocol.<key>``.
        """
        values = {k: float(v) if _is_int_for_float(cls, k, v) else v for k, v in table.items()}
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            error = exc.errors()[0]
            key = ".".join(str(part) for part in error["loc"]) or "protocol"
            if error["type"] == "extra_forbidden":
                known = ", ".join(cls.model_fields)
                raise ValueError(
                    f"{source}: protocol.{key}: unknown key (gossip knows {known})"
                ) from None
            got = table.get(key, "nothing")
            raise ValueError(f"{source}: protocol.{key}: {error['msg']}, got {got!r}") from None


def _is_int_for_float(model: type[BaseModel], key: str, value: Any) -> bool:
    """TOML writes ``share_timeout = 5``: an integer where a float is expected is fine."""
    field = model.model_fields.get(key)
    return (
        field is not None
        and field.annotation is float
        and isinstance(value, int)
        and not isinstance(value, bool)
    )
