"""A rebuilt desk takes its open orders back from the journal and reconciles them before new risk."""

from __future__ import annotations

import collections
import os
import signal
import threading
from pathlib import Path

import pytest

from bot4 import Core, Fees, ManualClock, Order, OrderManager, OrderStatus, PaperExchange, TradingState
from bot4.journal import query
from bot4.journal.store import JournalStore
from bot4.orders.status import BY_CODE
from tests.journal.conftest import journaled_core
from tests.risk.conftest import NO_LIMITS


def _limit(side: str, quantity: float, price: float, cid: str) -> Order:
    return Order(symbol="BTC/USDT", side=side, quantity=quantity, type="limit", price=price, client_order_id=cid)


def _trading(core: Core, venue: PaperExchange) -> None:
    """Every limit off, equity and a mark set, ``venue`` registered."""
    core.risk.configure(NO_LIMITS)
    core.risk.set_equity(100_000.0)
    core.risk.on_price("BTC/USDT", 100.0)
    core.plugins.register(venue, name="venue-a")


def _placements(venue: PaperExchange) -> collections.Counter[str]:
    return collections.Counter(o["clientOrderId"] for o in venue._orders.values())


def test_orders_open_at_a_crash_are_reconciled_and_never_sent_again(db: Path, clock: ManualClock) -> None:
    venue = PaperExchange("venue-a", fees=Fees(maker=0.0, taker=0.0), clock=clock)  # outlives the desk
    venue.set_book("BTC/USDT", bids=[(99.0, 5.0)], asks=[(101.0, 1.0)])
    with journaled_core(db, clock) as (core, recorder):
        _trading(core, venue)
        om = OrderManager(core, routing="primary")
        resting = om.submit(_limit("buy", 2.0, 98.0, "resting"))
        partial = om.submit(_limit("buy", 3.0, 101.0, "partial"))  # 1 of 3 fills at once
        assert resting.status is OrderStatus.ACCEPTED
        assert partial.status is OrderStatus.PARTIALLY_FILLED
        ghost = core.risk.reserve(_limit("sell", 1.0, 105.0, "ghost"))  # the desk died before sending it
        assert ghost.approved
        recorder.drain()
        before = core.risk.snapshot()
    assert before.positions["BTC/USDT"].quantity == 1.0
    venue.set_book("BTC/USDT", bids=[(99.0, 5.0)], asks=[(97.0, 10.0)])  # while the desk is down: both fill
    sent = _placements(venue)

    with journaled_core(db, clock) as (core, recorder):
        journal = core.journal
        assert journal is not None and journal.recovering == 3
        core.plugins.register(venue, name="venue-a")
        om = OrderManager(core, routing="primary")
        early = core.risk.reserve(_limit("buy", 0.1, 100.0, "too-early"))
        assert early.codes == ("JOURNAL",) and "not reconciled" in early.rejections[0].message
        result = om.recover()
        assert not result.still_unknown and not result.errors
        assert journal.recovering == 0
        assert om.get("resting").status is OrderStatus.FILLED
        assert om.get("partial").status is OrderStatus.FILLED
        assert om.get("ghost").status is OrderStatus.REJECTED  # never reached the venue
        snap = core.risk.snapshot()
        assert snap.positions["BTC/USDT"].quantity == 5.0  # 1 before the crash, 4 while it was down
        assert snap.open_orders == 0  # every recovered reservation ended with its order
        assert _placements(venue) == sent  # nothing sent again
        assert om.submit(_limit("buy", 0.1, 96.0, "after")).status is OrderStatus.ACCEPTED
        assert om.recover() == type(result)()  # nothing more to do
        recorder.drain()
        # the journal now holds them ended: a desk rebuilt again has nothing to reconcile
    with journaled_core(db, clock) as (core, _):
        assert core.journal is not None and core.journal.recovering == 1  # "after", still open
        assert [o.client_order_id for o in core.journal.pending_orders()] == ["after"]


def test_a_durable_order_waits_for_its_record_and_is_never_sent_without_it(db: Path, clock: ManualClock) -> None:
    venue = PaperExchange("venue-a", fees=Fees(maker=0.0, taker=0.0), clock=clock)
    venue.set_book("BTC/USDT", bids=[(99.0, 5.0)], asks=[(101.0, 1.0)])
    with journaled_core(db, clock) as (core, recorder):
        _trading(core, venue)
        om = OrderManager(core, routing="primary", durable=0.2)
        recorder.drain()
        late = om.submit(_limit("buy", 1.0, 98.0, "late"))  # nobody drains: its record never becomes durable
        assert late.status is OrderStatus.DENIED and "durable" in late.reason
        assert venue.requests == 0 and core.risk.snapshot().open_orders == 0
        timer = threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGINT))  # Ctrl-C inside the wait
        timer.start()
        try:
            with pytest.raises(KeyboardInterrupt):
                om.submit(_limit("buy", 1.0, 98.0, "interrupted"))
        finally:
            timer.cancel()
        assert venue.requests == 0 and core.risk.snapshot().open_orders == 0  # given back, never sent
        done: list[object] = []
        submitter = threading.Thread(target=lambda: done.append(om.submit(_limit("buy", 1.0, 98.0, "sent"))))
        submitter.start()
        while submitter.is_alive():  # the recorder drains meanwhile: the order goes out once durable
            recorder.drain()
        submitter.join()
        assert done[0].status is OrderStatus.ACCEPTED and venue.requests == 1  # type: ignore[attr-defined]


def test_every_order_transition_is_journaled_with_its_venue(db: Path, clock: ManualClock) -> None:
    venue = PaperExchange("venue-a", fees=Fees(maker=0.0, taker=0.0), clock=clock)
    venue.set_book("BTC/USDT", bids=[(99.0, 5.0)], asks=[(101.0, 1.0)])
    with journaled_core(db, clock) as (core, recorder):
        _trading(core, venue)
        om = OrderManager(core, routing="primary")
        om.submit(_limit("buy", 1.0, 98.0, "rests"))
        om.cancel("rests")
        om.submit(_limit("buy", 1.0, 101.0, "fills"))
        core.risk.set_trading_state(TradingState.HALTED, "drill")
        om.submit(_limit("buy", 1.0, 101.0, "denied"))
        recorder.drain()
    store = JournalStore(db, read_only=True)
    rows = store.db.execute("SELECT code, f0, text FROM events WHERE kind = 'ORDER' ORDER BY id").fetchall()
    store.close()
    seen = [(text.split("\x1f")[0], text.split("\x1f")[1], BY_CODE[code].name) for code, _, text in rows]
    assert seen == [
        ("rests", "venue-a", "ACCEPTED"),
        ("rests", "venue-a", "PENDING_CANCEL"),
        ("rests", "venue-a", "CANCELED"),
        ("denied", "", "DENIED"),
    ]  # "fills": its reservation and its fill say it all (submitted, accepted, filled)
    orders = {o["client_order_id"]: o["status"] for o in query.orders(JournalStore(db, read_only=True))}
    assert orders == {"rests": "canceled", "fills": "filled"}  # a denied order reserved nothing
