"""The one message of the gossip protocol: a peer's weights after a round's training."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from simkit.messages import Message
from simkit.training import Weights

__all__ = ["Share"]


@dataclass(frozen=True, slots=True)
class Share(Message):
    """``weights``: the sender's model after training in ``round`` (before averaging).

    Registered as ``gossip.Share`` (the name fault triggers use).
    """

    typename: ClassVar[str] = "gossip.Share"
    round: int
    weights: Weights

    def __post_init__(self) -> None:
        if isinstance(self.round, bool) or not isinstance(self.round, int) or self.round < 1:
            raise ValueError(f"Share.round must be an integer >= 1, got {self.round!r}")
        if not isinstance(self.weights, Weights):
            raise TypeError(f"Share.weights must be Weights, got {type(self.weights).__name__}")
