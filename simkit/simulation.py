"""The supervisor: runs actors in a task group, injects faults, ends the run.

:class:`Simulation` puts actors on a network, starts them, applies a fault
schedule (crashes, restarts, partitions, link changes, slowdowns) and records
everything in a :class:`~simkit.trace.Trace`. ``run()`` drives it on a fresh
virtual-time loop (or in real time) and returns a :class:`SimulationResult`.

The run ends when every non-daemon actor has ended (daemons are then
cancelled), or at ``until``. An actor that raises is recorded in the trace and
dies loudly; the others go on, unless ``fail_fast`` is set.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio
import anyio.abc

from simkit._errors import error_line, error_traceback
from simkit._injector import FaultInjector
from simkit._threads import call_blocking, call_in_thread
from simkit.actors import PEER_QUEUE_BYTES, PEER_QUEUE_MESSAGES, Actor, Context
from simkit.channels import MemoryNetwork, NetworkModel, TcpTransport, Transport
from simkit.clock import Clock
from simkit.codec import DEFAULT_MAX_BODY
from simkit.faults import (
    Fault,
    FaultSchedule,
)
from simkit.heartbeat import HeartbeatConfig
from simkit.rng import SeedTree
from simkit.runtime import Mode, VirtualEventLoop, current_run, run
from simkit.trace import Trace

__all__ = ["ActorFailed", "Simulation", "SimulationResult"]

ActorFactory = Callable[[], Actor]


class ActorFailed(Exception):
    """An actor raised and the simulation was set to ``fail_fast``."""


@dataclass(slots=True)
class _Spec:
    name: str
    factory: ActorFactory
    daemon: bool
    start_at: float
    incarnation: int = -1
    ctx: Context | None = None
    scope: anyio.CancelScope | None = None
    running: bool = False
    instance: Actor | None = None


@dataclass(frozen=True, slots=True)
class SimulationResult:
    """What a finished run leaves behind.

    Attributes:
        trace: The recorded trace.
        end_time: Virtual (or elapsed real) time at the end, in seconds.
        errors: ``(actor, error text)`` for every actor that raised, in order;
            the text ends with where it was raised (``(at module:line in f)``).
        actors: The last instance of each actor (to inspect final state).
        tracebacks: ``(actor, full traceback)``, in the order of ``errors``.
        unfired: The faults of the schedule that never applied (a trigger
            never matched, or the run ended before their time).
    """

    trace: Trace
    end_time: float
    errors: list[tuple[str, str]] = field(default_factory=list)
    actors: dict[str, Actor] = field(default_factory=dict)
    tracebacks: list[tuple[str, str]] = field(default_factory=list)
    unfired: list[Fault] = field(default_factory=list)

    @property
    def digest(self) -> str:
        """The trace digest: the run's fingerprint."""
        return self.trace.digest()


