"""Every hook bot4 calls, in one place. Each hook is prefixed ``bot4_``.

Implement a hook with :data:`bot4.hookimpl`::

    import bot4

    class PageOnTrip:
        @bot4.hookimpl
        def bot4_breaker_state_changed(self, breaker, old, new, reason):
            if new is bot4.BreakerState.OPEN:
                page_the_desk(f"{breaker.name} opened: {reason}")

    core.plugins.register(PageOnTrip())

Event hooks are notifications: an implementation that raises is logged (logger
``bot4.plugins``) and never breaks the guarded call or the other implementations.
Events fire in the process where the event happened, once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from bot4.breaker.breaker import CircuitBreaker
    from bot4.breaker.fuse import FuseState
    from bot4.breaker.state import BreakerState
    from bot4.core import Core
    from bot4.errors import CircuitOpenError

__all__ = ["hookimpl", "hookspec"]

PROJECT = "bot4"
hookspec = pluggy.HookspecMarker(PROJECT)
"""Marker for bot4 hook specifications."""
hookimpl = pluggy.HookimplMarker(PROJECT)
"""Marker for implementations of bot4 hooks."""


@hookspec
def bot4_breaker_state_changed(breaker: CircuitBreaker, old: BreakerState, new: BreakerState, reason: str) -> None:
    """A breaker changed state.

    Called once, in the process that made the transition.

    :param breaker: the breaker (its ``name``, ``snapshot()``, ...).
    :param old: the state it left.
    :param new: the state it entered.
    :param reason: why, in words (``"failure rate reached its threshold (...)"``, ``"reset"``, ...).
    :return: nothing; the result is ignored.
    """


@hookspec
def bot4_call_rejected(breaker: CircuitBreaker, error: CircuitOpenError) -> None:
    """A call was rejected by a breaker (or the global fuse) before it ran.

    Called in the rejecting process, just before ``error`` is raised to the caller.

    :param breaker: the breaker that rejected the call.
    :param error: the :class:`bot4.CircuitOpenError` about to be raised.
    :return: nothing; the result is ignored.
    """


@hookspec
def bot4_fuse_changed(core: Core, old: FuseState, new: FuseState, reason: str) -> None:
    """The core's global fuse changed state.

    Called once, in the process that made the change.

    :param core: the core whose fuse changed.
    :param old: the fuse state it left.
    :param new: the fuse state it entered.
    :param reason: why, in words.
    :return: nothing; the result is ignored.
    """
