"""The order manager: risk, routing, venues behind their breakers, fills, positions and P&L."""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bot4._numbers import is_positive
from bot4.breaker.config import BreakerConfig
from bot4.errors import (
    Bot4Error,
    CircuitOpenError,
    ConfigError,
    ExchangeError,
    UnknownOrderError,
)
from bot4.orders.amend import amend_flow
from bot4.orders.flatten import flatten_flow
from bot4.orders.model import Order, Side
from bot4.orders.placement import Placement
from bot4.orders.pnl import CostMethod, PnlBook, PnlTotals, PositionView
from bot4.orders.protect import STOP_TYPES, Protection
from bot4.orders.reconcile import Reconciliation, find_leg_flow, reconcile_flow
from bot4.orders.recover import recover_flow
from bot4.orders.report import VenueReport, VenueTrade, parse_report
from bot4.orders.routing import Route
from bot4.orders.status import OrderEvent, OrderStatus
from bot4.orders.tracked import Fill, TrackedOrder, Transition
from bot4.orders.triggers import HeldStop, TriggerTable
from bot4.orders.updates import check_update, update_report
from bot4.orders.venue_calls import Flow, VenueCalls, _ainvoke
from bot4.plugins.builtin.routing import STRATEGIES as BUILTIN_STRATEGIES
from bot4.plugins.dispatch import notify
from bot4.risk.decision import Decision, Reservation
from bot4.shm._proc import identity_pid
from bot4.streams.adapter import StreamAdapter, stream_adapters
from bot4.streams.events import OrderUpdate
from bot4.venues.protocol import ExchangeAdapter

if TYPE_CHECKING:
    from bot4.core import Core

__all__ = ["Flow", "ManagedOrder", "OrderManager"]

log = logging.getLogger("bot4.orders")
_new = tuple.__new__  # a NamedTuple without its Python-level __new__
_FOLLOW_PAUSE, _FOLLOW_PAUSE_MAX = 0.1, 5.0  # seconds before asking a failed stream again


def _idle() -> Flow[None]:
    """A flow that asks no venue anything (an operation that is only its upkeep)."""
    return None
    yield


def _mark_price(price: object) -> float:
    if not is_positive(price):
        raise ConfigError("price", f"a mark is a finite number > 0, got {price!r}")
    return float(price)  # type: ignore[arg-type]


@dataclass(eq=False, slots=True)
class ManagedOrder:
    """An order under management: its tracked state, risk decision and venue legs."""

    tracked: TrackedOrder
    decision: Decision | None = None
    route: Route | None = None
    legs: dict[str, str] = field(default_factory=dict)
    """venue -> venue order id, for every leg the venues accepted."""
    open_legs: frozenset[str] = frozenset()
    """Venues where a leg is still open."""
    unknown_legs: frozenset[str] = frozenset()
    """Venues that timed out on placing a leg: it may or may not exist there."""
    pending_legs: frozenset[str] = frozenset()
    """Venues of the route whose leg is not sent yet."""
    emulated: bool = False
    """A stop held by bot4 (no venue takes stop orders) whose trigger has not fired yet."""
    protection: tuple[str, ...] = ()
    """Client order ids of the protective exits placed for this entry's fills (``protect=True``)."""
    placing: str | None = None
    """The venue a placement (or an amendment) is out at, not answered yet: the order may be
    there, and no report of another leg ends it meanwhile."""
    ended_legs: frozenset[tuple[str, str]] = frozenset()
    """(venue, venue order id) of legs their venue reported ended: a later "open" report of
    one is older news, and never opens it again."""
    over_reserved: bool = False
    """Amended down: its reservation holds more than it can fill, and is released when it ends."""
    trigger: int = 0
    """An emulated stop's handle in the segment's stop triggers (0: none)."""
    shares_with: str | None = None
    """The other order of a one-cancels-other pair: both hold one reservation, released when both end."""
    reason: str = ""
    """Why the order was denied or rejected, in words."""
    accept_journaled: bool = False
    """Its venue's acceptance is journaled (or a fill said it)."""

    @property
    def id(self) -> str:
        """The client order id."""
        return self.tracked.id

    @property
    def status(self) -> OrderStatus:
        """The order's status."""
        return self.tracked.status

    @property
    def reservation(self) -> Reservation | None:
        """The risk reservation held for the order while it is open."""
        return None if self.decision is None else self.decision.reservation


