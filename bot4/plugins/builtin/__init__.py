"""The built-in plugins, registered exactly as third-party plugins are."""

from __future__ import annotations

from bot4.plugins.builtin import event_log, routing, rules

__all__ = ["BUILTIN_PLUGINS"]

BUILTIN_PLUGINS: tuple[tuple[str, object], ...] = (
    ("bot4.event_log", event_log),
    # pluggy runs trylast implementations in registration order: the rules run as listed.
    *((rule.name, rule) for rule in rules.RULES),
    *((f"bot4.route.{strategy.name}", strategy) for strategy in routing.STRATEGIES),
)
"""``(name, plugin)`` of every built-in plugin, in registration order."""
