"""Calling hook implementations: fast when nothing watches, through pluggy when something does."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import pluggy

if TYPE_CHECKING:
    from bot4.plugins.manager import PluginManager

__all__ = ["Implementation", "implementations", "notify", "watched"]

log = logging.getLogger("bot4.plugins")


class Implementation(NamedTuple):
    """One implementation of a hook, ready to call with the hook's arguments in the spec's order."""

    impl: pluggy.HookImpl
    call: Callable[..., Any]
    """The implementation's result (None for none); through pluggy when the hook is watched."""
    direct: Callable[..., Any]
    """The implementation itself: for calls no user code may wrap (under a shared lock)."""


def watched(pm: PluginManager, hook_name: str) -> bool:
    """Whether calls of ``hook_name`` must go through pluggy: a wrapper implements it or a monitor is on."""
    return pm.monitors > 0 or any(
        impl.wrapper or impl.hookwrapper for impl in getattr(pm.hook, hook_name).get_hookimpls()
    )


def implementations(pm: PluginManager, hook_name: str) -> list[Implementation]:
    """Each implementation of ``hook_name`` (wrappers aside) in pluggy's call order.

    ``call`` takes the hook's arguments positionally, in the spec's order, and returns that
    one implementation's result (None for none); its error reaches the caller, who decides
    what it means (an event hook logs it, a risk rule's error rejects the order). When the
    hook is :func:`watched`, ``call`` runs pluggy's hook execution on that one
    implementation with every wrapper of the hook, so ``wrapper=True`` and
    ``hookwrapper=True`` implementations wrap it and tracing and monitors see it;
    otherwise it is the implementation itself, like ``direct``. (Per implementation, not
    per plugin: a plugin may implement one hook twice, with ``specname``.)
    """
    hook = getattr(pm.hook, hook_name)
    spec = hook.spec
    assert spec is not None, hook_name
    names = tuple(spec.argnames)
    every = hook.get_hookimpls()
    wrappers = [impl for impl in every if impl.wrapper or impl.hookwrapper]
    through_pluggy = pm.monitors > 0 or bool(wrappers)
    firstresult = bool(spec.opts.get("firstresult"))
    found: list[Implementation] = []
    for impl in reversed(every):
        if impl.wrapper or impl.hookwrapper:
            continue
        direct = _positional(impl.function, tuple(impl.argnames), names)
        call = _one_call(hook, [impl, *wrappers], names, firstresult) if through_pluggy else direct
        found.append(Implementation(impl, call, direct))
    return found


def _positional(function: Callable[..., Any], argnames: tuple[str, ...], names: tuple[str, ...]) -> Callable[..., Any]:
    """``function``, taking the hook's arguments (``names``) positionally whatever subset it takes."""
    if argnames == names:
        return function
    picks = tuple(names.index(name) for name in argnames)
    return lambda *args: function(*[args[i] for i in picks])


def _one_call(
    hook: pluggy.HookCaller, methods: list[pluggy.HookImpl], names: tuple[str, ...], firstresult: bool
) -> Callable[..., Any]:
    """pluggy's execution of ``methods`` (one implementation, then the wrappers), positionally."""
    execute, name = hook._hookexec, hook.name  # the manager's, through its monitors

    def call(*args: Any) -> Any:
        result: Any = execute(name, methods, dict(zip(names, args, strict=True)), firstresult)
        if firstresult:
            return result
        return result[0] if result else None

    return call


def notify(pm: PluginManager, hook_name: str, **kwargs: Any) -> None:
    """Call every implementation of event hook ``hook_name``; log, never raise, their errors.

    One implementation's error never keeps the others from hearing the event. An
    implementation gets the arguments it takes, by name.
    """
    hook = getattr(pm.hook, hook_name)
    every = hook.get_hookimpls()
    if not every:
        return
    wrappers = [impl for impl in every if impl.wrapper or impl.hookwrapper]
    through_pluggy = pm.monitors > 0 or bool(wrappers)
    for impl in reversed(every):
        if impl.wrapper or impl.hookwrapper:
            continue
        try:
            if through_pluggy:
                hook._hookexec(hook.name, [impl, *wrappers], kwargs, False)
            else:
                impl.function(*[kwargs[arg] for arg in impl.argnames])
        except Exception:
            log.exception("plugin %r raised in %s; ignored", impl.plugin_name, hook_name)
