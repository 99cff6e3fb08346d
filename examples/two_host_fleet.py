"""Two hosts of one desk, linked through Redis: a breaker, the kill switch and one limit.

    python examples/two_host_fleet.py redis://127.0.0.1:6379/0

Both "hosts" run in this process here (each its own segment and link); on a real desk each
runs on its own machine with the same call.
"""

from __future__ import annotations

import dataclasses
import sys
import time
import uuid

import bot4


def wait(condition: object, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise SystemExit("the other host did not hear of it")
        time.sleep(0.005)


def main() -> int:
    url = sys.argv[1] if len(sys.argv) > 1 else "redis://127.0.0.1:6379/0"
    desk = f"example-{uuid.uuid4().hex[:6]}"
    policy = bot4.FleetPolicy(health_seconds=0.1, lease_seconds=1.0)  # (a short grace for a new desk)
    limits = dataclasses.replace(bot4.RiskLimits(), max_gross_exposure=1.0, require_stop_loss=False)
    with (
        bot4.Core.connect(url, name=f"{desk}-a", desk=desk, host="a", policy=policy) as a,
        bot4.Core.connect(url, name=f"{desk}-b", desk=desk, host="b", policy=policy) as b,
    ):
        for host in (a, b):
            host.risk.configure(limits)
            host.risk.set_equity(10_000)  # the desk's equity: 10,000 of gross exposure for both
        a.breaker("binance").force_open("venue down, seen by host a")
        wait(lambda: b.breaker("binance").state is bot4.BreakerState.FORCED_OPEN)
        print("host b sees binance", b.breaker("binance").state.name)
        order = bot4.Order(symbol="BTC/USDT", side="buy", quantity=60, type="limit", price=100)
        print("host a reserves 6,000:", a.risk.reserve(order).approved)
        print("host b reserves 6,000:", b.risk.reserve(order).codes)  # the desk's limit, not b's own
        a.risk.kill_switch.trip("operator on host a")
        wait(lambda: b.risk.kill_switch.active)
        print("host b:", b.risk.trading_state.name, "-", b.risk.state_reason)
    return 0


if __name__ == "__main__":
    sys.exit(main())
