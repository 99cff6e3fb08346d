"""Plugins: hook specifications, the plugin manager, and the built-in plugins."""

from __future__ import annotations

from bot4.plugins.dispatch import notify
from bot4.plugins.hookspecs import hookimpl, hookspec
from bot4.plugins.manager import ENTRY_POINT_GROUP, PluginManager, make_plugin_manager

__all__ = ["ENTRY_POINT_GROUP", "PluginManager", "hookimpl", "hookspec", "make_plugin_manager", "notify"]
