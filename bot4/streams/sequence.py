"""Update ids of one connection: a quote older than the newest of its symbol is dropped.

A venue numbers each symbol's book updates; on one connection they only go up. An update
at or below the newest seen is a replay or a reordering, and is dropped. If they stay
behind for :data:`RENUMBERED` updates in a row, the venue renumbered them (a restart
behind the same connection): the new numbering is taken. A new connection starts afresh
(:meth:`UpdateIds.clear`).
"""

from __future__ import annotations

import logging

__all__ = ["RENUMBERED", "UpdateIds"]

log = logging.getLogger("bot4.streams")

RENUMBERED = 50
"""Updates in a row older than the newest of the connection: the venue renumbered them."""


class UpdateIds:
    """The newest update id per symbol of one connection (``name``: what logs call the stream)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._last: dict[str, int] = {}
        self._behind: dict[str, int] = {}  # symbol -> updates in a row older than _last

    def accept(self, symbol: str, update_id: int) -> bool:
        """Whether an update of ``symbol`` numbered ``update_id`` is newer than those seen (it is then the newest)."""
        if update_id <= self._last.get(symbol, -1):
            behind = self._behind[symbol] = self._behind.get(symbol, 0) + 1
            if behind < RENUMBERED:
                return False
            log.warning("%s: %s update ids went back and stayed back: taken as renumbered", self.name, symbol)
        if self._behind:
            self._behind.pop(symbol, None)
        self._last[symbol] = update_id
        return True

    def forget(self, symbol: str) -> None:
        """Forget ``symbol``'s ids: its next update is taken, whatever its number."""
        self._last.pop(symbol, None)
        self._behind.pop(symbol, None)

    def clear(self) -> None:
        """Forget every id: a new connection may number its updates anew."""
        self._last.clear()
        self._behind.clear()
