"""A desk's own rule: no new risk in DOGE. Installed, bot4 loads it into every core."""

from __future__ import annotations

import bot4

__all__ = ["NoDoge", "no_doge"]


class NoDoge:
    """Refuses orders that open or add to a DOGE position (reducing one is fine)."""

    name = "desk.no_doge"

    @bot4.hookimpl
    def bot4_check_order(self, order: bot4.Order, ledger: bot4.RiskLedger) -> bot4.Rejection | None:
        if order.symbol.startswith("DOGE/") and not ledger.reduces_position(order):
            return bot4.Rejection(self.name, "SYMBOL_BANNED", "closed for new risk")
        return None


no_doge = NoDoge()
"""The plugin the entry point names."""