class OrderManager(VenueCalls, Placement):
    """Submits orders through risk, routing and the venues' breakers; tracks them to the end.

    Venues come from the ``bot4_exchange_adapters`` hook, in plugin registration order; each is guarded by the core's
    breaker of the same name. An order goes: ``risk.reserve`` → the routing strategy →
    ``create_order`` at the venue(s) → acknowledgements and fills → positions, P&L and the
    risk ledger (``risk.on_fill``). Every terminal path releases what the order still holds.

    Args:
        core: the core (risk engine, breakers, plugins).
        routing: the routing strategy's name (built-in: ``best_price``, ``lowest_fee``,
            ``fastest``, ``split``, ``round_robin``, ``primary``).
        cost_method: how P&L measures the cost of what is closed.
        breaker_config: the config of venue breakers this manager creates.
        keep_finished: how many finished orders :meth:`get` still finds (oldest forgotten first).
        protect: place protective exits for every fill of an entry that names a ``stop_loss``
            (and ``take_profit``): see :mod:`bot4.orders.protect`.
        reconcile_every: reconcile with the venues (:meth:`reconcile`) before the first
            operation, and then before any operation once this many seconds (of the core's
            clock) have passed since the last; None: only when :meth:`reconcile` is called.
        quote_max_age: routing takes a venue's top of book from the shared quote table
            (``core.quotes``, written by a feed: :mod:`bot4.streams.feed`) instead of asking
            the venue for its book, while that quote is at most this many seconds old (by its
            receive time) and its top level holds the whole order; an older quote, a smaller
            one, or none, and the venue is asked. None: always ask.
        durable: with a journal (``Core.create(journal=...)``), send no order before its
            reservation's record is durable, waiting at most this many seconds (a few ms
            normally; past it, the order is denied and released). After a crash of the whole
            host the journal then knows every order a venue may hold. None: orders go out at
            once, and an order sent in the last moment before such a crash can be unknown to
            the rebuilt desk (a sweeping :meth:`reconcile` lists it as foreign).
    """

    def __init__(
        self,
        core: Core,
        *,
        routing: str = "best_price",
        cost_method: CostMethod = CostMethod.AVERAGE,
        breaker_config: BreakerConfig | None = None,
        keep_finished: int = 10_000,
        protect: bool = False,
        reconcile_every: float | None = None,
        quote_max_age: float | None = 1.0,
        durable: float | None = None,
    ) -> None:
        if durable is not None and not (is_positive(durable) and durable < 1e6):
            raise ConfigError("durable", f"expected seconds > 0 or None, got {durable!r}")
        self._durable = durable
        if quote_max_age is not None and not (is_positive(quote_max_age) and quote_max_age < 1e9):
            raise ConfigError("quote_max_age", f"expected seconds > 0 or None, got {quote_max_age!r}")
        if reconcile_every is not None and not (is_positive(reconcile_every) and 0.001 <= reconcile_every < 1e9):
            raise ConfigError("reconcile_every", f"expected seconds >= 0.001 or None, got {reconcile_every!r}")
        if not isinstance(protect, bool):
            raise ConfigError("protect", f"expected True or False, got {protect!r}")
        if isinstance(keep_finished, bool) or not isinstance(keep_finished, int) or keep_finished < 0:
            raise ConfigError("keep_finished", f"expected an integer >= 0, got {keep_finished!r}")
        if not isinstance(routing, str) or not routing:
            raise ConfigError("routing", f"expected a strategy name, got {routing!r}")
        self._core = core
        self._now_ns = core.clock.now_ns
        self._risk = core.risk
        self._journaled = core.journal is not None  # a journal is on from a core's creation or never
        self._routing = routing
        self._pnl = PnlBook(cost_method)
        self._orders: dict[str, ManagedOrder] = {}
        self._keep_finished = keep_finished
        self._finished: deque[str] = deque()
        self._latency: dict[str, float] = {}
        self._metrics = core.metrics
        self._quotes = core.quotes
        self._quote_max_age_ns = None if quote_max_age is None else round(quote_max_age * 1e9)
        self._venues: dict[str, ExchangeAdapter] = {}
        for group in reversed(core.plugins.hook.bot4_exchange_adapters()):  # in registration order
            for adapter in group:
                if not isinstance(adapter, ExchangeAdapter):
                    raise ConfigError("venues", f"{adapter!r} is not an ExchangeAdapter")
                if adapter.name in self._venues:
                    raise ConfigError("venues", f"two venues are named {adapter.name!r}")
                self._venues[adapter.name] = adapter
        if not self._venues:
            raise ConfigError("venues", "no venue: register an adapter plugin (bot4_exchange_adapters) first")
        builtin = {strategy.name for strategy in BUILTIN_STRATEGIES}
        user_strategies = [
            impl for impl in core.plugins.hook.bot4_route_order.get_hookimpls() if impl.plugin not in BUILTIN_STRATEGIES
        ]
        if routing not in builtin and not user_strategies:
            raise ConfigError(
                "routing", f"no routing strategy named {routing!r} (built-in: {', '.join(sorted(builtin))})"
            )
        self._breakers = {name: core.breaker(name, breaker_config) for name in self._venues}
        self._guarded: dict[tuple[str, str], Callable[..., Any]] = {}  # (venue, method) -> through its breaker
        self._aguarded = {name: breaker(_ainvoke) for name, breaker in self._breakers.items()}
        self._strategies: list[Callable[..., Route | None]] = []
        self._strategies_gen = -1
        self._venue_rows = [(name, a, self._breakers[name]) for name, a in self._venues.items()]
        self._protection = Protection(self, brackets=protect)
        segment = core._context.segment
        self._triggers = TriggerTable(segment.region, segment.layout, core._context.ident)
        self._closing: dict[tuple[str, str], str] = {}  # (symbol, venue) -> its flattening close
        self._trading_load, self._trading_i = core.risk._load, core.risk._i_trading
        self._upkeeping = False
        self._reconcile_every_ns = None if reconcile_every is None else round(reconcile_every * 1e9)
        self._reconciled_at: int | None = None
        self._swept = False  # whether a reconciliation swept every venue for every desk symbol yet
        self._denied_at: dict[str, float] = {}  # symbol -> the desk's position when a close was denied
        self._async_venues = any(
            inspect.iscoroutinefunction(getattr(a, "create_order", None)) for a in self._venues.values()
        )

    # ------------------------------------------------------------------ queries

    @property
    def venues(self) -> list[str]:
        """Venue names, in the order routing sees them."""
        return list(self._venues)

    def get(self, order_id: str) -> ManagedOrder:
        """The order with client order id ``order_id``."""
        managed = self._orders.get(order_id)
        if managed is None:
            raise UnknownOrderError(f"no order {order_id!r} in this order manager")
        return managed

    def orders(self) -> list[ManagedOrder]:
        """Every open order and the last ``keep_finished`` finished ones, in submission order."""
        return list(self._orders.values())

    def open_orders(self) -> list[ManagedOrder]:
        """Orders that may still trade."""
        return [m for m in self._orders.values() if m.tracked.is_open]

    def positions(self) -> list[PositionView]:
        """Positions per symbol, venue and strategy."""
        return self._pnl.positions()

    def pnl(self, *, symbol: str | None = None, venue: str | None = None, strategy: str | None = None) -> PnlTotals:
        """Realized, fees and unrealized P&L, optionally for one symbol, venue or strategy."""
        return self._pnl.totals(symbol=symbol, venue=venue, strategy=strategy)

    @property
    def book(self) -> PnlBook:
        """The P&L book."""
        return self._pnl

    def mark(self, symbol: str, price: float) -> None:
        """A new price: unrealized P&L here; marks, exposure and drawdown in the risk ledger; and
        the emulated stops it reaches fire (sent to their venues, so sync adapters: see :meth:`amark`).
        Stops go first: a protective exit is not kept waiting for the bookkeeping."""
        price = _mark_price(price)
        if self._upkeep_due() and not self._async_venues:  # (async venues: upkeep waits for an async call)
            self._run(_idle())
        fired = self._protection.fired(symbol, price)
        error = self._run(self._fire_all(fired, price)) if fired else None
        if self._triggers.in_use():  # then the stops of workers that died, reached by this price
            orphans = self._protection.orphans(symbol, price)
            if orphans:
                error = self._run(self._fire_all(orphans, price)) or error
        self._marked(symbol, price, error)

    async def amark(self, symbol: str, price: float) -> None:
        """:meth:`mark` from asyncio (adapters may be sync or async)."""
        price = _mark_price(price)
        if self._upkeep_due():
            await self._arun(_idle())
        fired = self._protection.fired(symbol, price)
        error = await self._arun(self._fire_all(fired, price)) if fired else None
        if self._triggers.in_use():
            orphans = self._protection.orphans(symbol, price)
            if orphans:
                error = await self._arun(self._fire_all(orphans, price)) or error
        self._marked(symbol, price, error)

    def _adopt_stop(self, held: HeldStop) -> ManagedOrder | None:
        """A stop a worker that died placed, taken over here: a managed order of this manager,
        ACCEPTED, holding the dead worker's reservation (or a new one if that ended); None if
        no reservation can be had (it is dropped, and logged)."""
        order = held.order
        if order.client_order_id in self._orders:
            return None
        reservation = self._risk._take_over(held.reservation_id, held.reservation_slot, order.symbol)
        decision = self._risk.reserve(order) if reservation is None else _new(Decision, ((), reservation))
        if not decision.approved:
            log.warning(
                "stop %s of a process that died is dropped: %s", order.client_order_id, ", ".join(decision.codes)
            )
            return None
        managed = ManagedOrder(self._tracked(order), decision=decision)
        self._orders[order.client_order_id] = managed
        now = self._now_ns()
        managed.tracked.apply(OrderEvent.SUBMITTED, now, f"taken over from process {identity_pid(held.dead_owner)}")
        managed.tracked.apply(OrderEvent.ACCEPTED, now, "trigger watched on marks (emulated by bot4)")
        return managed

    def _marked(self, symbol: str, price: float, error: Exception | None) -> None:
        self._pnl.on_mark(symbol, price)
        self._risk.on_price(symbol, price)
        if error is not None:
            raise error

    def _fire_all(self, fired: list[tuple[ManagedOrder, Order]], price: float) -> Flow[Exception | None]:
        """Fire each stop in turn; one stop's venue failing never keeps the others from firing
        (the first error is returned); on Ctrl-C the stops not fired yet are watched again."""
        error: Exception | None = None
        for k, (managed, as_sent) in enumerate(fired):
            try:
                yield from self._fire(managed, as_sent, price)
            except Exception as exc:
                error = error or exc
            except BaseException:
                for rest, _ in fired[k + 1 :]:
                    self._protection.hold(rest)
                raise
        return error

    def _fire(self, managed: ManagedOrder, as_sent: Order, price: float) -> Flow[ManagedOrder]:
        """An emulated stop's trigger was reached: route it as the order it becomes (``as_sent``)."""
        managed.tracked.apply(OrderEvent.TRIGGERED, self._now_ns(), f"mark {price}")
        in_flight: list[str] = []
        try:
            return (yield from self._place(managed, True, in_flight, as_sent))
        except BaseException as exc:
            self._abandon(managed, exc, in_flight)
            raise

    def flatten(self) -> list[ManagedOrder]:
        """Cancel every open order and close every position this manager holds, at the venue
        that holds it (see :mod:`bot4.orders.flatten`); returns the closing orders sent.

        Runs by itself at every operation while the kill switch is tripped to flatten; call
        it to flatten in any other state (closing orders are reduce-only, so a HALTED desk
        denies them).
        """
        if self._upkeeping:
            return []  # a step is under way already (another task's, or the caller's own)
        self._upkeeping = True  # no flattening step of its own first: this is one
        try:
            return self._run(flatten_flow(self, prefetch=False, by_hand=True))
        finally:
            self._upkeeping = False

    async def aflatten(self) -> list[ManagedOrder]:
        """:meth:`flatten` from asyncio."""
        if self._upkeeping:
            return []
        self._upkeeping = True
        try:
            return await self._arun(flatten_flow(self, prefetch=True, by_hand=True))
        finally:
            self._upkeeping = False

    # ------------------------------------------------------------------ submit

    def submit(self, order: Order) -> ManagedOrder:
        """Send ``order``: reserve, route, place. Returns the managed order in its new status.

        A risk rejection ends DENIED with the decision attached and nothing sent; no venue
        able to take it ends DENIED with the reason; venue errors move on to the next venue
        the strategy picks, and end REJECTED when none is left. What is not filled is
        released from the risk ledger when the order ends. For venues whose adapter is
        async, use :meth:`asubmit`.
        """
        return self._run(self._submit_flow(order, prefetch=False))

    async def asubmit(self, order: Order) -> ManagedOrder:
        """:meth:`submit` from asyncio; adapters may be sync or async.

        Before routing, the books of the candidate venues are fetched concurrently.
        """
        return await self._arun(self._submit_flow(order, prefetch=True))

    def _submit_flow(
        self, order: Order, *, prefetch: bool, share: ManagedOrder | None = None, venue: str | None = None
    ) -> Flow[ManagedOrder]:
        """``prefetch``: ask the driver for the candidates' books first (async: concurrently).
        ``share``: the other order of a one-cancels-other pair, whose reservation this one shares
        (only one of them can execute). ``venue``: the only venue it may go to."""
        if not isinstance(order, Order):
            raise ConfigError("order", f"expected a bot4.Order, got {type(order).__name__}")
        if order.client_order_id in self._orders:
            raise ConfigError("client_order_id", f"order {order.client_order_id!r} was already submitted")
        managed = ManagedOrder(self._tracked(order))
        self._orders[order.client_order_id] = managed
        if share is None:
            decision = self._risk.reserve(order)
        else:
            decision = share.decision  # type: ignore[assignment]
            managed.shares_with, share.shares_with = share.id, managed.id
        managed.decision = decision
        if self._durable and share is None and decision.reservation is not None:
            try:
                durable = yield ("durable", self._durable)
            except BaseException:  # interrupted while waiting (Ctrl-C, a cancelled task): nothing was sent
                self._risk.release(decision.reservation)
                raise
            if not durable:
                self._risk.release(decision.reservation)
                managed.reason = "journal: the order's record was not durable in time; not sent"
                managed.tracked.apply(OrderEvent.DENIED, self._now_ns(), managed.reason)
                return managed
        if not decision.approved:
            managed.reason = "risk: " + ", ".join(decision.codes)
            managed.tracked.apply(OrderEvent.DENIED, self._now_ns(), managed.reason)
            return managed
        if order.type in STOP_TYPES and not any(a.capabilities.get("createStopOrder") for a in self._venues.values()):
            managed.tracked.apply(OrderEvent.SUBMITTED, self._now_ns(), "emulated by bot4")
            managed.tracked.apply(OrderEvent.ACCEPTED, self._now_ns(), "trigger watched on marks")
            managed.emulated = True
            self._protection.hold(managed)
            return managed
        in_flight: list[str] = []  # the venue a create_order is out at
        try:
            return (yield from self._place(managed, prefetch, in_flight, venue=venue))
        except BaseException as exc:
            self._abandon(managed, exc, in_flight)
            raise
        finally:
            if self._journaled and not managed.tracked.filled_quantity:
                self._journal_acceptance(managed)  # it rests: its acceptance is the news

    # ------------------------------------------------------------------ stream updates

    def on_order_update(self, venue: str, update: OrderUpdate) -> ManagedOrder | None:
        """Apply an order update that ``venue``'s stream pushed (see :mod:`bot4.orders.updates`):
        the order's status and its fill, once per trade id whether the stream or the venue's
        REST reply brings it first. Returns the order, or None when no order of this manager
        has the update's client order id (another worker's, or one sent by hand).

        Raises:
            ExchangeReplyError: the update is not a valid report (nothing is applied).
        """
        return self._run(self._update_flow(venue, update))

    async def aon_order_update(self, venue: str, update: OrderUpdate) -> ManagedOrder | None:
        """:meth:`on_order_update` from asyncio."""
        return await self._arun(self._update_flow(venue, update))

    async def follow(self, stream: StreamAdapter | None = None) -> None:
        """Apply every order update of ``stream`` (its ``watch_orders``) until cancelled; run it
        as a task beside the ones that submit. ``stream.name`` must be a venue of this manager;
        None: every stream adapter the plugins offer (``bot4_stream_adapters``) named as one.

        An update that cannot be applied is logged and skipped. When the stream fails
        (updates may have been missed meanwhile) the orders are reconciled with the venues
        (:meth:`areconcile`), and the stream asked again after a pause."""
        if stream is None:
            streams = [s for name, s in stream_adapters(self._core.plugins).items() if name in self._venues]
            if not streams:
                raise ConfigError("stream", f"no stream adapter is named as a venue of this manager ({self.venues})")
            async with asyncio.TaskGroup() as group:
                for each in streams:
                    group.create_task(self.follow(each))
            return
        if not isinstance(stream, StreamAdapter):
            raise ConfigError("stream", f"expected a bot4 StreamAdapter, got {type(stream).__name__}")
        if stream.name not in self._venues:
            raise ConfigError("stream", f"stream {stream.name!r} is not a venue of this order manager")
        pause = _FOLLOW_PAUSE
        while True:
            try:
                updates = await stream.watch_orders()
            except Exception as exc:
                log.warning(
                    "order updates of %s failed: %s; reconciling, asking again in %.1fs", stream.name, exc, pause
                )
                try:
                    await self.areconcile()
                except Exception:
                    log.exception("reconciling after %s's order updates failed did not succeed", stream.name)
                await asyncio.sleep(pause)
                pause = min(pause * 2, _FOLLOW_PAUSE_MAX)
                continue
            pause = _FOLLOW_PAUSE
            for update in updates:
                try:
                    await self.aon_order_update(stream.name, update)
                except Bot4Error as exc:
                    log.warning("an order update of %s was not applied: %s", stream.name, exc)
                except Exception:  # one update never stops the others
                    log.exception("an order update of %s was not applied", stream.name)

    def _update_flow(self, venue: str, update: OrderUpdate) -> Flow[ManagedOrder | None]:
        if venue not in self._venues:
            raise ConfigError("venue", f"no venue {venue!r} in this order manager")
        if type(update) is not OrderUpdate:
            raise ConfigError("update", f"expected a bot4 OrderUpdate, got {type(update).__name__}")
        check_update(venue, update)
        managed = (
            self._orders.get(update.client_order_id) if update.client_order_id else self._by_venue_id(venue, update)
        )
        if managed is None:
            return None
        order = managed.tracked.order
        known = managed.legs.get(venue)
        route = managed.route
        routed = known is not None or managed.placing == venue or (route is not None and venue in route.venues)
        if update.symbol != order.symbol or (known is not None and known != update.order_id) or not routed:
            log.warning(
                "%s: an update for order %s (%s, venue id %s) does not match it (%s, venue id %s): ignored",
                venue,
                update.client_order_id,
                update.symbol,
                update.order_id,
                order.symbol,
                known,
            )
            return managed
        report = update_report(venue, update, order.quantity)
        if not managed.tracked.is_open:
            if report.trades and not managed.tracked._applied(f"{venue}:{report.trades[0].id}"):
                log.warning(
                    "%s: a fill of order %s arrived after it ended (%s): reconcile", venue, managed.id, managed.status
                )
            return managed
        self._absorb(managed, venue, report, status_known=bool(update.status))
        return managed
        yield  # a flow that asks no venue anything

    def _by_venue_id(self, venue: str, update: OrderUpdate) -> ManagedOrder | None:
        """The open order whose leg at ``venue`` has the update's venue order id (an update
        without a client order id)."""
        for managed in self._orders.values():
            if managed.legs.get(venue) == update.order_id and managed.tracked.is_open:
                return managed
        return None

    # ------------------------------------------------------------------ venue reports

    def _absorb(self, managed: ManagedOrder, venue: str, report: VenueReport, *, status_known: bool = True) -> None:
        """Apply a venue's checked order report: acknowledgement, new trades, final status
        (``status_known`` False: a report of fills only, which says nothing of the leg's status)."""
        tracked, legs = managed.tracked, managed.legs
        status = report.status
        was_open = tracked.is_open  # ended already (a stream's report came first): it is finished once
        legs[venue] = report.id
        if managed.unknown_legs:
            managed.unknown_legs -= {venue}
        if tracked.venue is None:
            tracked.venue = venue
        elif tracked.venue != venue:
            tracked.venue = "split"
        tracked.venue_order_id = report.id if len(legs) == 1 else None
        if status == "rejected":
            managed.open_legs -= {venue}
            managed.ended_legs |= {(venue, report.id)}
            alone = len(legs) == 1 and not (managed.unknown_legs or managed.pending_legs or managed.open_legs)
            alone = alone and managed.placing is None
            if alone and tracked.status is OrderStatus.SUBMITTED:
                managed.reason = f"{venue} rejected the order"
                tracked.apply(OrderEvent.REJECTED, self._now_ns(), managed.reason)
                self._finish(managed)
            return
        if tracked.status is OrderStatus.SUBMITTED:
            tracked.apply(OrderEvent.ACCEPTED, self._now_ns(), venue)
        if report.filled is None:
            for trade in report.trades:
                self._apply_trade(managed, venue, trade)
        else:
            self._apply_reported(managed, venue, report)
        if not status_known:
            if was_open and tracked.status is OrderStatus.FILLED:
                self._finish(managed)
            return
        if status != "open":
            managed.ended_legs |= {(venue, report.id)}
            managed.open_legs -= {venue}
        elif (venue, report.id) not in managed.ended_legs:
            managed.open_legs |= {venue}
        if not was_open:
            return
        if tracked.status is OrderStatus.FILLED:
            self._finish(managed)
        elif (
            status in ("canceled", "expired")
            and tracked.is_open
            and not managed.open_legs
            and not managed.pending_legs
            and not managed.unknown_legs
            and managed.placing is None  # a leg still being sent (or amended) may trade
        ):
            event = OrderEvent.CANCELED if status == "canceled" else OrderEvent.EXPIRED
            tracked.apply(event, self._now_ns(), venue)
            self._finish(managed)

    def _apply_reported(self, managed: ManagedOrder, venue: str, report: VenueReport) -> None:
        """Apply a report whose venue says how much filled in all (``filled``): its trades up to
        that, and the rest — fills the venue reported without trades — at the price the
        report implies (its average, else its limit price; no fee known)."""
        target = report.filled or 0.0
        slack = target * 1e-9 + 1e-12
        fills = managed.tracked.fills
        applied = math.fsum(f.quantity for f in fills if f.venue == venue) if fills else 0.0
        for trade in report.trades:
            if applied + trade.quantity <= target + slack and self._apply_trade(managed, venue, trade):
                applied += trade.quantity
        gap = min(target - applied, managed.tracked.remaining)
        if gap <= slack:
            return
        price = report.price
        if report.average is not None:
            notional = math.fsum(f.quantity * f.price for f in managed.tracked.fills if f.venue == venue)
            implied = (report.average * target - notional) / gap
            price = implied if math.isfinite(implied) and implied > 0 else report.average
        if price is None:  # filled at a price nobody said: the venue must be asked again
            managed.unknown_legs |= {venue}
            managed.reason = f"{venue} reported {gap} filled without trades or a price; reconcile"
            return
        self._apply_trade(managed, venue, VenueTrade(f"{report.id}:filled:{target!r}", gap, price, 0.0, "taker"))

    def _apply_trade(self, managed: ManagedOrder, venue: str, trade: VenueTrade) -> bool:
        tracked = managed.tracked
        order = tracked.order
        fill = Fill(
            trade_id=f"{venue}:{trade.id}",
            quantity=trade.quantity,
            price=trade.price,
            fee=trade.fee,
            liquidity=trade.liquidity,
            venue=venue,
        )
        if not tracked.fill(fill, self._now_ns()):
            return False  # a trade already applied
        quantity, price, fee = fill.quantity, fill.price, fill.fee
        realized = self._pnl._fill(
            order.symbol, quantity if order.side is Side.BUY else -quantity, price, fee, venue, order.strategy
        )
        decision = managed.decision
        if decision is not None and decision.reservation is not None:
            self._risk._fill(decision.reservation, quantity, price, fee, fill.trade_id)
        self._metrics.add_fill(venue, order.strategy, realized, fee, quantity * price)  # after the ledger's own
        self._protection.on_fill(managed, quantity)
        return True

    def _finish(self, managed: ManagedOrder) -> None:
        """Give back what the order's reservation still holds (idempotent); remember a bounded past."""
        if managed.tracked.status is not OrderStatus.FILLED:
            if managed.shares_with is not None:
                self._protection.forget(managed.id)  # an exit that ended unfilled: its partner stands alone
            self._protection.on_end(managed)
        decision = managed.decision
        partner = self._orders.get(managed.shares_with) if managed.shares_with else None
        if (
            decision is not None
            and decision.reservation is not None
            and (managed.tracked.status is not OrderStatus.FILLED or managed.over_reserved)
            and not (partner is not None and partner.decision is decision and partner.tracked.is_open)
        ):
            self._risk.release(decision.reservation)  # a filled order's reservation ended with its last fill
        finished = self._finished
        finished.append(managed.tracked.order.client_order_id)
        if len(finished) > self._keep_finished:
            orders = self._orders
            while len(finished) > self._keep_finished:
                old = orders.get(finished.popleft())
                if old is not None and not old.tracked.is_open:
                    del orders[old.id]

    # ------------------------------------------------------------------ cancel and poll

    def cancel(self, order_id: str) -> ManagedOrder:
        """Cancel an open order at its venue(s); a refused cancel returns it to its open status.
        An order that has ended already is returned as it is."""
        return self._run(self._cancel_flow(order_id))

    async def acancel(self, order_id: str) -> ManagedOrder:
        """:meth:`cancel` from asyncio."""
        return await self._arun(self._cancel_flow(order_id))

    def _cancel_flow(self, order_id: str) -> Flow[ManagedOrder]:
        managed = self.get(order_id)
        tracked, now = managed.tracked, self._core.clock.now_ns
        if not tracked.is_open:
            return managed  # ended already (filled, or canceled meanwhile: by a flattening step)
        if managed.placing is not None:  # sent and not answered yet: nothing to cancel it by yet
            tracked.apply(OrderEvent.PENDING_CANCEL, now(), "cancel requested")
            managed.reason = f"its placement at {managed.placing} has not answered yet: cancel again once it has"
            tracked.apply(OrderEvent.CANCEL_REJECTED, now(), managed.reason)
            return managed
        tracked.apply(OrderEvent.PENDING_CANCEL, now(), "cancel requested")
        if self._protection.release(managed):  # an emulated stop: no venue holds it
            tracked.apply(OrderEvent.CANCELED, now(), "canceled")
            self._finish(managed)
            return managed
        symbol = tracked.order.symbol
        refused: list[str] = []
        for venue in sorted(managed.unknown_legs):  # placed or not? ask the venue before anything else
            try:
                yield from find_leg_flow(self, managed, venue)
            except (ExchangeError, CircuitOpenError) as exc:
                refused.append(f"{venue}: {exc}")
        for venue in sorted(managed.unknown_legs):
            refused.append(f"{venue}: the order's placement there is unknown (it keeps no closed orders); reconcile")
        for venue, venue_id in list(managed.legs.items()):
            if venue not in managed.open_legs and managed.route is not None:
                continue  # that leg is over at its venue
            try:
                reply = yield ("call", venue, "cancel_order", (venue_id, symbol))
                report = parse_report(venue, reply, tracked.order.quantity)
            except (ExchangeError, CircuitOpenError) as exc:
                refused.append(f"{venue}: {exc}")
                continue
            managed.open_legs -= {venue}
            if report.filled is None:
                for trade in report.trades:
                    self._apply_trade(managed, venue, trade)
            else:
                self._apply_reported(managed, venue, report)
        if tracked.status is OrderStatus.FILLED:
            self._finish(managed)  # filled before the cancel reached it
            return managed
        if refused:
            if tracked.status is OrderStatus.PENDING_CANCEL:
                tracked.apply(OrderEvent.CANCEL_REJECTED, now(), "; ".join(refused))
            managed.reason = "; ".join(refused)
        elif tracked.is_open:
            tracked.apply(OrderEvent.CANCELED, now(), "canceled")
            self._finish(managed)
        return managed

    def amend(self, order_id: str, *, quantity: float | None = None, price: float | None = None) -> ManagedOrder:
        """Change an open order's quantity (the new total) and/or limit price at its venue, with
        its reservation adjusted (see :mod:`bot4.orders.amend`). A refusal (risk or venue) leaves
        the order as it was, UPDATE_REJECTED in its history and the reason in ``reason``."""
        return self._run(amend_flow(self, order_id, quantity, price))

    async def aamend(self, order_id: str, *, quantity: float | None = None, price: float | None = None) -> ManagedOrder:
        """:meth:`amend` from asyncio."""
        return await self._arun(amend_flow(self, order_id, quantity, price))

    def reconcile(self, *, cancel_foreign: bool = False, sweep: bool = False) -> Reconciliation:
        """Bring the open orders in line with what their venues hold (see :mod:`bot4.orders.reconcile`):
        legs whose placement is unknown are found or ruled out, missed fills applied, orders
        with nothing left working ended and released; open orders no order here sent are
        reported, and canceled with ``cancel_foreign=True``. ``sweep=True`` lists every venue's
        open orders for every symbol the desk's ledger knows (else only for the symbols of open
        orders here). Run it at start-up and periodically (``reconcile_every`` does both)."""
        self._reconciled_at = self._now_ns()  # this is the reconciliation due, if one was
        self._swept = self._swept or sweep is True
        return self._reconciled(self._run(reconcile_flow(self, cancel_foreign=cancel_foreign, sweep=sweep)))

    async def areconcile(self, *, cancel_foreign: bool = False, sweep: bool = False) -> Reconciliation:
        """:meth:`reconcile` from asyncio."""
        self._reconciled_at = self._now_ns()
        self._swept = self._swept or sweep is True
        return self._reconciled(await self._arun(reconcile_flow(self, cancel_foreign=cancel_foreign, sweep=sweep)))

    def _tracked(self, order: Order) -> TrackedOrder:
        """A new order's record; with a journal, its transitions are journaled (fills are, with
        the ledger's own records)."""
        tracked = TrackedOrder(order)
        if self._journaled:
            tracked.on_transition = self._journal_transition
        return tracked

    def _journal_transition(self, tracked: TrackedOrder, transition: Transition) -> None:
        managed = self._orders.get(tracked.id)
        if managed is not None:
            self._journal_acceptance(managed)  # first, if it came before and is not journaled yet
            self._journal(managed, transition)

    def _journal_acceptance(self, managed: ManagedOrder) -> None:
        """Journal the order's acceptance by its venue, once, unless a fill said it already.

        Submissions and acceptances reach no listener (they are the order path's): a
        submission is its reservation's record; an acceptance is said by the order's first
        fill, or journaled with the first transition after it, or when its placement ends
        with the order resting."""
        if managed.accept_journaled:
            return
        tracked = managed.tracked
        if tracked.filled_quantity:
            managed.accept_journaled = True
            return
        for transition in reversed(tracked.history):
            if transition.event is OrderEvent.ACCEPTED and transition.old is OrderStatus.SUBMITTED:
                managed.accept_journaled = True
                self._journal(managed, transition)
                return

    def _journal(self, managed: ManagedOrder, transition: Transition) -> None:
        tracked, decision = managed.tracked, managed.decision
        reservation = decision.reservation if decision is not None else None
        self._risk._record_order(
            tracked.id,
            0 if reservation is None else reservation.id,
            transition.new,
            tracked.filled_quantity,
            tracked.venue or "",
            transition.event.value,
            transition.detail,
        )

    def recover(self) -> Reconciliation:
        """Take back the orders a rebuilt desk's journal holds open and reconcile them (see
        :mod:`bot4.orders.recover`). Until it succeeds (no venue left unanswered), the desk
        refuses new risk. Call it once after ``Core.create(journal=...)`` rebuilt a desk; a
        process calling it while another does gets an error in the result."""
        return self._reconciled(self._run(recover_flow(self)))

    async def arecover(self) -> Reconciliation:
        """:meth:`recover` from asyncio."""
        return self._reconciled(await self._arun(recover_flow(self)))

    def _reconciled(self, result: Reconciliation) -> Reconciliation:
        if result != Reconciliation():  # something to tell: the bot4_orders_reconciled hook hears it
            notify(self._core.plugins, "bot4_orders_reconciled", manager=self, result=result)
        return result

    def _closed_orders_known(self, venue: str) -> bool:
        """Whether ``venue`` can list its recently closed orders (tells "never placed" from "ended")."""
        adapter = self._venues[venue]
        return bool(adapter.capabilities.get("fetchClosedOrders")) and hasattr(adapter, "fetch_closed_orders")

    def poll(self) -> int:
        """Fetch every open order from its venue(s) and apply what changed; returns how many were polled."""
        return self._run(self._poll_flow())

    async def apoll(self) -> int:
        """:meth:`poll` from asyncio."""
        return await self._arun(self._poll_flow())

    def _poll_flow(self) -> Flow[int]:
        polled = 0
        for managed in self.open_orders():
            polled += yield from self._poll_order_flow(managed)
        return polled

    def _poll_order_flow(self, managed: ManagedOrder) -> Flow[int]:
        """Fetch ``managed`` from the venue of each of its legs; returns how many answered."""
        order, polled = managed.tracked.order, 0
        for venue, venue_id in list(managed.legs.items()):
            try:
                reply = yield ("call", venue, "fetch_order", (venue_id, order.symbol))
                report = parse_report(venue, reply, order.quantity)
            except (ExchangeError, CircuitOpenError) as exc:
                managed.reason = str(exc)
                continue
            polled += 1
            self._absorb(managed, venue, report)
        return polled
