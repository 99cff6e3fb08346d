"""The dashboard's control actions: parsed from a request body into one of a few commands.

A body is checked whole before anything changes: a bad field changes nothing. Every
action is journaled as an operator's record with who (``operator``) and why (``reason``).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from bot4.core import Core
from bot4.errors import Bot4Error, ConfigError
from bot4.risk.limits import RiskLimits

__all__ = ["ACTIONS", "ControlError", "perform"]

ACTIONS = ("kill", "resume", "force-open", "reset", "limits")
"""The control endpoints, ``POST /api/control/<action>``."""
_MAX_TEXT = 200
_LIMIT_FIELDS = {f.name for f in dataclasses.fields(RiskLimits)}


class ControlError(Bot4Error):
    """A control request that is refused: ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _text(body: dict[str, Any], field: str) -> str:
    value = body.get(field)
    if not isinstance(value, str) or not value.strip():
        raise ControlError(422, f"{field!r}: a non-empty string is required")
    if len(value) > _MAX_TEXT or any(ch < " " or "\x7f" <= ch <= "\x9f" for ch in value):
        raise ControlError(422, f"{field!r}: at most {_MAX_TEXT} characters, no control characters")
    return value.strip()


def _limits(current: RiskLimits, changes: Any) -> RiskLimits:
    if not isinstance(changes, dict) or not changes:
        raise ControlError(422, "'limits': an object of the limits to change is required")
    unknown = sorted(set(changes) - _LIMIT_FIELDS)
    if unknown:
        raise ControlError(422, f"'limits': unknown fields {unknown} (known: {sorted(_LIMIT_FIELDS)})")
    for field, value in changes.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ControlError(422, f"'limits.{field}': must be finite")
    try:
        return dataclasses.replace(current, **changes)
    except (Bot4Error, TypeError, ValueError) as exc:  # RiskLimits validates every field
        raise ControlError(422, f"'limits': {exc}") from None


def perform(core: Core, action: str, body: dict[str, Any], peer: str) -> str:
    """Carry out ``action`` with the fields of ``body``; return what was done (also journaled).
    Raises :class:`ControlError` before changing anything when the request is bad."""
    if action not in ACTIONS:
        raise ControlError(404, f"no control action {action!r} (known: {', '.join(ACTIONS)})")
    known = {"operator", "reason", "breaker", "flatten", "limits"}
    extra = sorted(set(body) - known)
    if extra:
        raise ControlError(422, f"unknown fields {extra}")
    operator, reason = _text(body, "operator"), _text(body, "reason")
    switch = core.risk.kill_switch
    if action == "kill":
        flatten = body.get("flatten")
        if flatten is not None and not isinstance(flatten, bool):
            raise ControlError(422, "'flatten': true, false or absent")
        switch.trip(reason, flatten=flatten)  # first: nothing may delay the kill switch
        done = f"kill switch tripped ({reason})" + (" to flatten" if flatten else "")
    elif action == "resume":
        switch.reset(reason)
        done = f"trading resumed ({reason})"
    elif action in ("force-open", "reset"):
        name = body.get("breaker")
        if not isinstance(name, str) or name not in core.breaker_names():
            raise ControlError(404, f"'breaker': no breaker named {name!r}")
        breaker = core.breaker(name)
        if action == "force-open":
            breaker.force_open(f"{operator}: {reason}")
            done = f"breaker {name} forced open ({reason})"
        else:
            breaker.reset(f"{operator}: {reason}")
            done = f"breaker {name} reset ({reason})"
    else:
        new = _limits(core.risk.limits, body.get("limits"))
        try:
            core.risk.configure(new)
        except (ConfigError, OverflowError, ValueError) as exc:  # a number past what the ledger holds
            raise ControlError(422, f"'limits': {exc}") from None
        done = f"limits set: {', '.join(f'{k}={v}' for k, v in sorted(body['limits'].items()))} ({reason})"
    record = f"{operator} via bot4 serve from {peer}: {done}"
    try:
        core.risk.record_operator(record)
    except Bot4Error:  # the change is made (and journaled as such); who made it is in the server's log
        pass
    return record
