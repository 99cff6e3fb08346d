"""Logs breaker and fuse transitions to the ``bot4.events`` logger."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from bot4.plugins.hookspecs import hookimpl

if TYPE_CHECKING:
    from bot4.breaker.breaker import CircuitBreaker
    from bot4.breaker.fuse import FuseState
    from bot4.breaker.state import BreakerState
    from bot4.core import Core

__all__ = ["bot4_breaker_state_changed", "bot4_fuse_changed"]

log = logging.getLogger("bot4.events")


@hookimpl(trylast=True)
def bot4_breaker_state_changed(breaker: CircuitBreaker, old: BreakerState, new: BreakerState, reason: str) -> None:
    """Log a breaker transition (WARNING when it opens, INFO otherwise)."""
    level = logging.WARNING if new.name in ("OPEN", "FORCED_OPEN") else logging.INFO
    log.log(level, "breaker %s: %s -> %s (%s)", breaker.name, old.name, new.name, reason)


@hookimpl(trylast=True)
def bot4_fuse_changed(core: Core, old: FuseState, new: FuseState, reason: str) -> None:
    """Log a fuse transition."""
    log.warning("fuse of %s: %s -> %s (%s)", core.name, old.name, new.name, reason)
