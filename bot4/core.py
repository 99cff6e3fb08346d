"""The core: one named shared-memory segment and everything that lives in it."""

from __future__ import annotations

import gc
import logging
import os
import weakref
from types import TracebackType
from typing import TYPE_CHECKING, Any

from bot4._context import CoreContext
from bot4.breaker.breaker import CircuitBreaker
from bot4.breaker.config import BreakerConfig, FuseConfig
from bot4.breaker.fuse import Fuse, pack_config
from bot4.breaker.registry import BreakerRegistry, encode_name
from bot4.clock import Clock, MonotonicClock
from bot4.errors import CapacityError, ConfigError, SegmentError, SegmentExistsError, SegmentNotFoundError
from bot4.plugins.manager import PluginManager, make_plugin_manager
from bot4.risk.engine import RiskEngine
from bot4.shm import _native
from bot4.shm import layout as L
from bot4.shm._proc import my_identity
from bot4.shm.lifecycle import remove_if_stale
from bot4.shm.metrics import SegmentMetrics
from bot4.shm.segment import Segment
from bot4.shm.slots import SlotRegistry, WorkerSlot
from bot4.streams.quotes import QuoteTable

if TYPE_CHECKING:
    from bot4.fleet.link import FleetLink
    from bot4.fleet.policy import FleetPolicy
    from bot4.journal.desk import Journal

__all__ = ["Core"]

log = logging.getLogger("bot4.core")

_live_cores: weakref.WeakSet[Core] = weakref.WeakSet()


