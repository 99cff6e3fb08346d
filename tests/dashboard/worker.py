"""A worker process for the dashboard tests: ``python -m tests.dashboard.worker SEGMENT BREAKER``
fails calls through BREAKER until it opens, then reports the monotonic time it saw OPEN."""

from __future__ import annotations

import sys

from bot4 import BreakerConfig, BreakerState, Core


def main(segment: str, name: str) -> int:
    with Core.attach(segment) as core:
        breaker = core.breaker(name, BreakerConfig(consecutive_failures=3, minimum_calls=100))

        @breaker
        def venue_call() -> None:
            raise ConnectionError("venue down")

        for _ in range(10):
            try:
                venue_call()
            except Exception:
                pass
            if breaker.state is BreakerState.OPEN:
                print(f"OPEN {core.clock.now_ns()}", flush=True)
                return 0
    print("still closed", flush=True)
    return 1


def hammer(segment: str, name: str, calls: int, fail_every: int) -> None:
    """``calls`` calls through breaker ``name``, every ``fail_every``-th failing (never opening it)."""
    with Core.attach(segment) as core:
        breaker = core.breaker(name, BreakerConfig(consecutive_failures=None, minimum_calls=10**6))
        for i in range(calls):
            try:
                with breaker.call():
                    if i % fail_every == 0:
                        raise ConnectionError("injected")
            except ConnectionError:
                pass


def refuse(segment: str, orders: int) -> None:
    """Send ``orders`` orders without a stop-loss: each is rejected with STOP_LOSS_MISSING."""
    from bot4 import Order

    with Core.attach(segment) as core:
        for _ in range(orders):
            decision = core.risk.reserve(Order(symbol="BTC/USDT", side="buy", quantity=0.01))
            assert decision.codes == ("STOP_LOSS_MISSING",), decision


def until_halted(segment: str) -> None:
    """Trade (reserve and release) until an order is denied by the kill switch; print HALTED."""
    import time

    from bot4 import Order

    with Core.attach(segment) as core:
        print("TRADING", flush=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            order = Order(symbol="BTC/USDT", side="buy", quantity=0.01, stop_loss=49_500.0)
            decision = core.risk.reserve(order)
            if decision.reservation is not None:
                core.risk.release(decision.reservation)
            elif "KILL_SWITCH" in decision.codes:
                print("HALTED", flush=True)
                return
            time.sleep(0.01)
    raise SystemExit("never halted")


if __name__ == "__main__":
    if sys.argv[1] == "until-halted":
        until_halted(sys.argv[2])
    else:
        sys.exit(main(sys.argv[1], sys.argv[2]))