class Simulation:
    """A set of actors on a network, with faults.

    Args:
        seed: Names the run: every random draw derives from it.
        network: The in-memory network model.
        heartbeat: Heartbeat settings for every connection.
        faults: Faults to inject.
        trace: The trace to record into (a fresh one by default).
        fail_fast: Stop the run when an actor raises.
        max_time: Virtual-time bound (``VirtualTimeLimitExceeded`` beyond).
        max_body: Frame size limit in bytes.
        transport: A transport to use instead of an in-memory network (a
            :class:`~simkit.channels.TcpTransport` without a trace of its own
            records into this simulation's).
        peer_queue_messages: The most messages of one peer an actor's mailbox
            holds unread; one more and that peer is dropped (``Drop`` with the
            reason ``mailbox full: ...``), never the actor.
        peer_queue_bytes: The same limit in payload bytes (one message always fits).

    Raises:
        ValueError: A peer queue limit below 1.
    """

    def __init__(
        self,
        seed: int = 0,
        *,
        network: NetworkModel | None = None,
        heartbeat: HeartbeatConfig | None = None,
        faults: FaultSchedule | None = None,
        trace: Trace | None = None,
        fail_fast: bool = False,
        max_time: float | None = None,
        max_body: int = DEFAULT_MAX_BODY,
        transport: Transport | None = None,
        peer_queue_messages: int = PEER_QUEUE_MESSAGES,
        peer_queue_bytes: int = PEER_QUEUE_BYTES,
    ) -> None:
        if peer_queue_messages < 1 or peer_queue_bytes < 1:
            raise ValueError(
                f"peer queue limits must be >= 1, got {peer_queue_messages} messages "
                f"and {peer_queue_bytes} bytes"
            )
        self.peer_queue_messages = peer_queue_messages
        self.peer_queue_bytes = peer_queue_bytes
        self.seed = seed
        self.seeds = SeedTree(seed)
        self.heartbeat = heartbeat or HeartbeatConfig()
        self.faults = faults or FaultSchedule()
        self.trace = trace if trace is not None else Trace()
        self.fail_fast = fail_fast
        self.max_time = max_time
        self.max_body = max_body
        self.network_model = network or NetworkModel()
        self.transport: Transport = transport or MemoryNetwork(
            self.network_model,
            seeds=self.seeds.child("net"),
            trace=self.trace,
            max_body=max_body,
        )
        if isinstance(self.transport, TcpTransport) and self.transport.trace is None:
            self.transport.trace = self.trace
        self._specs: dict[str, _Spec] = {}
        self._errors: list[tuple[str, str]] = []
        self._tracebacks: list[tuple[str, str]] = []
        self._tg: anyio.abc.TaskGroup | None = None
        self._done: anyio.Event | None = None
        self._origin = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._injector = FaultInjector(self.faults, self)
        self._failure: BaseException | None = None
        self._unfinished: set[str] = set()  # non-daemon actors not yet done
        self._has_main = False

    # -- building ---------------------------------------------------------------------------

    def add(
        self,
        actor: Actor | ActorFactory,
        *,
        name: str | None = None,
        daemon: bool = False,
        start_at: float = 0.0,
    ) -> None:
        """Add an actor (or a factory, needed for restarts to get a fresh one).

        Args:
            actor: An :class:`Actor`, or a callable returning a new one.
            name: The actor's name (default: its ``name`` attribute).
            daemon: The run does not wait for daemons; they are cancelled at the end.
            start_at: When it starts.

        Raises:
            ValueError: No name, or a name already used.
        """
        if isinstance(actor, Actor):
            instance = actor

            def factory() -> Actor:
                return instance

        else:
            factory = actor
        if name is None:
            probe = factory()
            name = probe.name
            first: Actor | None = probe
        else:
            first = None
        if not name:
            raise ValueError("an actor needs a name (pass name= or set .name)")
        if name in self._specs:
            raise ValueError(f"an actor named {name!r} was already added")
        spec = _Spec(name, factory, daemon, start_at)
        spec.instance = first
        self._specs[name] = spec

    def set_daemon(self, name: str, daemon: bool) -> None:
        """Make actor ``name`` a daemon or not (before the run).

        A process that runs one client of a protocol alone sets it non-daemon,
        so the run ends when it does.

        Raises:
            KeyError: No such actor.
        """
        self._spec(name).daemon = daemon

    # -- running ----------------------------------------------------------------------------

    def run(self, *, mode: Mode = "virtual", until: float | None = None) -> SimulationResult:
        """Run on a fresh loop until the actors are done (or ``until``).

        Inside a running event loop (a notebook cell) the run goes to a worker thread.
        """
        return call_blocking(
            run, self.run_async, until, seed=self.seed, mode=mode, max_time=self.max_time
        )

    async def arun(self, *, mode: Mode = "virtual", until: float | None = None) -> SimulationResult:
        """:meth:`run` as an awaitable: the run computes in a worker thread."""
        return await call_in_thread(self.run, mode=mode, until=until)

    async def run_async(self, until: float | None = None) -> SimulationResult:
        """Run inside the current event loop (see :meth:`run`).

        Raises:
            ValueError: Nothing would ever end the run.
            ActorFailed: An actor raised and ``fail_fast`` is set.
        """
        if until is None and all(spec.daemon for spec in self._specs.values()):
            raise ValueError("every actor is a daemon: give 'until' so the run can end")
        loop = asyncio.get_running_loop()
        self._loop = loop
        try:
            self._origin = current_run().origin
        except RuntimeError:
            self._origin = loop.time()
        self.transport.bind_clock(Clock(loop))  # TCP refuses virtual time here
        if isinstance(loop, VirtualEventLoop):
            loop.describe_blocked = self._describe_blocked
        self._done = anyio.Event()
        self._unfinished = {name for name, spec in self._specs.items() if not spec.daemon}
        self._has_main = bool(self._unfinished)
        self._injector = FaultInjector(self.faults, self)  # the schedule as it is now
        self._injector.arm(loop, self._origin)
        async with anyio.create_task_group() as tg:
            self._tg = tg
            for name in self._specs:
                spec = self._specs[name]
                tg.start_soon(self._start_later, spec, name=f"start:{name}")
            if until is not None:
                tg.start_soon(self._stop_at, until, name="until")
            self._check_done()
            await self._done.wait()
            tg.cancel_scope.cancel()
        if self._failure is not None:
            raise self._failure
        actors = {n: s.instance for n, s in self._specs.items() if s.instance is not None}
        return SimulationResult(
            self.trace,
            self.now(),
            list(self._errors),
            actors,
            list(self._tracebacks),
            self._injector.unfired(self.now()),
        )

    def now(self) -> float:
        """Seconds since the run started."""
        assert self._loop is not None, "the simulation is not running"
        return self._loop.time() - self._origin

    async def _stop_at(self, until: float) -> None:
        await anyio.sleep(max(0.0, until - self.now()))
        assert self._done is not None
        self._done.set()

    async def _start_later(self, spec: _Spec) -> None:
        if spec.start_at > self.now():
            await anyio.sleep(spec.start_at - self.now())
        await self._run_incarnation(spec)

    async def _run_incarnation(self, spec: _Spec) -> None:
        spec.incarnation += 1
        if spec.incarnation > 0 or spec.instance is None:
            spec.instance = spec.factory()
        actor = spec.instance
        actor.name = spec.name
        ctx = Context(self, spec.name, spec.incarnation)
        spec.ctx, spec.running = ctx, True
        if not spec.daemon:
            self._unfinished.add(spec.name)
        info = f"incarnation {spec.incarnation}"
        self.trace.record(self._t(), "actor_start", spec.name, "", "", 0, "", info)
        with anyio.CancelScope() as scope:
            spec.scope = scope
            try:
                await actor.run(ctx)
            except Exception as exc:  # an actor's bug must not take the others down
                self._actor_failed(spec, ctx, exc)
            else:
                self.trace.record(self._t(), "actor_exit", spec.name)
                ctx._shutdown("actor finished")
        if spec.ctx is ctx:
            spec.running = False
            self._settle(spec)

    def _actor_failed(self, spec: _Spec, ctx: Context, exc: Exception) -> None:
        text = error_line(exc)
        self._errors.append((spec.name, text))
        self._tracebacks.append((spec.name, error_traceback(exc)))
        self.trace.record(self._t(), "actor_error", spec.name, "", type(exc).__name__, 0, "", text)
        self._crash_now(spec, loud=True)
        if self.fail_fast and self._failure is None:
            self._failure = ActorFailed(f"actor {spec.name!r} raised: {text}")
            self._failure.__cause__ = exc
            assert self._done is not None
            self._done.set()

    def _check_done(self) -> None:
        """End the run once no non-daemon actor is left to run (O(1) per call)."""
        if self._done is None or not self._has_main:
            return  # only `until` ends a run of daemons
        if not self._unfinished:
            self._done.set()

    def _settle(self, spec: _Spec) -> None:
        """Book an actor's end: finished unless it runs or will restart."""
        if not spec.daemon and not spec.running and not self._injector.restart_pending(spec.name):
            self._unfinished.discard(spec.name)
        self._check_done()

    def _t(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    def _describe_blocked(self) -> str:
        parts = []
        for name in sorted(self._specs):
            spec = self._specs[name]
            if spec.running and spec.ctx is not None:
                parts.append(f"{name} ({spec.ctx.waiting_on})")
        return ", ".join(parts) or "no actor is running"

    # -- faults -------------------------------------------------------------------------------

    def apply(self, fault: Fault) -> None:
        """Apply one fault now (also usable directly from tests)."""
        self._injector.apply(fault)

    def slow_down(self, name: str, factor: float) -> None:
        """Scale actor ``name``'s modelled compute by ``factor`` (a ``Slowdown`` fault).

        Raises:
            KeyError: No such actor.
        """
        spec = self._spec(name)
        if spec.ctx is not None:
            spec.ctx.speed = factor

    def _spec(self, name: str) -> _Spec:
        spec = self._specs.get(name)
        if spec is None:
            raise KeyError(f"no actor named {name!r}")
        return spec

    def is_running(self, name: str) -> bool:
        """Whether actor ``name`` is alive now.

        Raises:
            KeyError: No such actor.
        """
        return self._spec(name).running

    def context(self, name: str) -> Context | None:
        """The context of actor ``name`` while it is alive, else ``None``.

        Raises:
            KeyError: No such actor.
        """
        spec = self._spec(name)
        return spec.ctx if spec.running else None

    def crash(self, name: str, *, loud: bool = False) -> None:
        """Kill actor ``name`` now (no-op if it is not running)."""
        spec = self._spec(name)
        if spec.running:
            self._crash_now(spec, loud=loud)
            self._settle(spec)

    def _crash_now(self, spec: _Spec, *, loud: bool) -> None:
        ctx = spec.ctx
        spec.running = False
        if isinstance(self.transport, (MemoryNetwork, TcpTransport)):
            self.transport.crash(spec.name, loud=loud)
        if ctx is not None:
            ctx._kill()
        if spec.scope is not None:
            spec.scope.cancel()

    def restart(self, name: str) -> None:
        """Start a fresh incarnation of ``name`` (crashing the running one silently)."""
        spec = self._spec(name)
        if spec.running:
            self._crash_now(spec, loud=False)
        assert self._tg is not None
        self._tg.start_soon(self._run_incarnation, spec, name=f"actor:{name}")
