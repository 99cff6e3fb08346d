"""Run after ``pip install ./examples/desk_rules``: the installed rule is in every new core."""

import uuid

import bot4

with bot4.Core.create(f"example-{uuid.uuid4().hex[:6]}") as core:
    core.risk.set_equity(10_000)
    core.risk.on_price("DOGE/USDT", 0.1)
    decision = core.risk.check(bot4.Order(symbol="DOGE/USDT", side="buy", quantity=100, stop_loss=0.099))
    print("DOGE buy:", decision.codes)
    assert "SYMBOL_BANNED" in decision.codes