class Core:
    """A shared-memory segment holding breaker state (and, later, risk state) for many processes.

    Create it once with :meth:`create` (the owner), attach from every other process with
    :meth:`attach`. Each :class:`Core` object claims a worker slot in the segment for its
    process. As a context manager it closes on exit, and the owner also unlinks.
    """

    def __init__(
        self, segment: Segment, clock: Clock | None, plugins: PluginManager | None, observer: bool = False
    ) -> None:
        if clock is not None and not isinstance(clock, Clock):
            raise ConfigError("clock", f"expected a bot4.Clock (with now_ns()), got {clock!r}")
        if plugins is not None and not isinstance(plugins, PluginManager):
            raise ConfigError("plugins", "expected a manager from bot4.make_plugin_manager()")
        self._segment = segment
        self._clock: Clock = clock if clock is not None else MonotonicClock()
        gate_clock = None if type(self._clock) is MonotonicClock else self._clock.now_ns
        if gate_clock is not None:  # readers from outside (bot4 status) must not use the host's time
            segment.region.store(L.H_CLOCK, 1)
        self._plugins = plugins if plugins is not None else make_plugin_manager()
        self._slots = SlotRegistry(segment)
        self._registry = BreakerRegistry(segment)
        ident = my_identity()
        try:
            slot = self._claim_slot(ident, observer)
        finally:
            segment.joined()
        # What the layers built on the segment get of this core (never its private attributes).
        self._context = CoreContext(
            owner=self,
            segment=segment,
            clock=self._clock,
            now_ns=self._clock.now_ns,
            gate_clock=gate_clock,
            ident=ident,
            slot=slot,
            plugins=self._plugins,
            observer=observer,
        )
        # A core dropped without close() gives its slot back when it is collected. The
        # finalizer holds the lease, never the core (that would keep the core alive).
        self._observer = observer
        self._lease = _SlotLease(self._slots, slot, ident)
        self._release = weakref.finalize(self, self._lease.end)
        self._release.atexit = False  # at exit the process dies, and a dead holder's slot is reclaimed
        self._breakers: dict[str, CircuitBreaker] = {}
        self._made: weakref.WeakSet[CircuitBreaker] = weakref.WeakSet()  # every breaker object handed out
        self._context.fuse = self._fuse = Fuse(self._context)
        self._risk: RiskEngine | None = None
        self._quotes: QuoteTable | None = None
        self._journal: Journal | None = None
        self._metrics: SegmentMetrics | None = None
        _live_cores.add(self)

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    def create(
        cls,
        name: str | None = None,
        *,
        max_workers: int = 64,
        max_breakers: int = 128,
        max_symbols: int = 64,
        max_reservations: int = 4096,
        fuse: FuseConfig | None = None,
        clock: Clock | None = None,
        plugins: PluginManager | None = None,
        journal: str | os.PathLike[str] | None = None,
        journal_recorder: bool = True,
        journal_synchronous: str = "FULL",
    ) -> Core:
        """Create a new segment and return its owning core.

        Args:
            name: the segment name (letters, digits, ``_.-``); a random ``bot4-…`` name if None.
            max_workers: worker slots: processes that can be attached at once.
            max_breakers: breakers the segment can hold.
            max_symbols: symbols the risk ledger can track.
            max_reservations: risk reservations (open orders) the ledger can hold at once.
            fuse: the global fuse configuration (default :class:`FuseConfig`).
            clock: time source (default: host-wide monotonic).
            plugins: a plugin manager (default: :func:`bot4.plugins.make_plugin_manager`).
            journal: a journal database (SQLite, created if new; see ``docs/journal.md``).
                If it holds a desk's past, the ledger is rebuilt from it first: positions,
                costs, cash, equity and its peak, the day, limits and the kill switch; the
                orders it holds open wait for :meth:`bot4.OrderManager.recover` (no new risk
                until then). Every event is then recorded, and new risk is refused whenever
                it could not be.
            journal_recorder: start the recorder process (supervised by this process) that
                makes the records durable; False if another process runs it.
            journal_synchronous: ``"FULL"`` (every batch survives a power cut) or ``"NORMAL"``.

        Raises:
            SegmentExistsError: a segment with that name is in use by a live process.
            SegmentLayoutError: a file of that name that is not a bot4 segment (never replaced).
            SegmentSpaceError: ``/dev/shm`` has no room for a segment of these capacities.
            ConfigError: a bad name or capacity.

        A segment of that name left behind by processes that are all dead is replaced.
        """
        layout = L.Layout(
            max_workers=max_workers,
            max_breakers=max_breakers,
            max_symbols=max_symbols,
            max_reservations=max_reservations,
        )
        fuse_config = fuse if fuse is not None else FuseConfig()
        if not isinstance(fuse_config, FuseConfig):
            raise ConfigError("fuse", f"expected a FuseConfig, got {type(fuse_config).__name__}")
        header = {L.H_FUSE_CONFIG: pack_config(fuse_config)}
        try:
            segment = Segment.create(name, layout, header)
        except SegmentExistsError:
            assert name is not None
            try:
                if not remove_if_stale(name):
                    raise SegmentExistsError(name, f"segment {name!r} exists and is in use by a live process") from None
                log.warning("replaced segment %r left behind by dead processes", name)
            except SegmentNotFoundError:
                pass  # removed meanwhile
            segment = Segment.create(name, layout, header)
        try:
            core = cls(segment, clock, plugins)
        except BaseException:
            segment.close()
            segment.unlink()
            raise
        if journal is not None:
            from bot4.journal.desk import start_journal

            try:
                core._journal = start_journal(
                    core.risk,
                    segment,
                    journal,
                    recorder=journal_recorder,
                    synchronous=journal_synchronous,
                )
            except BaseException:
                core.close()
                segment.unlink()
                raise
        return core

    @classmethod
    def attach(
        cls,
        name: str,
        *,
        clock: Clock | None = None,
        plugins: PluginManager | None = None,
        allow_foreign: bool = False,
        observer: bool = False,
    ) -> Core:
        """Attach to an existing segment by name.

        Args:
            name: the segment name.
            clock, plugins: as for :meth:`create`.
            observer: attach only to watch (a dashboard, a monitor): its worker slot keeps
                no desk alive — once every other process of the desk is dead the segment is
                stale (``bot4 clean`` removes it, ``Core.create`` makes the name anew) — and
                :meth:`workers` marks it ``observer``. It may act on the desk (trip the kill
                switch, open a breaker, set limits) but takes no risk: a reservation, and so an
                order, is refused with :class:`ConfigError` (a desk is alive while a process
                that holds its risk is).
            allow_foreign: trust a segment that is not this user's alone (another owner,
                a mode other than 0600) or that was created in another PID namespace.
                Across PID namespaces a worker slot whose holder is in another namespace
                is never taken for dead (it is kept until its holder gives it back).

        Raises:
            SegmentNotFoundError: no segment has that name.
            SegmentLayoutError: the segment was made by an incompatible bot4, or is not a bot4 segment.
            ForeignSegmentError: the segment is another user's, others may write it, or it
                was created in another PID namespace.
            CapacityError: every worker slot is held by a live process.
        """
        if not isinstance(observer, bool):
            raise ConfigError("observer", f"expected True or False, got {observer!r}")
        segment = Segment.attach(name, allow_foreign=allow_foreign, observer=observer)
        try:
            return cls(segment, clock, plugins, observer)
        except BaseException:
            segment.close()
            raise

    @classmethod
    def connect(
        cls,
        url: str,
        *,
        name: str,
        desk: str = "default",
        host: str | None = None,
        attach: bool = False,
        policy: FleetPolicy | None = None,
        clock: Clock | None = None,
        plugins: PluginManager | None = None,
        **create_options: Any,
    ) -> Core:
        """A core whose breakers, kill switch and risk exposure are shared by a fleet through Redis.

        This host keeps its segment ``name`` as the fast local view (created, or attached
        with ``attach=True`` by this host's other processes); the Redis server at ``url``
        holds the state of the desk ``desk`` for every host. The fleet state is read before
        this returns. See ``docs/scaling.md``.

        Args:
            url: ``redis://host:port/db`` (redis-py's URL forms).
            name: this host's segment name.
            desk: the fleet's unit of shared state (hosts of one desk share everything).
            host: this host's name in the fleet (default: the machine's host name).
            attach: attach to this host's existing segment instead of creating it.
            policy: what happens while Redis is unreachable (default :class:`bot4.FleetPolicy`).
            clock, plugins: as for :meth:`create` / :meth:`attach`.
            create_options: capacities and fuse for :meth:`create`.

        Raises:
            ConfigError: a bad URL, desk, host or policy (or redis-py missing).
        """
        import socket

        from bot4.fleet.link import FleetLink
        from bot4.fleet.policy import FleetPolicy

        if attach:
            if create_options:
                raise ConfigError("attach", f"options {sorted(create_options)} apply only when creating")
            core = cls.attach(name, clock=clock, plugins=plugins)
        else:
            core = cls.create(name, clock=clock, plugins=plugins, **create_options)
        try:
            link = core._context.fleet = FleetLink(
                core,
                url,
                desk=desk,
                host=host if host is not None else socket.gethostname(),
                policy=policy if policy is not None else FleetPolicy(),
            )
            link.start()
        except BaseException:
            owner = core.is_owner
            core._context.fleet = None
            core.close()
            if owner:
                core.unlink()
            raise
        return core

    @property
    def fleet(self) -> FleetLink | None:
        """The link to the fleet's Redis (cores made by :meth:`connect`), else None."""
        return self._context.fleet

    @property
    def name(self) -> str:
        """The segment name other processes attach to."""
        return self._segment.name

    @property
    def is_owner(self) -> bool:
        """Whether this core created the segment (and unlinks it on context exit)."""
        return self._segment.owner

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._segment.closed

    @property
    def slot(self) -> int:
        """This process's worker slot."""
        return self._context.slot

    @property
    def clock(self) -> Clock:
        """The time source of this core."""
        return self._clock

    @property
    def plugins(self) -> PluginManager:
        """The plugin manager: ``core.plugins.register(plugin)``."""
        return self._plugins

    @property
    def fuse(self) -> Fuse:
        """The global fuse of this core."""
        return self._fuse

    @property
    def risk(self) -> RiskEngine:
        """The pre-trade risk engine over this core's shared risk ledger."""
        self._check_open()
        if self._risk is None:
            self._risk = RiskEngine(self._context)
        return self._risk

    @property
    def quotes(self) -> QuoteTable:
        """The top of book of every venue and symbol a feed follows, shared by every process."""
        self._check_open()
        if self._quotes is None:
            self._quotes = QuoteTable(self._context)
        return self._quotes

    @property
    def metrics(self) -> SegmentMetrics:
        """The figures kept for the operator's view (rejections by code, order latency, P&L by
        venue and strategy), every process's."""
        self._check_open()
        if self._metrics is None:
            ctx = self._context
            self._metrics = SegmentMetrics(self._segment.region, self._segment.layout, lambda: ctx.ident)
        return self._metrics

    @property
    def journal(self) -> Journal | None:
        """The desk's journal (``Core.create(journal=...)``), None if it has none."""
        self._check_open()
        if self._journal is None and self._segment.region.load(self._segment.layout.events + _native.EV_ON):
            from bot4.journal.desk import Journal

            self._journal = Journal(self._segment)
        return self._journal

    def close(self) -> None:
        """Give back the worker slot and unmap the segment (idempotent). Does not unlink.

        The creator of a journaled core also stops the recorder it supervises (after it
        writes what was appended)."""
        if self.closed:
            return
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        if self._context.fleet is not None:
            self._context.fleet.close()
            self._context.fleet = None
        self._release()
        self._breakers.clear()
        self._risk = None
        self._quotes = None
        self._metrics = None
        _live_cores.discard(self)
        self._segment.close()

    def unlink(self) -> None:
        """Remove the segment's name; attached processes keep working until they close."""
        self._segment.unlink()

    def __enter__(self) -> Core:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        owner = self.is_owner
        self.close()
        if owner:
            try:
                self.unlink()
            except SegmentError:
                pass

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"slot {self.slot}"
        return f"<Core {self.name!r} {state}{' owner' if self.is_owner else ''}>"

    # ------------------------------------------------------------------ workers

    def _claim_slot(self, ident: int, observer: bool) -> int:
        try:
            return self._slots.claim(ident, self._clock.now_ns(), observer=observer)
        except CapacityError:
            # Cores dropped without close() hold slots until the cycle collector finds them
            # (a core and its breakers point at each other): collect, then try once more.
            gc.collect()
            return self._slots.claim(ident, self._clock.now_ns(), observer=observer)

    def heartbeat(self) -> None:
        """Record in this process's slot that it is alive and working."""
        self._check_open()
        self._slots.heartbeat(self.slot, self._clock.now_ns())

    def workers(self) -> list[WorkerSlot]:
        """Every claimed worker slot: pid, liveness, heartbeat age."""
        self._check_open()
        return self._slots.list(self._clock.now_ns())

    def _reclaim_after_fork(self) -> None:
        if self.closed:
            return
        ctx = self._context
        ctx.ident = my_identity()
        ctx.slot = self._claim_slot(ctx.ident, self._observer)
        self._lease.slot, self._lease.ident = ctx.slot, ctx.ident
        for breaker in list(self._made):  # cached or replaced: every object still in use writes our row
            breaker._gate.slot = ctx.slot
        if self._risk is not None:
            self._risk._mutex.rebind(ctx.ident)
        if ctx.fleet is not None:  # the parent's listener thread did not come along: a link of our own
            from bot4.fleet.link import FleetLink

            args = ctx.fleet.connect_args()
            ctx.fleet = FleetLink(self, args.pop("url"), **args)
            ctx.fleet.start()

    # ------------------------------------------------------------------ breakers

    def breaker(self, name: str, config: BreakerConfig | None = None) -> CircuitBreaker:
        """Get or create the breaker ``name``: the same breaker in every attached process.

        ``config`` applies when this call creates the breaker; for an existing breaker its
        shared numeric fields stay as they are in the segment (a warning is logged when
        they differ; use :meth:`CircuitBreaker.reconfigure` to change them) and its
        ``record``/``ignore``/``predicate`` apply to this process.
        """
        self._check_open()
        cached = self._breakers.get(name) if type(name) is str else None
        if cached is not None and config is None:
            return cached
        if config is not None and not isinstance(config, BreakerConfig):
            raise ConfigError("config", f"expected a BreakerConfig, got {type(config).__name__}")
        encoded = encode_name(name)
        wanted = config if config is not None else BreakerConfig()
        ctx, lay = self._context, self._segment.layout
        index = self._registry.index(name, encoded, wanted, ctx.ident)
        rec = lay.record(index)
        if config is not None and not BreakerConfig.from_words(self._registry.read_config(rec)).shared_equal(config):
            log.warning("breaker %r exists with a different configuration; keeping the shared one", name)
        gate = _native.Gate(
            region=self._segment.region,
            record=rec,
            cells=lay.breaker_cells(index),
            ring=lay.breaker_ring(index),
            fuse=L.H_FUSE,
            high_water=L.H_HIGH_WATER,
            slot=ctx.slot,
            max_slots=lay.max_workers,
            buckets=L.BUCKETS,
            clock=ctx.gate_clock,
        )
        breaker = CircuitBreaker(ctx, self._registry, index, name, gate, wanted)
        fresh = name not in self._breakers
        self._breakers[name] = breaker
        self._made.add(breaker)
        if fresh and ctx.fleet is not None:
            ctx.fleet.adopt_breaker(breaker)  # this process's first use: read the fleet's state
        return breaker

    def breaker_names(self) -> list[str]:
        """Names of every breaker in the segment, in creation order."""
        self._check_open()
        return self._registry.names()

    def _check_open(self) -> None:
        if self.closed:
            raise SegmentError(self.name, f"core {self.name!r} is closed")


class _SlotLease:
    """A core's claim on its worker slot, given back once (by close() or by collection)."""

    __slots__ = ("slots", "slot", "ident")

    def __init__(self, slots: SlotRegistry, slot: int, ident: int) -> None:
        self.slots, self.slot, self.ident = slots, slot, ident

    def end(self) -> None:
        if not self.slots.closed:
            self.slots.release(self.slot, self.ident)


def _after_fork_in_child() -> None:
    for core in list(_live_cores):
        try:
            core._reclaim_after_fork()
        except CapacityError:
            log.error("forked child found no free worker slot in %r; closing it in the child", core)
            core.close()


os.register_at_fork(after_in_child=_after_fork_in_child)
