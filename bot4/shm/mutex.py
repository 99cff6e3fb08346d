"""Transactions on the segment: a robust mutex plus a redo journal.

Multi-word updates (the risk ledger's check-and-reserve, fills, prices) take a
process-shared robust mutex: when its holder dies the OS hands it to the next waiter
instead of leaving everyone blocked. The writes of a transaction are staged in a redo
journal in the segment, then published (the commit point), then applied. A holder killed
before the commit point changed nothing; one killed after it left a journal that the next
holder replays before doing anything else. Either way every reader sees all of a
transaction or none of it.

Only bounded bot4 code runs while the mutex is held (never a plugin or other user code),
every wait for it is bounded, and no exception — ``KeyboardInterrupt`` included — leaves it
held: the acquisition and its hand-back sit in one ``try``, and a section this thread left
locked anyway (an interrupt in the few bytecodes between) is taken back by its next
acquisition (the mutex is error-checking: the OS says this thread holds it). A mutex left
unrecoverable (its holder died between the OS's owner-dead report and the repair) is
re-initialised by one process, elected by an owner lock that itself survives its holder's
death.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import TracebackType
from typing import TypeVar

from bot4.errors import LockTimeoutError, SegmentStateError
from bot4.shm import _native
from bot4.shm.lock import OwnerLock

__all__ = ["SharedMutex", "Transaction"]

log = logging.getLogger("bot4.shm")

T = TypeVar("T")
_ACQUIRED, _FROM_DEAD, _TIMEOUT = _native.MUTEX_ACQUIRED, _native.MUTEX_FROM_DEAD, _native.MUTEX_TIMEOUT
_UNRECOVERABLE, _OWN = _native.MUTEX_UNRECOVERABLE, _native.MUTEX_OWN
_READ_TRIES = 64


class Transaction:
    """The writes of one critical section, staged in the journal; applied atomically on commit.

    ``staged`` counts the journal pairs written so far; native helpers that stage writes
    of their own take it and return the new count.
    """

    __slots__ = ("_region", "_journal", "staged")

    def __init__(self, region: _native.Region, journal: int) -> None:
        self._region = region
        self._journal = journal
        self.staged = 0

    def set(self, index: int, value: int | float | tuple[int | float, ...]) -> None:
        """Write ``value`` (int or float; a tuple writes consecutive words) at ``index`` on commit."""
        self.staged = self._region.stage(self._journal, self.staged, index, value)

    def __len__(self) -> int:
        return self.staged


class SharedMutex:
    """``with mutex as tx:`` — exclusive across processes; ``tx``'s writes commit at exit.

    Writes are discarded if the block raises. Every transaction that writes also moves the
    sequence word at ``version`` (when given): odd while its writes are applied, even
    after, so :meth:`read` can take consistent lock-free snapshots.

    Args:
        region: the segment's word region.
        mutex: word index of the robust mutex.
        journal: word index of the redo journal.
        version: word index of the sequence word, or None.
        repair: word index of the owner lock that elects the re-initialiser of an
            unrecoverable mutex.
        ident: this process's identity (for ``repair``).
        timeout: seconds to wait for a live holder before :class:`LockTimeoutError`.
    """

    __slots__ = ("_region", "_mutex", "_journal", "_version", "_repair", "_ident", "_timeout", "_tx")

    def __init__(
        self,
        region: _native.Region,
        mutex: int,
        journal: int,
        *,
        version: int | None = None,
        repair: int,
        ident: int,
        timeout: float = 5.0,
    ) -> None:
        self._region = region
        self._mutex = mutex
        self._journal = journal
        self._version = version
        self._repair = repair
        self._ident = ident
        self._timeout = timeout
        self._tx: Transaction | None = None

    def __enter__(self) -> Transaction:
        region = self._region
        try:
            got = region.mutex_lock(self._mutex, self._timeout)
            for _ in range(3):
                if got != _UNRECOVERABLE:
                    break
                self._reinitialise()
                got = region.mutex_lock(self._mutex, self._timeout)
            if got == _TIMEOUT:
                raise LockTimeoutError(f"the risk ledger lock was held by a live process for over {self._timeout}s")
            if got == _UNRECOVERABLE:
                raise SegmentStateError("", "the risk ledger mutex stays unrecoverable after re-initialisation")
            if got == _OWN:
                log.warning("the risk ledger lock was left held by this thread (an interrupted section); taken back")
            region.replay(self._journal)
        except BaseException:
            region.mutex_unlock(self._mutex)  # a no-op unless this thread holds it
            raise
        self._tx = Transaction(region, self._journal)
        return self._tx

    def _reinitialise(self) -> None:
        region = self._region
        with OwnerLock(region, self._repair, self._ident, self._timeout):
            got = region.mutex_lock(self._mutex, 0.0)
            if got == _UNRECOVERABLE:
                log.warning("re-initialising the risk ledger mutex (its holder died while repairing it)")
                region.mutex_init(self._mutex)
            elif got in (_ACQUIRED, _FROM_DEAD, _OWN):
                region.mutex_unlock(self._mutex)  # repaired by another process meanwhile

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        tx, self._tx = self._tx, None
        try:
            if exc_type is None and tx is not None and tx.staged:
                self._region.publish(self._journal, tx.staged, -1 if self._version is None else self._version)
        finally:
            self._region.mutex_unlock(self._mutex)

    def read(self, reader: Callable[[], T]) -> T:
        """``reader()`` as of one instant between transactions (needs ``version``).

        Lock-free: retried while a transaction is being applied, a bounded number of times;
        then read under the mutex, which also repairs what a writer killed mid-way left.
        """
        load, version = self._region.load, self._version
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
