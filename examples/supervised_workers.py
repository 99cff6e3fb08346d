"""Worker processes under a supervisor, sharing one risk ledger and one venue breaker.

    python examples/supervised_workers.py [seconds]

Each worker trades BTC/USDT on its own paper venue through an order manager; the desk's
limits (here: at most 3 open orders, 2% risk per position) hold across all of them.
"""

from __future__ import annotations

import dataclasses
import random
import sys
import uuid

import bot4


def trade(context: bot4.WorkerContext) -> None:
    venue = bot4.PaperExchange("venue")
    venue.set_book("BTC/USDT", bids=[(99.0, 100.0)], asks=[(101.0, 100.0)])
    context.core.plugins.register(venue, name="venue")
    om = bot4.OrderManager(context.core, routing="primary")
    rng = random.Random(context.index)
    while context.running():
        side = rng.choice(["buy", "sell"])
        stop = 98.0 if side == "buy" else 102.0
        om.submit(bot4.Order(symbol="BTC/USDT", side=side, quantity=0.5, stop_loss=stop))
        om.mark("BTC/USDT", 100.0 + rng.uniform(-1, 1))
        context.sleep(0.02)


def main() -> int:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 3.0
    with bot4.Core.create(f"example-{uuid.uuid4().hex[:6]}") as core:
        core.risk.configure(dataclasses.replace(bot4.RiskLimits(), max_correlation=None, max_orders_per_second=200))
        core.risk.set_equity(100_000)
        core.risk.on_price("BTC/USDT", 100.0)
        code = bot4.run_workers(trade, 3, core=core, duration=seconds)
        snap = core.risk.snapshot()
        print(f"exit {code}; BTC position {snap.positions['BTC/USDT'].quantity:+.2f}; audit {core.risk.audit()}")
        return code


if __name__ == "__main__":
    sys.exit(main())
