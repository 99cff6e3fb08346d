"""Hooks go through pluggy whenever something watches them: wrappers, tracing, call monitors."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Generator
from typing import Any

import pytest

import bot4
from bot4 import BreakerConfig, Core, Order, OrderManager, PaperExchange, Rejection
from bot4.plugins import notify
from bot4.testing import OPEN_LIMITS
from tests.helpers import fail

BUY = dict(symbol="BTC/USDT", side="buy", quantity=1.0, type="limit", price=100.0)


class DenyEverything:
    @bot4.hookimpl
    def bot4_check_order(self, order: Order) -> Rejection:
        return Rejection("deny-everything", "NO", "never")


class WrapperThatForgives:
    """A new-style wrapper: sees each rule's result and may change it."""

    def __init__(self) -> None:
        self.seen: list[Any] = []

    @bot4.hookimpl(wrapper=True)
    def bot4_check_order(self, order: Order) -> Generator[None, list[Any], list[Any]]:
        results = yield
        self.seen.append(list(results))
        return [r for r in results if getattr(r, "rule", None) != "deny-everything"]


class OldStyleWrapper:
    def __init__(self) -> None:
        self.calls = 0

    @bot4.hookimpl(hookwrapper=True)
    def bot4_check_order(self) -> Generator[None, Any, None]:
        self.calls += 1
        yield


def test_a_wrapper_on_the_risk_rules_runs_and_its_answer_counts(bot4_desk: Core) -> None:
    risk = bot4_desk.risk
    bot4_desk.plugins.register(DenyEverything(), "deny")
    assert not risk.check(Order(**BUY)).approved
    wrapper = WrapperThatForgives()
    bot4_desk.plugins.register(wrapper, "forgive")
    decision = risk.check(Order(**BUY))
    assert decision.approved, decision  # the wrapper took the user rule's rejection away
    assert any(seen and seen[0].rule == "deny-everything" for seen in wrapper.seen)
    old = OldStyleWrapper()
    bot4_desk.plugins.register(old, "old")
    risk.reserve(Order(**BUY))
    assert old.calls > 0
    bot4_desk.plugins.unregister(name="forgive")
    assert not risk.check(Order(**BUY)).approved  # and it stops when unregistered


def test_a_rule_error_under_a_wrapper_still_rejects_the_order(bot4_desk: Core) -> None:
    class Broken:
        @bot4.hookimpl
        def bot4_check_order(self, order: Order) -> None:
            raise ZeroDivisionError("bad rule")

    bot4_desk.plugins.register(Broken(), "broken")
    bot4_desk.plugins.register(OldStyleWrapper(), "old")
    decision = bot4_desk.risk.check(Order(**BUY))
    assert [r.code for r in decision.rejections] == ["RULE_ERROR"]
    assert "ZeroDivisionError" in decision.rejections[0].message


def test_tracing_sees_the_rules_the_routing_and_the_events(
    bot4_desk: Core, bot4_paper: Callable[..., PaperExchange]
) -> None:
    bot4_paper("a")
    bot4_paper("b", {"BTC/USDT": (99.0, 100.0)})
    om = OrderManager(bot4_desk, routing="best_price")
    seen: list[str] = []
    undo = bot4_desk.plugins.add_hookcall_monitoring(
        lambda name, impls, kwargs: seen.append(name), lambda outcome, name, impls, kwargs: None
    )
    try:
        order = om.submit(Order(**dict(BUY, stop_loss=90.0)))
        assert order.tracked.venue == "b"  # the built-in strategy still answers
        br = bot4_desk.breaker("venue-x", BreakerConfig(consecutive_failures=1))
        fail(br)
    finally:
        undo()
    assert "bot4_check_order" in seen
    assert "bot4_route_order" in seen
    assert "bot4_breaker_state_changed" in seen
    count = len(seen)
    bot4_desk.risk.check(Order(**BUY))
    assert len(seen) == count  # undone: nothing traced any more
    undo()  # a second undo changes nothing
    assert bot4_desk.plugins.monitors == 0


def test_pluggy_tracing_writes_the_hook_calls(bot4_desk: Core) -> None:
    lines: list[str] = []
    pm = bot4_desk.plugins
    pm.trace.root.setwriter(lines.append)
    undo = pm.enable_tracing()
    try:
        bot4_desk.risk.check(Order(**BUY))
    finally:
        undo()
    assert any("bot4_check_order" in line for line in lines)


def test_an_event_hook_error_under_monitoring_keeps_the_others_hearing(
    bot4_core: Core, caplog: pytest.LogCaptureFixture
) -> None:
    heard: list[str] = []

    class Raises:
        @bot4.hookimpl
        def bot4_breaker_state_changed(self, new: Any) -> None:
            raise RuntimeError("listener bug")

    class Listens:
        @bot4.hookimpl(tryfirst=True)
        def bot4_breaker_state_changed(self, new: Any) -> None:
            heard.append(new.name)

    class Later:
        @bot4.hookimpl(trylast=True)
        def bot4_breaker_state_changed(self, new: Any) -> None:
            heard.append("later:" + new.name)

    for plugin in (Raises(), Listens(), Later()):
        bot4_core.plugins.register(plugin)
    undo = bot4_core.plugins.add_hookcall_monitoring(lambda *a: None, lambda *a: None)
    try:
        with caplog.at_level(logging.ERROR, logger="bot4.plugins"):
            fail(bot4_core.breaker("b", BreakerConfig(consecutive_failures=1)))
    finally:
        undo()
    assert heard == ["OPEN", "later:OPEN"]
    assert "listener bug" in caplog.text


