"""Every hook bot4 calls, in one place. Each hook is prefixed ``bot4_``.

Implement a hook with :data:`bot4.hookimpl`::

    import bot4

    class PageOnTrip:
        @bot4.hookimpl
        def bot4_breaker_state_changed(self, breaker, old, new, reason):
            if new is bot4.BreakerState.OPEN:
                page_the_desk(f"{breaker.name} opened: {reason}")

    core.plugins.register(PageOnTrip())

Event hooks are notifications: an implementation that raises is logged (logger
``bot4.plugins``) and never breaks the guarded call or the other implementations.
Events fire in the process where the event happened, once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from bot4.breaker.breaker import CircuitBreaker
    from bot4.breaker.fuse import FuseState
    from bot4.breaker.state import BreakerState
    from bot4.core import Core
    from bot4.errors import CircuitOpenError
    from bot4.orders.manager import OrderManager
    from bot4.orders.model import Order
    from bot4.orders.reconcile import Reconciliation
    from bot4.orders.routing import Route, VenueInfo
    from bot4.risk.decision import Decision, Rejection
    from bot4.risk.ledger import RiskLedger
    from bot4.streams.adapter import StreamAdapter
    from bot4.venues.protocol import ExchangeAdapter

__all__ = ["hookimpl", "hookspec"]

PROJECT = "bot4"
hookspec = pluggy.HookspecMarker(PROJECT)
"""Marker for bot4 hook specifications."""
hookimpl = pluggy.HookimplMarker(PROJECT)
"""Marker for implementations of bot4 hooks."""


@hookspec
def bot4_breaker_state_changed(breaker: CircuitBreaker, old: BreakerState, new: BreakerState, reason: str) -> None:
    """A breaker changed state.

    Called once, in the process that made the transition. With a fleet
    (:meth:`bot4.Core.connect`) each other host also calls it once, in the process that
    applied the fleet's transition to that host's segment.

    :param breaker: the breaker (its ``name``, ``snapshot()``, ...).
    :param old: the state it left.
    :param new: the state it entered.
    :param reason: why, in words (``"failure rate reached its threshold (...)"``, ``"reset"``, ...).
    :return: nothing; the result is ignored.
    """


@hookspec
def bot4_call_rejected(breaker: CircuitBreaker, error: CircuitOpenError) -> None:
    """A call was rejected by a breaker (or the global fuse) before it ran.

    Called in the rejecting process, just before ``error`` is raised to the caller.

    :param breaker: the breaker that rejected the call.
    :param error: the :class:`bot4.CircuitOpenError` about to be raised.
    :return: nothing; the result is ignored.
    """


@hookspec
def bot4_fuse_changed(core: Core, old: FuseState, new: FuseState, reason: str) -> None:
    """The core's global fuse changed state.

    Called once, in the process that made the change.

    :param core: the core whose fuse changed.
    :param old: the fuse state it left.
    :param new: the fuse state it entered.
    :param reason: why, in words.
    :return: nothing; the result is ignored.
    """


@hookspec
def bot4_check_order(order: Order, ledger: RiskLedger) -> Rejection | None:
    """A pre-trade risk rule: return a :class:`bot4.Rejection` to refuse ``order``, None to pass it.

    Every rule runs on every check (all rejections are reported, not just the first);
    the built-in rules are plugins named ``bot4.rule.*`` and run after yours. A rule
    that raises, or returns anything but a Rejection or None, rejects the order with
    code ``RULE_ERROR`` naming the rule: risk fails closed. Rules run on the hot path
    (a few hundred ns each is the budget) but never under the ledger lock: ``reserve``
    asks them first and re-checks the built-in limits under the lock as it commits, so a
    slow rule delays only its own order. Read the ledger, never write it.

    Example — no new positions in one symbol::

        class NoDoge:
            @bot4.hookimpl
            def bot4_check_order(self, order, ledger):
                if order.symbol == "DOGE/USDT" and not ledger.reduces_position(order):
                    return bot4.Rejection("no-doge", "SYMBOL_BANNED", "DOGE is closed for new risk")
                return None

    :param order: the :class:`bot4.Order` being checked.
    :param ledger: the :class:`bot4.RiskLedger`: positions, exposure, equity, limits, correlation.
    :return: a :class:`bot4.Rejection`, or None to approve.
    """


@hookspec
def bot4_order_rejected(order: Order, decision: Decision) -> None:
    """``risk.reserve`` rejected an order (what-if ``check`` calls do not fire it).

    :param order: the rejected order.
    :param decision: the :class:`bot4.Decision` with every rejection.
    :return: nothing; the result is ignored.
    """


@hookspec
def bot4_kill_switch_tripped(reason: str) -> None:
    """The kill switch tripped (by hand, or by the drawdown or daily-loss limit).

    Called once, in the process that tripped it.

    :param reason: why, in words.
    :return: nothing; the result is ignored.
    """


@hookspec
def bot4_orders_reconciled(manager: OrderManager, result: Reconciliation) -> None:
    """An order manager reconciled its orders with the venues and found something to tell:
    a leg adopted or ruled out, an order ended, fills that had not been seen, an order at a
    venue that no order here sent, or a venue that could not be asked.

    :param manager: the :class:`bot4.OrderManager`.
    :param result: the :class:`bot4.Reconciliation`.
    :return: nothing; the result is ignored.
    """


@hookspec
def bot4_exchange_adapters() -> list[ExchangeAdapter]:
    """Venues this plugin offers to order managers.

    Every implementation is called; their lists are joined. A venue's ``name`` must be
    unique: it also names the venue's circuit breaker.

    Example::

        class Venues:
            @bot4.hookimpl
            def bot4_exchange_adapters(self):
                return [MyBinanceAdapter(), bot4.PaperExchange("paper")]

    :return: a list of :class:`bot4.ExchangeAdapter` objects.
    """
    return []


@hookspec
def bot4_stream_adapters() -> list[StreamAdapter]:
    """Venue streams this plugin offers: a feed (:class:`bot4.streams.feed.Feed`, ``FeedConfig(adapter=name)``)
    and an order manager (:meth:`bot4.OrderManager.follow`) find them by name.

    Every implementation is called; their lists are joined. A stream adapter's ``name``
    must be unique, and is its venue's name (an order manager follows the streams named
    as its venues).

    Example::

        class Streams:
            @bot4.hookimpl
            def bot4_stream_adapters(self):
                return [BinanceStreams("binance", "wss://stream.binance.com:9443", {"BTC/USDT": "BTCUSDT"})]

    :return: a list of :class:`bot4.StreamAdapter` objects.
    """
    return []


@hookspec(firstresult=True)
def bot4_route_order(order: Order, venues: list[VenueInfo], strategy: str) -> Route | None:
    """Decide where ``order`` goes. Stops at the first non-None result.

    ``venues`` holds only the venues that can take the order now (their breaker is not
    open, they have the capability the order needs), in the order manager's order. The
    built-in strategies (``bot4.route.best_price``, ``lowest_fee``, ``fastest``, ``split``,
    ``round_robin``, ``primary``) answer only when ``strategy`` is their name; a user's
    strategy runs first and may answer for any name. When only one venue can take the
    order there is nothing to decide: it goes there whole, and no strategy is asked.

    :param order: the :class:`bot4.Order` to route.
    :param venues: the :class:`bot4.VenueInfo` candidates (``name``, ``fees``,
        ``capabilities``, ``latency``, ``book()``).
    :param strategy: the strategy name the order manager was configured with.
    :return: a :class:`bot4.Route` (legs of venue and quantity), or None to pass.
    """


@hookspec
def bot4_fleet_changed(core: Core, connected: bool, reason: str) -> None:
    """The fleet's Redis became unreachable (``connected`` False) or reachable again.

    Called in every process linked to the fleet (:meth:`bot4.Core.connect`), from its
    listener thread when Redis comes back. While unreachable the
    :class:`bot4.FleetPolicy` applies; on return the fleet state has been read again.

    :param core: the core whose link changed.
    :param connected: whether Redis answers now.
    :param reason: what happened, in words.
    :return: nothing; the result is ignored.
    """
