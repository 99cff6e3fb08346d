"""``bot4 journal PATH VIEW``: a desk's journal as a table, JSON or CSV."""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import json
import math
import os
import sys
from typing import Any

from bot4.errors import ConfigError, JournalError
from bot4.journal import query
from bot4.journal.recovery import read_state
from bot4.journal.store import JournalStore

__all__ = ["add_parser", "run"]

VIEWS = ("orders", "fills", "pnl", "events", "state", "compact")


def _time(text: str) -> int:
    """An ISO date or time (UTC unless it names its zone), or seconds since the epoch, as ns."""
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(seconds) or abs(seconds) > 9e9:
            raise argparse.ArgumentTypeError(f"expected a time, got {text!r}")
        return round(seconds * 1e9)
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an ISO date/time or epoch seconds, got {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return round(moment.timestamp() * 1e9)


def add_parser(sub: Any) -> None:
    """The ``journal`` subcommand."""
    cmd = sub.add_parser("journal", help="a desk's journal: orders, fills, P&L by day, risk events, state")
    cmd.add_argument("path", help="the journal database (Core.create(journal=...))")
    cmd.add_argument(
        "view",
        choices=VIEWS,
        help="orders | fills | pnl (by day) | events (risk, kill switch, breakers, operators) | state "
        "(what a recovery rebuilds) | compact (delete what the state no longer needs, older than --until)",
    )
    cmd.add_argument("--since", type=_time, help="from this time (ISO, UTC by default, or epoch seconds)")
    cmd.add_argument("--until", type=_time, help="before this time")
    cmd.add_argument("--symbol", help="only this symbol")
    cmd.add_argument("--all-kinds", action="store_true", help="events: every kind, not only risk events")
    cmd.add_argument("--format", choices=("table", "json", "csv"), default="table", help="output (default table)")


def run(args: argparse.Namespace) -> int:
    """Run ``bot4 journal``; return the exit code."""
    if args.view == "compact":
        if args.until is None:
            raise ConfigError("until", "compact needs --until: events older than it may go")
        if not os.path.isfile(args.path):
            raise JournalError(f"no journal at {args.path}")
        store = JournalStore(args.path)
        try:
            deleted = query.compact(store, args.until)
        finally:
            store.close()
        print(f"{deleted} events deleted")
        return 0
    store = JournalStore(args.path, read_only=True)
    try:
        filters = query.Filters(args.since, args.until, args.symbol)
        rows: list[dict[str, Any]]
        if args.view == "orders":
            rows = query.orders(store, filters)
        elif args.view == "fills":
            rows = query.fills(store, filters)
        elif args.view == "pnl":
            rows = query.pnl_by_day(store, filters)
        elif args.view == "events":
            rows = query.events(store, filters, None if args.all_kinds else query.RISK_KINDS)
        else:
            rows = [_state(store)]
    finally:
        store.close()
    sys.stdout.write(render(rows, args.format))
    return 0


def _state(store: JournalStore) -> dict[str, Any]:
    state = read_state(store)
    account = state.account
    return {
        "last_event": state.last_id,
        "trading_state": state.trading_state.name,
        "reason": state.reason,
        "equity": None if account is None else account.equity,
        "cash": None if account is None else account.cash,
        "peak_equity": None if account is None else account.peak_equity,
        "daily_loss": None if account is None else account.daily_loss,
        "positions": {
            name: {"quantity": s.position, "average_price": s.average_price, "realized_pnl": s.realized_pnl}
            for name, s in state.symbols.items()
        },
        "open_orders": [o.client_order_id for o in state.open_orders],
    }


def render(rows: list[dict[str, Any]], fmt: str) -> str:
    """``rows`` as ``fmt``: ``table``, ``json`` or ``csv``."""
    if fmt == "json":
        return json.dumps(rows, indent=2, default=str) + "\n"
    if not rows:
        return "" if fmt == "csv" else "(nothing)\n"
    columns = list(dict.fromkeys(key for row in rows for key in row))
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, columns, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in row.items()})
        return out.getvalue()
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.10g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str)
    return str(value)
