"""Instructions per operation, counted by valgrind: repeatable whatever the machine is doing.

Wall-clock medians on a shared 2-core machine move by 2x from one minute to the next;
instruction counts do not. Run one operation K times inside ``itertools.starmap`` and let
callgrind collect only there (the set-up is not counted):

    PYTHONHASHSEED=0 valgrind --tool=callgrind --toggle-collect=starmap_next \\
        .venv/bin/python benches/count_instructions.py check 2000

then divide ``Collected`` by K. Operations: ``check`` (every built-in rule, the scenario of
benches/test_risk.py), ``halted`` (denied by the kill switch), ``reserve`` (reserve and
release), ``success`` (a guarded call on a closed breaker), ``feed`` (one Binance
bookTicker handled by the feed, benches/test_streams.py) and ``ccxtpro`` (the same
message handled by ccxt.pro's binance, after its JSON decode).
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections import deque
from collections.abc import Callable
from itertools import repeat, starmap

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benches.test_risk import desk as desk_fixture  # noqa: E402
from bot4 import Core, Order, RiskEngine, make_plugin_manager  # noqa: E402


def operation(name: str, desk: tuple[RiskEngine, Order], core: Core) -> Callable[[], object]:
    """The operation ``name`` on a desk set up as the benchmarks do."""
    risk, order = desk
    if name == "check":
        return lambda: risk.check(order)
    if name == "halted":
        risk.kill_switch.trip("bench")
        return lambda: risk.check(order)
    if name == "reserve":

        def reserve_release() -> None:
            decision = risk.reserve(order)
            assert decision.reservation is not None
            risk.release(decision.reservation)

        return reserve_release
    if name == "success":
        call: Callable[[], None] = core.breaker("venue")(lambda: None)
        return call
    if name == "feed":
        from benches.test_streams import SYMBOLS, messages
        from bot4.streams.feed import Feed, FeedConfig

        feed = Feed(core, FeedConfig(url="ws://127.0.0.1:9", venue="v", symbols=SYMBOLS, mark=False))
        stream = iter(messages(100_000))  # (times + 200 of them at most)
        return lambda: feed.on_message(next(stream))
    raise SystemExit(f"unknown operation {name!r}: check, halted, reserve, success, feed or ccxtpro")


async def ccxtpro(times: int) -> None:
    """``ccxtpro``: ccxt.pro's binance handling the feed benchmark's messages (it wants a running loop)."""
    import json

    import ccxt.pro

    from benches.test_streams import _market, messages

    exchange = ccxt.pro.binance({"options": {"defaultType": "spot"}})
    try:
        exchange.set_markets([_market()])
        client = exchange.client("wss://stream.binance.com:9443/stream")
        stream = iter(messages(times + 200))

        def op() -> None:
            exchange.handle_message(client, json.loads(next(stream)))

        for _ in range(200):
            op()
        deque(starmap(op, repeat((), times)), maxlen=0)
    finally:
        await exchange.close()


def main() -> None:
    name, times = sys.argv[1], int(sys.argv[2])
    if name == "ccxtpro":
        asyncio.run(ccxtpro(times))
        return
    desks = desk_fixture.__wrapped__()  # type: ignore[attr-defined]
    with Core.create(plugins=make_plugin_manager(entry_points=False)) as core:
        try:
            op = operation(name, next(desks), core)
            for _ in range(200):  # warm the caches (rules, symbols)
                op()
            deque(starmap(op, repeat((), times)), maxlen=0)
        finally:
            desks.close()  # the desk's segment is unlinked


if __name__ == "__main__":
    main()
