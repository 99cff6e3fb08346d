"""A lock word that cannot wedge: a dead holder's lock is taken over.

Used only off the hot path (creating a breaker, writing a config block). The word
holds the holder's process identity; a waiter that finds the holder dead takes the
lock over with one compare-and-swap. Everything written under the lock is written so
that a holder killed half-way leaves nothing visible (the write goes to an inactive
block, or a record is published last), so taking over is always safe.
"""

from __future__ import annotations

import time
from types import TracebackType

from bot4.errors import LockTimeoutError
from bot4.shm import _native
from bot4.shm import layout as L
from bot4.shm._proc import identity_pid, is_alive

__all__ = ["LockTimeoutError", "OwnerLock"]


class OwnerLock:
    """Context manager over one lock word of a region.

    Args:
        region: the segment's word region.
        index: the lock word.
        ident: the calling process's identity.
        timeout: seconds to wait for a live holder before :class:`LockTimeoutError`.
    """

    __slots__ = ("_region", "_index", "_ident", "_timeout")

    def __init__(self, region: _native.Region, index: int, ident: int, timeout: float = 5.0) -> None:
        self._region = region
        self._index = index
        self._ident = ident
        self._timeout = timeout

    def acquire(self) -> None:
        """Take the lock, taking it over from a dead holder; wait for a live one."""
        region, index, me = self._region, self._index, self._ident
        deadline = time.monotonic() + self._timeout
        pause = 0.0
        while True:
            if region.cas(index, 0, me):
                return
            holder = region.load(index)
            # A holder's PID means nothing once processes of another PID namespace share the segment.
            takeover = holder != 0 and holder != me and not region.load(L.H_FOREIGN) and not is_alive(holder)
            if takeover and region.cas(index, holder, me):
                return
            if time.monotonic() > deadline:
                raise LockTimeoutError(
                    f"segment lock word {index} held by live pid {identity_pid(holder)} for over {self._timeout}s"
                )
            time.sleep(pause)
            pause = min(0.001, pause * 2 or 0.00002)

    def release(self) -> None:
        """Release the lock if this process holds it."""
        self._region.cas(self._index, self._ident, 0)

    def __enter__(self) -> OwnerLock:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
