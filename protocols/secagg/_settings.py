"""The ``[secagg]`` table of a scenario, validated into :class:`SecAggSettings`.

Settings hold what the scenario says; :meth:`SecAggSettings.config` turns
them into one round's :class:`~simkit.secagg.SecAggConfig` once the cohort
is known, filling in the defaults:

- ``threshold``: a strict majority of a client's neighbourhood,
  ``t = floor(m / 2) + 1`` with ``m = n`` (SecAgg) or ``m = k + 1``
  (SecAgg+, ``k`` the neighbour degree). Bonawitz et al. (2017) and Bell et
  al. (2020) take ``t > m / 2``: two disjoint groups of clients can then
  never both rebuild secrets, and a round survives just under half of each
  neighbourhood dropping. With ``adversary = "active"`` the default is
  ``floor(2m / 3) + 1`` (their bound against a malicious server), which
  halves the dropouts a round survives. A fraction ``f`` in ``(0, 1]``
  gives ``ceil(f * m)``; a count is used as it is. Lower thresholds are
  refused unless ``allow_weak_threshold`` (docs/secagg.md).
- ``neighbours`` (SecAgg+): :func:`simkit.secagg.default_degree` (178 at
  ``n = 1000``, 214 at ``10**4``: at most one round in a thousand aborts with
  a third of the clients dropping out and ``t`` a strict majority), rounded
  up to even and capped at ``n - 1`` as the graph does.
- ``clip = 8.0``, ``bits = 32``: values in ``[-8, 8]`` (Flower's default
  clipping range), integers modulo ``2**32`` that travel as ``uint32``, the
  bandwidth of float32; the step is ``8 * n / 2**31`` rounded up to a power of
  two (``2**-24`` for ten clients).
- ``prg = "philox"``, ``stage_timeout = 30`` seconds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal

from protocols.secagg._attack import parse_attack
from simkit.secagg import DEFAULT_PRG, MAX_BITS, PRGS, Prg, Quantizer, SecAggConfig, default_degree

__all__ = ["SecAggSettings", "effective_degree"]

_MODES = ("off", "secagg", "secagg+")
Mode = Literal["secagg", "secagg+"]


def effective_degree(n: int, mode: Mode, neighbours: int | None) -> int:
    """The degree of the graph :class:`~simkit.secagg.SecAggServer` builds for ``n`` clients.

    The complete graph (``n - 1``) for SecAgg; for SecAgg+ ``neighbours`` or
    the default table, rounded up to even, capped at ``n - 1`` (as
    :meth:`simkit.secagg.NeighbourGraph.regular` does).

    Raises:
        ValueError: ``n < 2``.
    """
    if n < 2:
        raise ValueError(f"secure aggregation needs at least 2 clients, got {n}")
    if mode == "secagg":
        return n - 1
    k = default_degree(n) if neighbours is None else neighbours
    k += k % 2
    return min(k, n - 1)


@dataclass(frozen=True, slots=True)
class SecAggSettings:
    """How secure aggregation runs (the ``[secagg]`` table; see the module doc for defaults).

    Attributes:
        mode: ``"secagg"`` (complete graph) or ``"secagg+"`` (sparse graph).
        threshold: Shares needed to rebuild a secret: a count ``>= 2``, a
            fraction in ``(0, 1]`` of a neighbourhood, or ``None`` for a
            strict majority of it.
        clip: Inputs are clipped to ``[-clip, clip]`` before quantization.
        bits: Inputs and masks are integers modulo ``2**bits``.
        neighbours: SecAgg+ neighbour degree ``k``; ``None`` for the default table.
        prg: Mask generator: ``"philox"``, ``"pcg64"`` or ``"aes-ctr"``.
        stage_timeout: Seconds the server waits for one stage's replies; a
            client gives up after twice that without a word from the server.
        allow_weak_threshold: Accept a threshold that is not a strict
            majority of a neighbourhood (a lying server can then collect both
            kinds of shares of one client; docs/secagg.md).
        keys: Where a client's secrets come from: ``None`` (the seed tree in
            virtual time, the OS over real sockets), ``"os"`` (always the
            OS: not replayable) or ``"seeded"`` (always the seed tree: over
            real sockets whoever knows the seed unmasks every update).
        adversary: ``"passive"`` (semi-honest server) or ``"active"``:
            clients sign their keys and the survivor set and check that
            ``t`` of their neighbourhood signed the same set before
            unmasking (Bonawitz et al. 2017, §6); the threshold must then
            exceed two thirds of a neighbourhood.
        attack: Teaching only: ``"split-view:<client>"`` makes the server a
            liar that tries to read that client's input
            (:mod:`protocols.secagg._attack`).
    """

    mode: Mode = "secagg"
    threshold: int | float | None = None
    clip: float = 8.0
    bits: int = 32
    neighbours: int | None = None
    prg: Prg = DEFAULT_PRG
    stage_timeout: float = 30.0
    allow_weak_threshold: bool = False
    keys: Literal["os", "seeded"] | None = None
    adversary: Literal["passive", "active"] = "passive"
    attack: str | None = None

    def __post_init__(self) -> None:
        if self.mode not in ("secagg", "secagg+"):
            raise ValueError(
                f"SecAggSettings.mode: must be 'secagg' or 'secagg+', got {self.mode!r}"
            )
        problem = _problems(
            {f.name: getattr(self, f.name) for f in fields(self)}, plus=self.mode == "secagg+"
        )
        if problem is not None:
            key, text = problem
            raise ValueError(f"SecAggSettings.{key}: {text}")
        object.__setattr__(self, "clip", float(self.clip))
        object.__setattr__(self, "stage_timeout", float(self.stage_timeout))

    @classmethod
    def table_keys(cls) -> list[str]:
        """The keys the table may hold."""
        return [f.name for f in fields(cls)]

    @classmethod
    def from_table(cls, table: Mapping[str, Any], source: str) -> SecAggSettings | None:
        """Validate a scenario's ``[secagg]`` table.

        ``None`` values mean "the default" (a dumped pydantic table holds them).
        ``prg`` and ``stage_timeout`` are accepted too, for tables built in code.

        Returns:
            The settings, or ``None`` when ``mode`` is ``"off"`` (the default).

        Raises:
            ValueError: One line naming ``source`` and ``secagg.<key>``.
        """
        known = cls.table_keys()
        for key in sorted(table):
            if key not in known:
                raise ValueError(
                    f"{source}: secagg.{key}: unknown key (secagg knows {', '.join(known)})"
                )
        values = {k: v for k, v in table.items() if v is not None}
        mode = values.get("mode", "off")
        if mode not in _MODES:
            raise ValueError(
                f"{source}: secagg.mode: must be 'off', 'secagg' or 'secagg+', got {mode!r}"
            )
        # `--set secagg.mode=off` must not trip over the rest of a SecAgg+ table
        problem = _problems(values, plus=mode != "secagg")
        if problem is not None:
            key, text = problem
            raise ValueError(f"{source}: secagg.{key}: {text}")
        if mode == "off":
            return None
        return cls(**values)

    def neighbourhood(self, n: int) -> int:
        """``m``: a client's closed neighbourhood size (itself included) among ``n``."""
        return effective_degree(n, self.mode, self.neighbours) + 1

    def threshold_for(self, n: int) -> int:
        """The threshold ``t`` for a cohort of ``n`` clients.

        Raises:
            ValueError: ``n < 2``, a count threshold above the neighbourhood
                size, or (unless ``allow_weak_threshold``) a threshold that is
                not a strict majority of it.
        """
        m = self.neighbourhood(n)
        t = self.threshold
        if t is None:
            return self.minimum_threshold(m)
        if isinstance(t, float):
            # a tolerance so that 2/3 of 9 is 6, not 7
            t = max(2, min(m, math.ceil(t * m - 1e-9)))
        elif t > m:
            raise ValueError(f"threshold {t} exceeds the {self._where()} of {m} clients")
        least = self.minimum_threshold(m)
        if t < least and not self.allow_weak_threshold:
            share = "more than 2/3" if self.adversary == "active" else "a strict majority"
            raise ValueError(
                f"threshold {t} is not {share} of the {self._where()} of {m} "
                f"clients (needs >= {least}): a server lying about who survived could "
                "collect both kinds of shares of one client; set "
                "secagg.allow_weak_threshold = true to accept that"
            )
        return t

    def minimum_threshold(self, m: int) -> int:
        """The smallest threshold accepted (and the default) for a neighbourhood of ``m``.

        ``floor(m/2) + 1`` (a strict majority) in passive mode;
        ``floor(2m/3) + 1`` in active mode, Bonawitz et al.'s bound: below
        it a server that forwards a client only ``t - 1`` peers' bundles
        can declare every one of them dropped and still show ``t`` others a
        consistent, signed survivor set (docs/secagg.md, threat model).
        """
        if self.adversary == "active":
            return 2 * m // 3 + 1
        return m // 2 + 1

    def check_cohort(self, n: int) -> None:
        """Check, before a run, that a cohort of up to ``n`` clients can use the threshold.

        The largest cohort is the weakest point of a count threshold (``t``
        stays the same while the neighbourhood grows), so checking it covers
        the smaller cohorts dropouts leave.

        Raises:
            ValueError: ``secagg.threshold: ...`` (see :meth:`threshold_for`).
        """
        try:
            self.threshold_for(n)
        except ValueError as exc:
            raise ValueError(f"secagg.threshold: {exc}") from None

    def _where(self) -> str:
        return "cohort" if self.mode == "secagg" else "neighbourhood (degree + 1)"

    def config(self, cohort_size: int, length: int, round_id: int) -> SecAggConfig:
        """The core's parameters for one round among ``cohort_size`` clients.

        Raises:
            ValueError: Fewer than 2 clients, or a threshold that cannot be met.
        """
        return SecAggConfig(
            threshold=self.threshold_for(cohort_size),
            bits=self.bits,
            length=length,
            mode=self.mode,
            degree=self.neighbours if self.mode == "secagg+" else None,
            prg=self.prg,
            round_id=round_id,
            adversary=self.adversary,
        )

    def quantizer(self, cohort_size: int) -> Quantizer:
        """The quantizer for a sum of up to ``cohort_size`` inputs.

        Raises:
            ValueError: ``bits`` leaves no headroom for that many summands.
        """
        return Quantizer(clip=self.clip, bits=self.bits, n=cohort_size)


