"""The action messages of a session: Join, Accept, Reject, Send, Ping, Pong, Drop."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar, Final, TypeAlias

from simkit.wire._base import tname
from simkit.wire._message import Message, SerializedMessage

PROTOCOL_VERSION: Final = "1.0"
"""The wire protocol version a :class:`Join` carries (``major.minor``)."""

# ----------------------------------------------------------------------------- actions


def _check_str(owner: object, *names: str) -> None:
    for name in names:
        value = getattr(owner, name)
        if not isinstance(value, str):
            raise TypeError(f"{tname(owner)}.{name} must be a str, got {tname(value)}")


def _check_seq(owner: Ping | Pong) -> None:
    seq = owner.seq
    if type(seq) is not int:
        raise TypeError(f"{tname(owner)}.seq must be an int, got {tname(seq)}")
    if not 0 <= seq < 1 << 64:
        raise ValueError(f"{tname(owner)}.seq must be in [0, 2**64), got {seq}")


@dataclass(frozen=True, slots=True)
class Join:
    """A client asks to join: its name, protocol version (``major.minor``), token.

    The version's format is checked by :func:`version_compatible`, so a
    malformed one can be answered with a :class:`Reject`.
    """

    name: str
    version: str
    token: str = ""
    code: ClassVar[int] = 1

    def __post_init__(self) -> None:
        _check_str(self, "name", "version", "token")


@dataclass(frozen=True, slots=True)
class Accept:
    """The server accepts a :class:`Join`."""

    code: ClassVar[int] = 2


@dataclass(frozen=True, slots=True)
class Reject:
    """The server refuses a :class:`Join`: a short ``flag`` and a human ``detail``."""

    flag: str
    detail: str = ""
    code: ClassVar[int] = 3

    def __post_init__(self) -> None:
        _check_str(self, "flag", "detail")


@dataclass(frozen=True, slots=True)
class Send:
    """Carries one application message of registered type ``type``.

    Built with a :class:`Message` to send it, or with a
    :class:`SerializedMessage` (received, or forwarded unchanged without
    decoding); ``type`` must match the payload's type.
    """

    type: str
    payload: Message | SerializedMessage
    code: ClassVar[int] = 4

    def __post_init__(self) -> None:
        payload = self.payload
        if isinstance(payload, Message):
            actual = payload.typename
        elif isinstance(payload, SerializedMessage):
            actual = payload.type
        else:
            raise TypeError(
                f"Send.payload must be a Message or SerializedMessage, got {tname(payload)}"
            )
        if actual != self.type:
            _check_str(self, "type")
            raise ValueError(f"Send.type is {self.type!r} but its payload is a {actual!r}")


@dataclass(frozen=True, slots=True)
class Ping:
    """Heartbeat probe; ``seq`` in ``[0, 2**64)`` is echoed by the :class:`Pong`."""

    seq: int
    code: ClassVar[int] = 5

    def __post_init__(self) -> None:
        _check_seq(self)


@dataclass(frozen=True, slots=True)
class Pong:
    """Heartbeat answer to the :class:`Ping` with the same ``seq``."""

    seq: int
    code: ClassVar[int] = 6

    def __post_init__(self) -> None:
        _check_seq(self)


@dataclass(frozen=True, slots=True)
class Drop:
    """A peer leaves on purpose, saying why."""

    reason: str = ""
    code: ClassVar[int] = 7

    def __post_init__(self) -> None:
        _check_str(self, "reason")


ActionMessage: TypeAlias = Join | Accept | Reject | Send | Ping | Pong | Drop
SIMPLE: Final[dict[int, tuple[type[ActionMessage], tuple[str, ...]]]] = {
    1: (Join, ("name", "version", "token")),
    2: (Accept, ()),
    3: (Reject, ("flag", "detail")),
    5: (Ping, ("seq",)),
    6: (Pong, ("seq",)),
    7: (Drop, ("reason",)),
}

_VERSION_RE: Final = re.compile(r"([0-9]+)\.([0-9]+)")


def version_compatible(ours: str, theirs: str) -> bool:
    """Whether two ``major.minor`` versions can talk: same major.

    A malformed version (or a non-str) is never compatible.
    """
    a = _VERSION_RE.fullmatch(ours) if isinstance(ours, str) else None
    b = _VERSION_RE.fullmatch(theirs) if isinstance(theirs, str) else None
    return a is not None and b is not None and int(a[1]) == int(b[1])
