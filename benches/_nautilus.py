"""A minimal NautilusTrader RiskEngine, for the same-run comparison of pre-trade checks.

The engine is wired as in NautilusTrader's own unit tests (message bus, cache, portfolio
with a cash account), except that the endpoint the risk engine forwards approved
commands to is a list, so what is timed is the risk engine's pre-trade check of a
``SubmitOrder`` and nothing downstream.
"""

from __future__ import annotations

from typing import Any

from nautilus_trader.common.component import MessageBus, TestClock
from nautilus_trader.config import RiskEngineConfig
from nautilus_trader.core.uuid import UUID4
from nautilus_trader.execution.messages import SubmitOrder
from nautilus_trader.model.enums import OrderSide, TradingState
from nautilus_trader.model.objects import Price, Quantity
from nautilus_trader.portfolio.portfolio import Portfolio
from nautilus_trader.risk.engine import RiskEngine
from nautilus_trader.test_kit.providers import TestInstrumentProvider
from nautilus_trader.test_kit.stubs.component import TestComponentStubs
from nautilus_trader.test_kit.stubs.events import TestEventStubs
from nautilus_trader.test_kit.stubs.identifiers import TestIdStubs
from nautilus_trader.trading.strategy import Strategy


class NautilusRisk:
    """A started NautilusTrader RiskEngine and a factory of SubmitOrder commands."""

    def __init__(self) -> None:
        self.clock = TestClock()
        self.trader_id = TestIdStubs.trader_id()
        self.msgbus = MessageBus(trader_id=self.trader_id, clock=self.clock)
        self.cache = TestComponentStubs.cache()
        self.portfolio = Portfolio(msgbus=self.msgbus, cache=self.cache, clock=self.clock)
        self.forwarded: list[Any] = []
        self.msgbus.register(endpoint="ExecEngine.execute", handler=self.forwarded.append)
        self.engine = RiskEngine(
            portfolio=self.portfolio,
            msgbus=self.msgbus,
            cache=self.cache,
            clock=self.clock,
            config=RiskEngineConfig(max_order_submit_rate="100000000/00:00:01"),
        )
        self.portfolio.update_account(TestEventStubs.cash_account_state())
        self.instrument = TestInstrumentProvider.default_fx_ccy("AUD/USD")
        self.cache.add_instrument(self.instrument)
        self.engine.start()
        self.strategy = Strategy()
        self.strategy.register(
            trader_id=self.trader_id, portfolio=self.portfolio, msgbus=self.msgbus, cache=self.cache, clock=self.clock
        )

    def commands(self, n: int) -> list[SubmitOrder]:
        """``n`` fresh SubmitOrder commands for limit buys."""
        out = []
        for _ in range(n):
            order = self.strategy.order_factory.limit(
                self.instrument.id, OrderSide.BUY, Quantity.from_int(1000), Price.from_str("1.00000")
            )
            out.append(
                SubmitOrder(
                    trader_id=self.trader_id,
                    strategy_id=self.strategy.id,
                    order=order,
                    command_id=UUID4(),
                    ts_init=self.clock.timestamp_ns(),
                )
            )
        return out

    def halt(self) -> None:
        """Set the trading state to HALTED."""
        self.engine.set_trading_state(TradingState.HALTED)


def nautilus_orders_to_accept(n: int) -> tuple[list[Any], list[Any]]:
    """``n`` submitted NautilusTrader limit orders and an OrderAccepted event for each."""
    from nautilus_trader.test_kit.stubs.events import TestEventStubs

    risk = NautilusRisk()
    orders, events = [], []
    for command in risk.commands(n):
        order = command.order
        order.apply(TestEventStubs.order_submitted(order))
        orders.append(order)
        events.append(TestEventStubs.order_accepted(order))
    return orders, events
