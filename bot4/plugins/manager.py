"""Building the plugin manager and calling event hooks safely."""

from __future__ import annotations

import importlib.metadata
import logging
from typing import Any

import pluggy

from bot4.errors import PluginError
from bot4.plugins import hookspecs
from bot4.plugins.builtin import BUILTIN_PLUGINS

__all__ = ["ENTRY_POINT_GROUP", "make_plugin_manager", "notify", "register_plugin"]

ENTRY_POINT_GROUP = "bot4"
"""The entry-point group from which third-party plugins load."""

log = logging.getLogger("bot4.plugins")


def register_plugin(pm: pluggy.PluginManager, plugin: object, name: str | None = None) -> str:
    """Register ``plugin`` and return its name; :class:`bot4.PluginError` naming it if it is invalid."""
    label = name or getattr(plugin, "__name__", None) or type(plugin).__name__
    try:
        registered = pm.register(plugin, name=name)
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin {label!r} is invalid: {exc}") from exc
    except ValueError as exc:
        raise PluginError(f"plugin {label!r} cannot be registered: {exc}") from exc
    if registered is None:
        raise PluginError(f"plugin {label!r} is blocked")
    return registered


def make_plugin_manager(*, entry_points: bool = True) -> pluggy.PluginManager:
    """Return a new plugin manager with every hook spec and the built-in plugins.

    Args:
        entry_points: also load third-party plugins from the ``bot4`` entry-point group.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    for name, plugin in BUILTIN_PLUGINS:
        register_plugin(pm, plugin, name)
    if entry_points:
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if pm.get_plugin(ep.name) is not None or pm.is_blocked(ep.name):
                continue
            try:
                plugin = ep.load()
            except Exception as exc:
                raise PluginError(f"plugin {ep.name!r} ({ep.value}) failed to load: {exc}") from exc
            register_plugin(pm, plugin, ep.name)
    return pm


def notify(pm: pluggy.PluginManager, hook_name: str, **kwargs: Any) -> None:
    """Call every implementation of event hook ``hook_name``; log, never raise, their errors."""
    hook = getattr(pm.hook, hook_name)
    impls = hook.get_hookimpls()
    for impl in reversed(impls):
        try:
            impl.function(*[kwargs[arg] for arg in impl.argnames])
        except Exception:
            log.exception("plugin %r raised in %s; ignored", impl.plugin_name, hook_name)
