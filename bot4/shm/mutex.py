"""Transactions on the segment: a robust mutex plus a redo journal.

Multi-word updates (the risk ledger's check-and-reserve, fills, prices) take a
process-shared robust mutex: when its holder dies the OS hands it to the next waiter
instead of leaving everyone blocked. The writes of a transaction are staged in a redo
journal in the segment, then published (the commit point), then applied. A holder killed
before the commit point changed nothing; one killed after it left a journal that the next
holder replays before doing anything else. Either way every reader sees all of a
transaction or none of it.

Only bounded bot4 code runs while the mutex is held (never a plugin or other user code),
and every wait for it is bounded. No exception — ``KeyboardInterrupt`` included — leaves
it held: entering and leaving a section are native calls, so no bytecode (where Python
delivers a signal) runs between taking the mutex and the protected block, or between its
end and the hand-back. Should a section of this thread ever be left locked anyway, the
next one takes it back (the mutex is error-checking: the OS says this thread holds it).
A mutex left unrecoverable (its holder died between the OS's owner-dead report and the
repair) is re-initialised by one process, elected by an owner lock that itself survives
its holder's death.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from bot4.shm import _native
from bot4.shm import layout as L
from bot4.shm._proc import holder_token
from bot4.shm.lock import OwnerLock

if TYPE_CHECKING:
    from bot4.shm.segment import Segment

__all__ = ["SharedMutex", "Transaction", "ledger_mutex"]

log = logging.getLogger("bot4.shm")

T = TypeVar("T")
_READ_TRIES = 64


class SharedMutex(_native.Section):
    """``with mutex as tx:`` — exclusive across processes; ``tx``'s writes commit at exit.

    ``tx`` is the section itself: ``tx.set(index, value)`` stages a write, ``tx.staged``
    counts the journal pairs staged (native helpers that stage writes of their own take it
    and return the new count). Writes are discarded if the block raises. Every transaction
    that writes also moves the sequence word at ``version`` (when given): odd while its
    writes are applied, even after, so :meth:`read` can take consistent lock-free snapshots.

    Args:
        region: the segment's word region.
        mutex: word index of the robust mutex.
        journal: word index of the redo journal.
        version: word index of the sequence word, or None.
        holder: word index where the holder's identity is kept while it holds the mutex (the
            OS knows a holder by thread id only, and thread ids repeat across PID namespaces).
        repair: word index of the owner lock that elects the re-initialiser of an
            unrecoverable mutex.
        ident: this process's identity (``repair``'s owner; tied to its PID namespace in ``holder``).
        timeout: seconds to wait for a live holder before :class:`bot4.LockTimeoutError`.
    """

    def __init__(
        self,
        region: _native.Region,
        mutex: int,
        journal: int,
        *,
        version: int | None = None,
        holder: int,
        repair: int,
        ident: int,
        timeout: float = 5.0,
    ) -> None:
        super().__init__(
            region, mutex, journal, -1 if version is None else version, holder, holder_token(ident), timeout
        )
        self.owner_ident = ident
        self._mutex = mutex
        self._version = version
        self._repair = repair

    def _reinitialise(self) -> None:
        """Called natively when the mutex is unrecoverable: one process re-initialises it."""
        region = self.region
        with OwnerLock(region, self._repair, self.owner_ident, self.timeout):
            got = region.mutex_lock(self._mutex, 0.0)
            if got == _native.MUTEX_UNRECOVERABLE:
                log.warning("re-initialising the risk ledger mutex (its holder died while repairing it)")
                region.mutex_init(self._mutex)
            elif got in (_native.MUTEX_ACQUIRED, _native.MUTEX_FROM_DEAD):
                region.mutex_unlock(self._mutex)  # repaired by another process meanwhile

    def rebind(self, ident: int) -> None:
        """A forked child's identity (and holder token) for this mutex."""
        self.owner_ident = ident
        self.ident = holder_token(ident)

    def _taken_back(self) -> None:
        """Called natively when this thread already held the mutex (a section left locked)."""
        log.warning("the risk ledger lock was left held by this thread (an interrupted section); taken back")

    def read(self, reader: Callable[[], T]) -> T:
        """``reader()`` as of one instant between transactions (needs ``version``).

        Lock-free: retried while a transaction is being applied, a bounded number of times;
        then read under the mutex, which also repairs what a writer killed mid-way left.
        """
        load, version = self.region.load, self._version
        assert version is not None
        for _ in range(_READ_TRIES):
            before = load(version)
            if before & 1:
                continue
            value = reader()
            if load(version) == before:
                return value
        with self:
            return reader()


Transaction = SharedMutex
"""The type of ``tx`` in ``with mutex as tx:`` (the section itself)."""


def ledger_mutex(segment: Segment, ident: int, timeout: float = 5.0) -> SharedMutex:
    """The risk ledger's mutex of ``segment``, for the process of identity ``ident``."""
    lay = segment.layout
    return SharedMutex(
        segment.region,
        lay.ledger + L.L_MUTEX,
        lay.journal,
        version=lay.ledger + L.L_VERSION,
        holder=lay.ledger + L.L_MUTEX_HOLDER,
        repair=lay.ledger + L.L_MUTEX_REPAIR,
        ident=ident,
        timeout=timeout,
    )
