"""An entry with its protective stop and take-profit, one-cancels-other.

    python examples/bracket.py

The paper venue takes no stop orders, so bot4 emulates the stop: it is held (in the
segment, for every worker) and fires on the mark that reaches it. The take-profit rests at
the venue; when the stop fires and fills, the take-profit is canceled.
"""

from __future__ import annotations

import sys
import uuid

import bot4


def main() -> int:
    with bot4.Core.create(f"example-{uuid.uuid4().hex[:6]}") as core:
        core.risk.set_equity(100_000)
        core.risk.on_price("BTC/USDT", 100.0)
        venue = bot4.PaperExchange("venue")
        venue.set_book("BTC/USDT", bids=[(99.0, 10.0)], asks=[(101.0, 10.0)])
        core.plugins.register(venue, name="venue")
        om = bot4.OrderManager(core, routing="primary", protect=True)
        entry = om.submit(bot4.Order(symbol="BTC/USDT", side="buy", quantity=1.0, stop_loss=98.0, take_profit=110.0))
        stop, target = (om.get(i) for i in entry.protection)
        print("entry", entry.status.name, "| stop", stop.status.name, "(emulated)" if stop.emulated else "",
              "| take-profit", target.status.name)  # fmt: skip
        venue.set_book("BTC/USDT", bids=[(97.0, 10.0)], asks=[(97.5, 10.0)])
        om.mark("BTC/USDT", 97.5)  # through the stop
        print("after the mark: stop", stop.status.name, "| take-profit", target.status.name)
        print("position", core.risk.snapshot().positions["BTC/USDT"].quantity, "| P&L", om.pnl())
        assert stop.status is bot4.OrderStatus.FILLED and target.status is bot4.OrderStatus.CANCELED
    return 0


if __name__ == "__main__":
    sys.exit(main())