class TwoRulesInOnePlugin:
    """pluggy's ``specname``: one plugin, two implementations of the same hook."""

    @bot4.hookimpl
    def bot4_check_order(self, order: Order) -> Rejection | None:
        return Rejection("two", "RULE_A", "a") if order.quantity > 5 else None

    @bot4.hookimpl(specname="bot4_check_order")
    def second(self, order: Order) -> Rejection | None:
        return Rejection("two", "RULE_B", "b") if order.quantity > 1 else None


@pytest.mark.parametrize("watcher", ["tracing", "wrapper"])
def test_two_rules_of_one_plugin_both_run_when_watched(bot4_desk: Core, watcher: str) -> None:
    risk = bot4_desk.risk
    bot4_desk.plugins.register(TwoRulesInOnePlugin(), "two")
    order = Order(symbol="BTC/USDT", side="buy", quantity=10.0, type="limit", price=100.0)
    assert [r.code for r in risk.check(order).rejections] == ["RULE_B", "RULE_A"]
    if watcher == "tracing":
        undo = bot4_desk.plugins.enable_tracing()
    else:
        bot4_desk.plugins.register(OldStyleWrapper(), "old")
    assert [r.code for r in risk.check(order).rejections] == ["RULE_B", "RULE_A"]
    decision = risk.reserve(order)
    assert [r.code for r in decision.rejections] == ["RULE_B", "RULE_A"] and decision.reservation is None
    if watcher == "tracing":
        undo()


def test_a_wrapper_in_a_plugin_with_its_own_rule_wraps_every_rule(bot4_desk: Core) -> None:
    class RuleAndWrapper:
        calls = 0

        @bot4.hookimpl(wrapper=True, specname="bot4_check_order")
        def around(self) -> Generator[None, list[Any], list[Any]]:
            RuleAndWrapper.calls += 1
            return (yield)

        @bot4.hookimpl
        def bot4_check_order(self) -> None:
            return None

    bot4_desk.plugins.register(RuleAndWrapper(), "both")
    bot4_desk.risk.check(Order(**BUY))
    assert RuleAndWrapper.calls == len(bot4_desk.risk.rule_names())  # one per rule, its own included


def test_undoing_a_monitor_twice_leaves_the_monitors_added_since(bot4_desk: Core) -> None:
    pm = bot4_desk.plugins
    seen: list[str] = []
    undo1 = pm.add_hookcall_monitoring(lambda *a: None, lambda *a: None)
    undo1()
    undo2 = pm.add_hookcall_monitoring(lambda name, impls, kwargs: seen.append(name), lambda *a: None)
    undo1()
    bot4_desk.risk.check(Order(**BUY))
    assert pm.monitors == 1 and seen.count("bot4_check_order") == len(bot4_desk.risk.rule_names())
    undo2()
    assert pm.monitors == 0


def test_notify_delivers_to_historic_specs_and_never_raises_for_an_argument_nobody_takes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import pluggy

    spec = pluggy.HookspecMarker("bot4")

    class Specs:
        @spec(historic=True)
        def desk_event(self, x: int) -> None: ...

        @spec
        def desk_other(self, x: int, y: int) -> None: ...

    got: list[tuple[str, int]] = []

    class Listener:
        @bot4.hookimpl
        def desk_event(self, x: int) -> None:
            got.append(("event", x))

        @bot4.hookimpl
        def desk_other(self, x: int) -> None:
            got.append(("other", x))

    pm = bot4.make_plugin_manager(entry_points=False)
    pm.add_hookspecs(Specs)
    pm.register(Listener(), "listener")
    undo = pm.enable_tracing()
    with caplog.at_level(logging.ERROR, logger="bot4.plugins"):
        notify(pm, "desk_event", x=2)
        notify(pm, "desk_other", x=3)  # y: given to nobody, missing
    undo()
    notify(pm, "desk_other", x=4)
    assert got == [("event", 2), ("other", 3), ("other", 4)]
    assert "raised" not in caplog.text


def test_a_rule_rejects_with_its_code_when_the_ledger_moves_while_user_rules_run(bot4_desk: Core) -> None:
    risk = bot4_desk.risk
    risk.configure(dataclasses.replace(OPEN_LIMITS, max_open_orders=1))
    held = [risk.reserve(Order(**BUY)).reservation]

    class ReleasesMeanwhile:  # stands for another thread releasing while this user rule runs
        @bot4.hookimpl
        def bot4_check_order(self) -> None:
            if held:
                risk.release(held.pop())

    bot4_desk.plugins.register(ReleasesMeanwhile(), "meanwhile")
    decision = risk.reserve(Order(**BUY))
    assert [r.code for r in decision.rejections] == ["OPEN_ORDERS"]  # the verdict the engine reached, worded
