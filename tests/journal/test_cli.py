"""``bot4 journal``: a desk's orders, fills, P&L by day, risk events and state, as table, JSON or CSV."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from bot4 import ManualClock, TradingState
from tests.journal.conftest import journaled_core
from tests.journal.test_recovery import _trade


def bot4(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot4", *args], capture_output=True, text=True, timeout=120, check=False
    )


def as_json(*args: str) -> Any:
    result = bot4(*args, "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture
def journal(db: Path, clock: ManualClock) -> Path:
    with journaled_core(db, clock) as (core, recorder):
        _trade(core)
        core.risk.set_trading_state(TradingState.HALTED, "ops: maintenance")
        core.risk.record_operator("alice: bot4 kill: maintenance")
        recorder.drain()
    return db


def test_orders_say_what_each_asked_for_what_filled_and_how_it_ended(journal: Path) -> None:
    orders = {o["client_order_id"]: o for o in as_json("journal", str(journal), "orders")}
    assert {k: o["status"] for k, o in orders.items()} == {
        "b1": "open",
        "e1": "filled",
        "b2": "filled",
        "s1": "open",
        "gone": "released",
    }
    b1 = orders["b1"]
    assert (b1["side"], b1["quantity"], b1["filled"], b1["fees"]) == ("buy", 3.0, 2.5, 0.75)
    assert b1["average_price"] == pytest.approx((100.0 + 1.5 * 101.0) / 2.5)
    assert (b1["type"], b1["strategy"], b1["limit_price"]) == ("limit", "default", 100.0)


def test_fills_filter_by_symbol_and_carry_trade_ids_and_the_position_left(journal: Path) -> None:
    fills = as_json("journal", str(journal), "fills", "--symbol", "ETH/USDT")
    assert [(f["trade_id"], f["side"], f["quantity"], f["price"], f["position"]) for f in fills] == [
        ("paper:3", "sell", 10.0, 20.5, -10.0)
    ]
    assert [f["trade_id"] for f in as_json("journal", str(journal), "fills")] == [
        "paper:1",
        "paper:2",
        "paper:3",
        "paper:4",
    ]


def test_pnl_by_day_adds_up_the_fills(journal: Path) -> None:
    (day,) = as_json("journal", str(journal), "pnl")
    assert day["day"] == time.strftime("%Y-%m-%d", time.gmtime())
    assert day["fills"] == 4
    assert day["fees"] == pytest.approx(0.75)
    assert day["notional"] == pytest.approx(100.0 + 151.5 + 205.0 + 125.0)
    assert day["realized_pnl"] == pytest.approx((125.0 - (100.0 + 151.5) / 2.5) * 1.0 - 0.75, abs=1.0)


def test_events_list_the_kill_switch_with_who_and_why_and_filter_by_time(journal: Path) -> None:
    events = as_json("journal", str(journal), "events")
    kinds = [e["kind"] for e in events]
    assert "MARK" not in kinds and "FILL" not in kinds  # risk events by default
    assert {"LIMITS", "EQUITY", "TRADING", "OPERATOR"} <= set(kinds)
    trading = [e for e in events if e["kind"] == "TRADING"]
    assert (trading[-1]["state"], trading[-1]["text"]) == ("HALTED", "ops: maintenance")
    assert [e["text"] for e in events if e["kind"] == "OPERATOR"] == ["alice: bot4 kill: maintenance"]
    assert "MARK" in {e["kind"] for e in as_json("journal", str(journal), "events", "--all-kinds")}
    assert as_json("journal", str(journal), "events", "--since", "2999-01-01") == []
    table = bot4("journal", str(journal), "events", "--until", "1970-01-02")
    assert table.returncode == 0 and table.stdout == "(nothing)\n"


def test_state_is_what_a_recovery_rebuilds(journal: Path) -> None:
    (state,) = as_json("journal", str(journal), "state")
    assert (state["trading_state"], state["reason"]) == ("HALTED", "ops: maintenance")
    assert sorted(state["open_orders"]) == ["b1", "s1"]
    assert state["positions"]["BTC/USDT"]["quantity"] == 1.5


def test_csv_reads_back_as_the_same_rows(journal: Path) -> None:
    result = bot4("journal", str(journal), "fills", "--format", "csv")
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [(r["trade_id"], float(r["price"])) for r in rows] == [
        ("paper:1", 100.0),
        ("paper:2", 101.0),
        ("paper:3", 20.5),
        ("paper:4", 125.0),
    ]


def test_compaction_keeps_what_the_state_depends_on(journal: Path) -> None:
    (before,) = as_json("journal", str(journal), "state")
    refused = bot4("journal", str(journal), "compact")
    assert refused.returncode == 2 and "--until" in refused.stderr and "Traceback" not in refused.stderr
    done = bot4("journal", str(journal), "compact", "--until", "2999-01-01")
    assert done.returncode == 0 and int(done.stdout.split()[0]) > 0
    assert as_json("journal", str(journal), "state") == [before]
    assert {o["client_order_id"] for o in as_json("journal", str(journal), "orders")} == {"b1", "s1"}


def test_bad_input_gets_a_clear_error(tmp_path: Path, journal: Path) -> None:
    missing = bot4("journal", str(tmp_path / "nope.db"), "orders")
    assert missing.returncode == 2 and "no journal at" in missing.stderr and "Traceback" not in missing.stderr
    assert not (tmp_path / "nope.db").exists()  # a query never creates a journal
    not_a_journal = tmp_path / "other.db"
    not_a_journal.write_bytes(b"not sqlite at all" * 100)
    garbage = bot4("journal", str(not_a_journal), "orders")
    assert garbage.returncode == 2 and "Traceback" not in garbage.stderr
    bad_time = bot4("journal", str(journal), "events", "--since", "yesterday-ish")
    assert bad_time.returncode == 2 and "ISO" in bad_time.stderr


def test_the_demo_rebuilds_the_desk_a_previous_run_left_in_its_journal(tmp_path: Path) -> None:
    path = str(tmp_path / "demo.db")
    runs = []
    for _ in range(2):
        result = bot4("demo", "--workers", "2", "--duration", "3", "--json", "--journal", path)
        assert result.returncode == 0, result.stderr[-3000:]
        runs.append(json.loads(result.stdout))
    first, second = runs
    assert first["journal"]["from_event"] == 0
    assert all(first["invariants"].values()) and all(second["invariants"].values()), second["invariants"]
    assert second["journal"]["from_event"] > 0
    assert second["journal"]["equity"] == first["equity"]  # exactly where the first run left it
    assert second["journal"]["positions"] == {s: q for s, q in first["positions"].items() if q}
    assert second["journal"]["still_unknown"] == 0
