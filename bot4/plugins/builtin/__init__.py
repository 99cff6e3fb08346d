"""The built-in plugins, registered exactly as third-party plugins are."""

from __future__ import annotations

from bot4.plugins.builtin import event_log

__all__ = ["BUILTIN_PLUGINS"]

BUILTIN_PLUGINS: tuple[tuple[str, object], ...] = (("bot4.event_log", event_log),)
"""``(name, plugin)`` of every built-in plugin, in registration order."""
