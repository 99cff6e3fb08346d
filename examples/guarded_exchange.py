"""A breaker around a ccxt exchange's calls; a paper exchange stands in offline.

    python examples/guarded_exchange.py [--live]

With ``--live`` (and ccxt installed, and the network), the order book comes from Binance's
public API through ccxt; otherwise from a paper exchange with the same methods. Either way
the calls go through one breaker shared by every process attached to the segment.
"""

from __future__ import annotations

import sys
import uuid

import bot4


def exchange(live: bool) -> object:
    if live:
        try:
            import ccxt

            venue = ccxt.binance({"timeout": 5000})
            venue.load_markets()
            return venue
        except Exception as exc:  # no ccxt, no network: offline it is
            print(f"live exchange unavailable ({type(exc).__name__}); using the paper exchange")
    paper = bot4.PaperExchange("binance")
    paper.set_book("BTC/USDT", bids=[(49_990.0, 2.0)], asks=[(50_010.0, 3.0)])
    return paper


def main() -> int:
    venue = exchange("--live" in sys.argv)
    with bot4.Core.create(f"example-{uuid.uuid4().hex[:6]}") as core:
        breaker = core.breaker("binance", bot4.BreakerConfig(consecutive_failures=3, open_seconds=10))

        @breaker
        def best_ask(symbol: str) -> float:
            return float(venue.fetch_order_book(symbol)["asks"][0][0])  # type: ignore[attr-defined]

        print("best ask:", best_ask("BTC/USDT"))
        breaker.force_open("maintenance window")  # every process now rejects calls at once
        try:
            best_ask("BTC/USDT")
        except bot4.CircuitOpenError as exc:
            print(f"rejected: {exc.breaker} is {exc.state.name} ({exc.cause})")
        breaker.reset("maintenance over")
        print("after reset:", best_ask("BTC/USDT"), breaker.snapshot().state.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
