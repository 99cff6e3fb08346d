"""The quote table: written by one process, read by all, never torn, never waiting on the dead."""

from __future__ import annotations

import math
import multiprocessing as mp
import os
from typing import Any

import pytest

from bot4 import CapacityError, ConfigError, Core
from bot4.shm import layout as L
from bot4.streams.events import Quote
from bot4.streams.quotes import QuoteTable
from tests.breaker.test_processes import join_all, start

ctx = mp.get_context("spawn")


def quote(n: int, symbol: str = "BTC/USDT") -> Quote:
    """A quote whose fields all follow from ``n``: a torn read shows as a mismatch."""
    return Quote(symbol, float(n), n * 2.0, n + 1.0, n * 3.0, n, n * 10)


def consistent(q: Any) -> bool:
    n = q.update_id
    return (q.bid, q.bid_size, q.ask, q.ask_size, q.exchange_ms, q.receive_ns) == (
        float(n),
        n * 2.0,
        n + 1.0,
        n * 3.0,
        n * 10,
        n * 100,
    )


def test_publish_and_read_back(bot4_core: Core) -> None:
    table = bot4_core.quotes
    assert table.get("binance", "BTC/USDT") is None
    assert table.publish("binance", quote(7), 700)
    got = table.get("binance", "BTC/USDT")
    assert got is not None and consistent(got) and math.isnan(got.last)
    assert table.publish_last("binance", "BTC/USDT", 7.5)
    got = table.get("binance", "BTC/USDT")
    assert got is not None and got.last == 7.5 and consistent(got)
    assert table.get("kraken", "BTC/USDT") is None and table.get("binance", "ETH/USDT") is None
    table.publish("kraken", quote(3), 300)
    assert [(q.venue, q.symbol) for q in table.all()] == [("binance", "BTC/USDT"), ("kraken", "BTC/USDT")]


def test_another_process_sees_what_one_publishes(bot4_core: Core) -> None:
    bot4_core.quotes.publish("binance", quote(5), 500)
    with Core.attach(bot4_core.name) as other:
        got = other.quotes.get("binance", "BTC/USDT")
        assert got is not None and consistent(got)


@pytest.mark.parametrize("venue", ["", "a\0b", "v" * 40])
def test_a_bad_venue_name_is_refused(bot4_core: Core, venue: str) -> None:
    with pytest.raises(ConfigError):
        bot4_core.quotes.publish(venue, quote(1), 1)


def test_a_full_table_says_so(bot4_core: Core) -> None:
    table = bot4_core.quotes
    for i in range(L.QUOTES - 1):
        table.publish("v", quote(1, f"S{i}/USDT"), 1)
    with pytest.raises(CapacityError):
        table.publish("v", quote(1, "LAST/USDT"), 1)
    assert len(table.all()) == L.QUOTES - 1


def test_a_writer_killed_mid_write_leaves_no_torn_quote_and_is_taken_over(bot4_core: Core) -> None:
    table = bot4_core.quotes
    table.publish("binance", quote(1), 100)
    r, lay = bot4_core._segment.region, bot4_core._segment.layout
    base = lay.quote(1)
    dead = ctx.Process(target=os.getpid)
    dead.start()
    dead.join()
    r.store(base + L.QUOTE_WRITER, (1 << 40) | (dead.pid or 1))  # the identity of a process that is gone
    r.add(base + L.QUOTE_SEQ, 1)  # odd: a write begun and never finished
    r.storef(base + L.QUOTE_BID, 999.0)  # half of it written
    assert table.get("binance", "BTC/USDT") is None  # unreadable: no quote, never a torn one
    with Core.attach(bot4_core.name) as other:
        assert other.quotes.publish("binance", quote(2), 200)  # the dead writer's record taken over
    got = table.get("binance", "BTC/USDT")
    assert got is not None and consistent(got) and got.update_id == 2