def _problems(values: Mapping[str, Any], plus: bool) -> tuple[str, str] | None:
    """The first bad ``(key, explanation)`` among ``values``, or ``None``."""

    def is_int(v: object) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    def is_number(v: object) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    checks: list[tuple[str, bool, str]] = []
    if "threshold" in values and values["threshold"] is not None:
        t = values["threshold"]
        ok = (is_int(t) and t >= 2) or (isinstance(t, float) and is_number(t) and 0 < t <= 1)
        checks.append(("threshold", ok, "a count >= 2 or a fraction in (0, 1]"))
    if "clip" in values:
        v = values["clip"]
        checks.append(("clip", is_number(v) and v > 0, "a finite number > 0"))
    if "bits" in values:
        v = values["bits"]
        checks.append(("bits", is_int(v) and 2 <= v <= MAX_BITS, f"an integer in [2, {MAX_BITS}]"))
    if "neighbours" in values and values["neighbours"] is not None:
        v = values["neighbours"]
        checks.append(("neighbours", is_int(v) and v >= 1, "an integer >= 1"))
        checks.append(
            ("neighbours", plus, "only used with mode = 'secagg+' (SecAgg is the complete graph)")
        )
    if "prg" in values:
        checks.append(("prg", values["prg"] in PRGS, " or ".join(repr(p) for p in PRGS)))
    if "allow_weak_threshold" in values:
        v = values["allow_weak_threshold"]
        checks.append(("allow_weak_threshold", isinstance(v, bool), "true or false"))
    if "keys" in values and values["keys"] is not None:
        checks.append(("keys", values["keys"] in ("os", "seeded"), "'os' or 'seeded'"))
    if "adversary" in values:
        v = values["adversary"]
        checks.append(("adversary", v in ("passive", "active"), "'passive' or 'active'"))
    if "attack" in values and values["attack"] is not None:
        try:
            ok = isinstance(values["attack"], str) and bool(parse_attack(values["attack"]))
        except ValueError:
            ok = False
        checks.append(("attack", ok, "'split-view:<client name>'"))
    if "stage_timeout" in values:
        v = values["stage_timeout"]
        checks.append(("stage_timeout", is_number(v) and v > 0, "a finite number of seconds > 0"))
    for key, ok, what in checks:
        if not ok:
            prefix = "" if what.startswith("only") else "must be "
            return key, f"{prefix}{what}, got {values[key]!r}"
    return None
