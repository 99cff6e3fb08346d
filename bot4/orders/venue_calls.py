"""How the order manager's operations reach the venues.

An operation (submit, cancel, poll, amend, reconcile) is a generator — a *flow* — that
yields venue requests and receives their answers; a driver runs it with sync calls
(:meth:`VenueCalls._run`) or awaited ones (:meth:`VenueCalls._arun`), each venue method
guarded by the venue's breaker, and then runs the protective work the flow made due.
Upkeep runs first when due: a periodic reconciliation (``reconcile_every``) and, while the
kill switch is tripped to flatten, a flattening step (:mod:`bot4.orders.flatten`). An
exception from a venue call is thrown into the flow, which decides: a venue error moves
on, anything else is recorded on the order and re-raised.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable, Generator
from time import perf_counter_ns
from typing import TYPE_CHECKING, Any, TypeVar

from bot4.errors import CircuitOpenError, ConfigError, ExchangeError
from bot4.orders.flatten import flatten_flow
from bot4.orders.reconcile import Reconciliation, reconcile_flow
from bot4.risk.limits import TradingState

if TYPE_CHECKING:
    from bot4.core import Core
    from bot4.orders.protect import Protection
    from bot4.orders.routing import VenueInfo
    from bot4.shm.metrics import SegmentMetrics
    from bot4.venues.protocol import ExchangeAdapter

__all__ = ["Flow", "VenueCalls"]

T = TypeVar("T")
Flow = Generator[tuple[Any, ...], Any, T]
"""An order manager operation: yields venue requests, receives their results."""

log = logging.getLogger("bot4.orders")

_LATENCY_WEIGHT = 0.2  # EWMA weight of the newest latency sample
_FLATTENING = int(TradingState.FLATTENING)


async def _ainvoke(fn: Callable[..., Any], *args: Any) -> Any:
    result = fn(*args)
    return await result if inspect.isawaitable(result) else result


class VenueCalls:
    """Drivers of flows and the breaker-guarded venue calls (a part of the order manager)."""

    _protection: Protection
    _venues: dict[str, ExchangeAdapter]
    _breakers: dict[str, Any]
    _guarded: dict[tuple[str, str], Callable[..., Any]]
    _aguarded: dict[str, Callable[..., Any]]
    _latency: dict[str, float]
    _metrics: SegmentMetrics
    _trading_load: Callable[[int], int]
    _trading_i: int
    _upkeeping: bool
    _core: Core
    _reconcile_every_ns: int | None
    _reconciled_at: int | None
    _swept: bool
    _now_ns: Callable[[], int]
    _reconciled: Callable[[Reconciliation], Reconciliation]

    def _flattening(self) -> bool:
        """Whether the kill switch is tripped to flatten."""
        return self._trading_load(self._trading_i) & 0xFF == _FLATTENING

    def _reconcile_due(self) -> bool:
        every, last = self._reconcile_every_ns, self._reconciled_at
        return every is not None and (last is None or self._now_ns() - last >= every)

    def _upkeep_due(self) -> bool:
        """Whether upkeep is due before an operation: a periodic reconciliation, or a flattening step."""
        return not self._upkeeping and (self._flattening() or self._reconcile_due())

    def _upkeep(self, *, prefetch: bool) -> Flow[None]:
        """The reconciliation due (at the first operation, then every ``reconcile_every``
        seconds), then a flattening step while the kill switch says flatten."""
        if self._reconcile_due():
            self._reconciled_at = self._now_ns()
            sweep, self._swept = not self._swept, True  # the first sweeps every venue for every desk symbol
            self._reconciled((yield from reconcile_flow(self, cancel_foreign=False, sweep=sweep)))  # type: ignore[arg-type]
        if self._flattening():
            yield from flatten_flow(self, prefetch=prefetch, by_hand=False)  # type: ignore[arg-type]
        return None

    def _operation(self, flow: Flow[T], prefetch: bool, upkeeping: list[bool]) -> Flow[T]:
        """An operation's whole flow: the upkeep due, if any (its errors logged, never in the
        operation's way), then ``flow``, then the protective work it made due.
        ``upkeeping[0]`` is true while this operation's upkeep is under way."""
        if self._upkeep_due():
            self._upkeeping = upkeeping[0] = True
            try:
                yield from self._upkeep(prefetch=prefetch)
            except Exception:  # an adapter's own error: noted on its order; the operation asked for still runs
                log.exception("order manager upkeep failed; it is tried again at the next operation")
            finally:
                self._upkeeping = upkeeping[0] = False
        protection = self._protection
        if protection.stale:
            protection.queue_retries()
        value = yield from flow
        due = protection.due
        while due:
            yield from due.popleft()()
        return value

    def _run(self, flow: Flow[T]) -> T:
        """Run an operation with sync venue calls."""
        upkeeping = [False]
        try:
            return self._drive(self._operation(flow, False, upkeeping))
        finally:
            if upkeeping[0]:  # interrupted between two steps of its upkeep (Ctrl-C): the next operation may upkeep
                self._upkeeping = False

    async def _arun(self, flow: Flow[T]) -> T:
        """Run an operation with awaited venue calls (books fetched before the strategy asks)."""
        upkeeping = [False]
        try:
            return await self._adrive(self._operation(flow, True, upkeeping))
        finally:
            if upkeeping[0]:
                self._upkeeping = False

    def _durable_wait(self, timeout: float) -> bool:
        """Wait until the journal made every record so far durable (a ``("durable", timeout)`` request)."""
        journal = self._core.journal
        return journal is None or journal.wait_durable(timeout)

    async def _adurable_wait(self, timeout: float) -> bool:
        journal = self._core.journal
        return journal is None or await journal.await_durable(timeout)

    def _drive(self, flow: Flow[T]) -> T:
        """Drive a flow with sync venue calls (books are read lazily by the strategy)."""
        try:
            request = next(flow)
            while True:
                if request[0] == "books":
                    request = flow.send(set())
                    continue
                if request[0] == "durable":
                    try:
                        durable = self._durable_wait(request[1])
                    except BaseException as e:  # the flow gives back what it holds, then it propagates
                        flow.throw(e)
                        raise
                    request = flow.send(durable)
                    continue
                _, venue, method, args = request
                try:
                    result = self._call(venue, method, *args)
                except BaseException as exc:  # the flow decides (a venue error) or records and re-raises
                    request = flow.throw(exc)
                    continue
                request = flow.send(result)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    async def _adrive(self, flow: Flow[T]) -> T:
        """Drive a flow with awaited venue calls; candidate books are prefetched concurrently."""
        try:
            request = next(flow)
            while True:
                if request[0] == "durable":
                    try:
                        durable = await self._adurable_wait(request[1])
                    except BaseException as e:
                        flow.throw(e)
                        raise
                    request = flow.send(durable)
                    continue
                if request[0] == "books":
                    try:
                        unreadable = await self._prefetch_books(request[1])
                    except BaseException as exc:  # a cancelled task: the flow records where the order is
                        request = flow.throw(exc)
                        continue
                    request = flow.send(unreadable)
                    continue
                _, venue, method, args = request
                try:
                    result = await self._acall(venue, method, *args)
                except BaseException as exc:  # the flow decides (a venue error) or records and re-raises
                    request = flow.throw(exc)
                    continue
                request = flow.send(result)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    async def _prefetch_books(self, candidates: list[VenueInfo]) -> set[str]:
        async def fetch(info: VenueInfo) -> str | None:
            quoted = info._quoted
            if quoted is not None:
                info._cached = quoted(info.name, info.symbol)
                if info._cached is not None:
                    return None  # a fresh quote in the shared table: the venue is not asked
            try:
                info._cached = await self._acall(info.name, "fetch_order_book", info.symbol)
            except (ExchangeError, CircuitOpenError):
                return info.name
            return None

        results = await asyncio.gather(*(fetch(info) for info in candidates))
        return {name for name in results if name is not None}

    async def _acall(self, venue: str, method: str, *args: Any) -> Any:
        start = perf_counter_ns()
        try:
            result = await self._aguarded[venue](getattr(self._venues[venue], method), *args)
        except ExchangeError:
            self._note_failed(method, start)
            raise
        self._note_latency(venue, start, method)
        return result

    def _call(self, venue: str, method: str, *args: Any) -> Any:
        """Call ``method`` of ``venue`` through its breaker; keep its latency average."""
        start = perf_counter_ns()
        guarded = self._guarded.get((venue, method))
        if guarded is None:
            guarded = self._guarded[venue, method] = self._breakers[venue](getattr(self._venues[venue], method))
        try:
            result = guarded(*args)
        except ExchangeError:
            self._note_failed(method, start)
            raise
        if type(result) is not dict and type(result) is not list and inspect.isawaitable(result):
            close = getattr(result, "close", None)
            if close is not None:
                close()
            raise ConfigError("venues", f"venue {venue!r} is async: use the order manager's async methods")
        self._note_latency(venue, start, method)
        return result

    def _note_failed(self, method: str, start: int) -> None:
        """A venue call that failed (not one its breaker refused): an order's latency counts it."""
        if method == "create_order":
            self._metrics.observe_order_latency(perf_counter_ns() - start)

    def _note_latency(self, venue: str, start: int, method: str) -> None:
        elapsed = perf_counter_ns() - start
        if method == "create_order":  # the desk's bot4_order_latency_seconds
            self._metrics.observe_order_latency(elapsed)
        seconds = elapsed * 1e-9
        latency = self._latency
        previous = latency.get(venue)
        latency[venue] = seconds if previous is None else previous + _LATENCY_WEIGHT * (seconds - previous)