def test_a_live_writer_mid_write_is_never_waited_for(bot4_core: Core) -> None:
    table = bot4_core.quotes
    table.publish("binance", quote(1), 100)
    r, lay = bot4_core._segment.region, bot4_core._segment.layout
    base = lay.quote(1)
    import time

    from bot4.shm._proc import identity

    other = ctx.Process(target=time.sleep, args=(60,))
    other.start()
    try:
        writer = identity(other.pid or 0)
        assert writer is not None
        r.store(base + L.QUOTE_WRITER, writer)  # this live process is writing
        r.add(base + L.QUOTE_SEQ, 1)
        assert not table.publish("binance", quote(2), 200)  # skipped, at once
        r.add(base + L.QUOTE_SEQ, 1)
    finally:
        other.kill()
        other.join()
    assert table.publish("binance", quote(3), 300)


def _writer(name: str, n: int, ready: Any) -> None:
    with Core.attach(name) as core:
        table = core.quotes
        ready.set()
        for i in range(1, n + 1):
            table.publish("binance", quote(i), i * 100)
            table.publish("binance", quote(i, "ETH/USDT"), i * 100)


def test_readers_in_other_processes_never_see_a_torn_or_older_quote(bot4_core: Core) -> None:
    ready = ctx.Event()
    writer = start(_writer, bot4_core.name, 30_000, ready)
    assert ready.wait(60)
    table = QuoteTable(bot4_core._context)
    seen = {"BTC/USDT": 0, "ETH/USDT": 0}
    reads = 0
    while writer.is_alive() or reads == 0:
        for symbol in seen:
            got = table.get("binance", symbol)
            if got is None:
                continue
            reads += 1
            assert consistent(got), got
            assert got.update_id >= seen[symbol]  # never back in time
            seen[symbol] = got.update_id
    join_all([writer], timeout=60)
    assert reads > 0 and seen["BTC/USDT"] > 0


def _claim(name: str, go: Any, results: Any) -> None:
    with Core.attach(name) as core:
        go.wait(60)
        core.quotes.publish("binance", quote(os.getpid() % 1000), 1)
        results.put(core.quotes._index[("binance", "BTC/USDT")])


def test_processes_claiming_one_key_at_once_share_one_record(bot4_core: Core) -> None:
    go, results = ctx.Event(), ctx.Queue()
    procs = [start(_claim, bot4_core.name, go, results) for _ in range(4)]
    go.set()
    records = {results.get(timeout=60) for _ in procs}
    join_all(procs, timeout=60)
    assert len(records) == 1  # every process writes the first record of the key
    assert len(bot4_core.quotes.all()) == 1


def test_a_forked_child_writes_as_itself(bot4_core: Core) -> None:
    table = bot4_core.quotes  # made before the fork, used after it
    table.publish("binance", quote(1), 100)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            from bot4.shm._proc import my_identity

            r, lay = bot4_core._segment.region, bot4_core._segment.layout
            r.store(lay.quote(1) + L.QUOTE_WRITER, bot4_core._context.ident)  # held by ... the parent? no: by us
            ok = table.publish("binance", quote(2), 200)
            os._exit(
                0 if ok and table._ctx.ident == my_identity() and r.load(lay.quote(1) + L.QUOTE_WRITER) == 0 else 1
            )
        finally:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    got = table.get("binance", "BTC/USDT")
    assert got is not None and got.update_id == 2


def _claim_many(name: str, worker: int, go: Any, results: Any) -> None:
    with Core.attach(name) as core:
        go.wait(60)
        for i in range(150):
            symbol = f"S{i}/USDT" if i % 2 else f"W{worker}S{i}/USDT"  # half the keys shared by every process
            core.quotes.publish("binance", Quote(symbol, float(i + 1), 1.0, float(i + 2), 1.0, i + 1, worker), 1)
        results.put(worker)


