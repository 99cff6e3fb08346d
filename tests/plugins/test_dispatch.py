"""Hooks go through pluggy whenever something watches them: wrappers, tracing, call monitors."""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator
from typing import Any

import pytest

import bot4
from bot4 import BreakerConfig, Core, Order, OrderManager, PaperExchange, Rejection
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
