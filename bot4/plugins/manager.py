"""Building the plugin manager and calling event hooks safely."""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import Callable
from typing import Any

import pluggy

from bot4.errors import PluginError
from bot4.plugins import hookspecs
from bot4.plugins.builtin import BUILTIN_PLUGINS

__all__ = ["ENTRY_POINT_GROUP", "PluginManager", "make_plugin_manager"]

ENTRY_POINT_GROUP = "bot4"
"""The entry-point group from which third-party plugins load."""

log = logging.getLogger("bot4.plugins")


class PluginManager(pluggy.PluginManager):
    """pluggy's manager, failing early: a bad plugin raises :class:`bot4.PluginError` naming it.

    ``generation`` changes whenever a plugin is registered, unregistered or blocked — after
    the change is complete, so a caller that reads it before listing the plugins never
    caches a list that misses a plugin under the new generation; so does adding or undoing
    call monitoring (:meth:`add_hookcall_monitoring`, :meth:`enable_tracing`). Blocking a
    built-in plugin is logged as a warning (a built-in risk rule off shows in ``bot4
    status``), and unblocking it registers it again.
    """

    def __init__(self, project_name: str) -> None:
        super().__init__(project_name)
        self.generation = 0
        self.monitors = 0
        """How many call monitors are active (each hook call then goes through pluggy)."""
        self.rejections_heard = False
        """Whether a plugin implements ``bot4_call_rejected`` (read on every rejected call)."""
        self._builtins: dict[str, object] = {}

    def _changed(self) -> None:
        hook = getattr(self.hook, "bot4_call_rejected", None)
        self.rejections_heard = hook is not None and bool(hook.get_hookimpls())
        self.generation += 1

    def add_hookcall_monitoring(self, before: Callable[..., None], after: Callable[..., None]) -> Callable[[], None]:
        """Add before/after tracing for every hook call; see :meth:`pluggy.PluginManager.add_hookcall_monitoring`.

        While a monitor is active, every hook bot4 calls — the risk rules and routing
        strategies on the order path too — goes through pluggy, one implementation per
        call, so the monitor sees each. Returns the undo function.
        """
        undo = super().add_hookcall_monitoring(before, after)
        self.monitors += 1
        self._changed()
        undone = False

        def undo_and_count() -> None:
            nonlocal undone
            if undone:
                return  # pluggy's undo, run twice, would remove the monitors added since
            undone = True
            undo()
            self.monitors -= 1
            self._changed()

        return undo_and_count

    def unregister(self, plugin: object | None = None, name: str | None = None) -> Any | None:
        """Unregister a plugin (by object or name); see :meth:`pluggy.PluginManager.unregister`."""
        try:
            return super().unregister(plugin, name)
        finally:
            self._changed()

    def set_blocked(self, name: str) -> None:
        """Unregister ``name`` and keep it from registering again (disables a built-in by name)."""
        if name in self._builtins:
            log.warning("built-in plugin %r blocked: it is off in this process until unblocked", name)
        try:
            super().set_blocked(name)
        finally:
            self._changed()

    def unblock(self, name: str) -> bool:
        """Allow ``name`` to be registered again; a built-in plugin is registered again at once.

        Returns whether ``name`` was blocked.
        """
        try:
            was_blocked = super().unblock(name)
            builtin = self._builtins.get(name)
            if was_blocked and builtin is not None and self.get_plugin(name) is None:
                self.register(builtin, name)
            return was_blocked
        finally:
            self._changed()

    def register(self, plugin: object, name: str | None = None) -> str | None:
        """Register ``plugin`` (under ``name``) and return its name.

        Raises :class:`bot4.PluginError` naming the plugin when an implementation does not
        match its hook spec, implements a hook that does not exist, or the name is taken.
        """
        label = name or getattr(plugin, "__name__", None) or type(plugin).__name__
        try:
            try:
                registered = super().register(plugin, name=name)
            except pluggy.PluginValidationError as exc:
                raise PluginError(f"plugin {label!r} is invalid: {exc}") from exc
            except ValueError as exc:
                raise PluginError(f"plugin {label!r} cannot be registered: {exc}") from exc
            if registered is None:
                return None  # blocked by name, as pluggy does
            try:
                self.check_pending()  # an implementation of a hook that does not exist (a typo)
            except pluggy.PluginValidationError as exc:
                self.unregister(name=registered)
                raise PluginError(f"plugin {label!r} is invalid: {exc}") from exc
            return registered
        finally:
            self._changed()


def make_plugin_manager(*, entry_points: bool = True) -> PluginManager:
    """Return a new plugin manager with every hook spec and the built-in plugins.

    Args:
        entry_points: also load third-party plugins from the ``bot4`` entry-point group.
    """
    pm = PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    for name, plugin in BUILTIN_PLUGINS:
        pm.register(plugin, name)
        pm._builtins[name] = plugin
    if entry_points:
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if pm.get_plugin(ep.name) is not None or pm.is_blocked(ep.name):
                continue
            try:
                plugin = ep.load()
            except Exception as exc:
                raise PluginError(f"plugin {ep.name!r} ({ep.value}) failed to load: {exc}") from exc
            pm.register(plugin, ep.name)
    return pm