def test_many_processes_claiming_many_keys_at_once_give_each_key_one_record(bot4_core: Core) -> None:
    go, results = ctx.Event(), ctx.Queue()
    procs = [start(_claim_many, bot4_core.name, w, go, results) for w in range(3)]
    go.set()
    assert sorted(results.get(timeout=120) for _ in procs) == [0, 1, 2]
    join_all(procs, timeout=60)
    with Core.attach(bot4_core.name) as fresh:  # a process that saw none of it
        quotes = fresh.quotes.all()
    keys = [(q.venue, q.symbol) for q in quotes]
    assert len(keys) == len(set(keys)) == 75 + 3 * 75  # one record per key, none lost
    for q in quotes:  # and each record holds its own symbol's prices
        i = int(q.symbol.split("/")[0].rsplit("S", 1)[1])
        assert (q.bid, q.ask, q.update_id) == (float(i + 1), float(i + 2), i + 1), q
    r, lay = bot4_core._segment.region, bot4_core._segment.layout
    assert r.load(lay.quote(0) + L.QUOTE_HIGH) == len(keys) + 1  # no record claimed and left unused


def test_threads_writing_one_key_never_tear_it(bot4_core: Core) -> None:
    import threading

    table = bot4_core.quotes
    table.publish("binance", quote(1), 100)
    stop = threading.Event()

    def writer(offset: int) -> None:
        n = offset
        while not stop.is_set():
            n += 2
            table.publish("binance", quote(n), n * 100)

    threads = [threading.Thread(target=writer, args=(k,)) for k in (0, 1)]
    for t in threads:
        t.start()
    try:
        torn = misses = 0
        for _ in range(20_000):
            got = table.get("binance", "BTC/USDT")
            if got is None:
                misses += 1
            elif not consistent(got):
                torn += 1
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert torn == 0
    assert misses < 200  # a reader yields to a writer thread rather than giving up at once


def test_a_claim_left_half_done_by_a_dead_process_is_reused(bot4_core: Core) -> None:
    from bot4.streams.quotes import CLAIMING

    r, lay = bot4_core._segment.region, bot4_core._segment.layout
    r.store(lay.quote(1) + L.QUOTE_STATE, CLAIMING)  # its claimer died holding the claim lock
    r.store(lay.quote(0) + L.QUOTE_LOCK, (1 << 40) | 999_999)
    r.store(lay.quote(0) + L.QUOTE_HIGH, 2)
    table = bot4_core.quotes
    table.publish("binance", quote(1), 100)
    table.publish("kraken", quote(2), 200)
    assert table._index == {("binance", "BTC/USDT"): 1, ("kraken", "BTC/USDT"): 2}
    with Core.attach(bot4_core.name) as other:
        got = other.quotes.get("kraken", "BTC/USDT")
        assert got is not None and got.update_id == 2


def test_bot4_status_shows_each_quote_with_its_feed_lag() -> None:
    import json as jsonlib

    from bot4 import MonotonicClock, make_plugin_manager
    from bot4._cli.status import render, status_of

    with Core.create(clock=MonotonicClock(), plugins=make_plugin_manager(entry_points=False)) as core:
        now = core.clock.now_ns()
        core.quotes.publish("binance", Quote("BTC/USDT", 99.0, 1.0, 101.0, 1.0, 7, 0), now - 2_000_000_000)
        core.quotes.publish_last("kraken", "ETH/USDT", 2000.0)  # a trade, no quote yet
        core.risk.on_price("BTC/USDT", 100.0)
        status = status_of(core.name)
        jsonlib.dumps(status, allow_nan=False)  # plain JSON: no NaN for a price not seen yet
        (btc,) = [q for q in status["quotes"] if q["venue"] == "binance"]
        assert (btc["bid"], btc["ask"]) == (99.0, 101.0) and 2.0 <= btc["age_seconds"] < 60.0
        assert btc["mark_age_seconds"] is not None and btc["mark_age_seconds"] < 60.0
        text = render(status)
        assert "quote binance:BTC/USDT" in text and "feed lag 2." in text and "mark age" in text
