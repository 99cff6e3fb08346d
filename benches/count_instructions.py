"""Instructions per operation, counted by valgrind: repeatable whatever the machine is doing.

Wall-clock medians on a shared 2-core machine move by 2x from one minute to the next;
instruction counts do not. Run one operation K times inside ``itertools.starmap`` and let
callgrind collect only there (the set-up is not counted):

    PYTHONHASHSEED=0 valgrind --tool=callgrind --toggle-collect=starmap_next \\
        .venv/bin/python benches/count_instructions.py check 2000

then divide ``Collected`` by K. Operations: ``check`` (every built-in rule, the scenario of
benches/test_risk.py), ``halted`` (denied by the kill switch), ``reserve`` (reserve and
release), ``success`` (a guarded call on a closed breaker).
"""

from __future__ import annotations

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
    raise SystemExit(f"unknown operation {name!r}: check, halted, reserve or success")


def main() -> None:
    name, times = sys.argv[1], int(sys.argv[2])
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
