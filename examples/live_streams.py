"""A desk on streams, offline: a paper venue publishes its book and its order updates over
WebSocket on loopback (Binance's format); a feed writes the top of book into the shared
quote table and marks the risk ledger (routing reads such quotes instead of asking venues
for their books); the order manager follows the venue's order updates, so a resting order's fill arrives
without a poll.

    python live_streams.py
"""

from __future__ import annotations

import asyncio
import dataclasses

import bot4
from bot4.streams.binance_ws import BinanceStreams
from bot4.streams.feed import Feed, FeedConfig
from bot4.venues.paper_stream import PaperStream

SYMBOLS = {"BTC/USDT": "BTCUSDT"}


async def main() -> None:
    venue = bot4.PaperExchange("paper")
    venue.set_book("BTC/USDT", bids=[(99.0, 5.0)], asks=[(101.0, 5.0)])
    stream = PaperStream(venue, SYMBOLS)  # the venue's streams on 127.0.0.1, a free port
    await stream.start()
    with bot4.Core.create() as core:
        core.risk.configure(
            dataclasses.replace(bot4.RiskLimits(), require_stop_loss=False, max_position_risk=None, max_price_age=2.0)
        )
        core.risk.set_equity(100_000.0)
        updates = BinanceStreams("paper", stream.url, SYMBOLS, user_url=stream.user_url)
        core.plugins.register(venue)
        core.plugins.register(updates)
        feed = Feed(core, FeedConfig(url=stream.url, venue="paper", symbols=SYMBOLS, mark_seconds=0.0))
        stop = asyncio.Event()
        feeding = asyncio.create_task(feed.run(stop))
        manager = bot4.OrderManager(core, routing="best_price")
        following = asyncio.create_task(manager.follow())  # every stream named as a venue
        try:
            for tick in range(1000):  # the market moves every 10 ms; each change is published, fed, marked
                venue.set_book("BTC/USDT", bids=[(99.5 - tick * 1e-4, 5.0)], asks=[(100.5, 5.0)])
                await asyncio.sleep(0.01)
                if core.quotes.get("paper", "BTC/USDT") is not None:
                    break
            quote = core.quotes.get("paper", "BTC/USDT")
            assert quote is not None
            print(f"quote {quote.bid} / {quote.ask}, mark {core.risk.ledger.mark('BTC/USDT')}")

            resting = await manager.asubmit(
                bot4.Order(symbol="BTC/USDT", side="buy", quantity=1.0, type="limit", price=100.0)
            )
            print(f"order {resting.status.name}")

            venue.set_book("BTC/USDT", bids=[(98.0, 5.0)], asks=[(99.8, 5.0)])  # the market comes to it
            while resting.status is not bot4.OrderStatus.FILLED:
                await asyncio.sleep(0.01)  # no poll: the venue's order update tells the fill
            position = core.risk.snapshot().positions["BTC/USDT"]
            print(f"order {resting.status.name} at {resting.tracked.average_fill_price}, position {position.quantity}")
        finally:
            following.cancel()
            stop.set()
            await asyncio.gather(following, feeding, return_exceptions=True)
            await updates.close()
    await stream.stop()


if __name__ == "__main__":
    asyncio.run(main())
