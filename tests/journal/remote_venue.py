"""A paper venue in a process of its own, which outlives the desks that trade on it.

The venue runs in a :class:`multiprocessing.managers.BaseManager` server started by the test;
desk processes reach it through :class:`RemoteVenue`, an exchange adapter that forwards each
call (one at a time: the venue is locked) and raises the venue's errors as bot4 errors.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from multiprocessing.managers import BaseManager
from typing import Any

from bot4 import Fees, PaperExchange
from bot4.errors import ExchangeError, OrderNotFoundError
from bot4.plugins.hookspecs import hookimpl

_VENUE: LockedVenue | None = None


class LockedVenue:
    """The served venue: one call at a time; errors returned, not raised (they do not pickle)."""

    def __init__(self) -> None:
        self._venue = PaperExchange("venue-a", fees=Fees(maker=0.0002, taker=0.0005))
        self._lock = threading.Lock()

    def call(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, Any]:
        with self._lock:
            try:
                return "ok", getattr(self._venue, method)(*args, **kwargs)
            except OrderNotFoundError as e:
                return "missing", str(e)
            except ExchangeError as e:
                return "error", str(e)

    def orders(self) -> list[dict[str, Any]]:
        """Every order the venue took, with its trades (what the venue knows happened)."""
        with self._lock:
            return [dict(o, trades=list(o["trades"])) for o in self._venue._orders.values()]


def _venue() -> LockedVenue:
    global _VENUE
    if _VENUE is None:
        _VENUE = LockedVenue()
    return _VENUE


class VenueServer(BaseManager):
    """``VenueServer(address=("127.0.0.1", 0), authkey=...)``; ``.venue()`` is the served venue."""


VenueServer.register("venue", callable=_venue)


class RemoteVenue:
    """An exchange adapter for the served venue (register it as a plugin)."""

    name = "venue-a"
    fees = Fees(maker=0.0002, taker=0.0005)

    def __init__(self, address: tuple[str, int], authkey: bytes) -> None:
        server = VenueServer(address=address, authkey=authkey)
        server.connect()
        self._proxy = server.venue()  # type: ignore[attr-defined]
        self.capabilities: Mapping[str, bool] = self._call("__getattribute__", "capabilities")

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        status, value = self._proxy.call(method, args, kwargs)
        if status == "missing":
            raise OrderNotFoundError(self.name, value)
        if status == "error":
            raise ExchangeError(self.name, value)
        return value

    @hookimpl
    def bot4_exchange_adapters(self) -> list[RemoteVenue]:
        return [self]

    def create_order(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("create_order", *args, **kwargs)

    def cancel_order(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("cancel_order", *args, **kwargs)

    def fetch_order(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("fetch_order", *args, **kwargs)

    def fetch_open_orders(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("fetch_open_orders", *args, **kwargs)

    def fetch_closed_orders(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("fetch_closed_orders", *args, **kwargs)

    def fetch_balance(self) -> Any:
        return self._call("fetch_balance")

    def fetch_order_book(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("fetch_order_book", *args, **kwargs)

    def fetch_ticker(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("fetch_ticker", *args, **kwargs)

    def set_book(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("set_book", *args, **kwargs)
