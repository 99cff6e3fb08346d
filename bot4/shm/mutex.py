"""Transactions on the segment: a robust mutex plus a redo journal.

Multi-word updates (the risk ledger's check-and-reserve, fills, prices) take a
process-shared robust mutex: when its holder dies the OS hands it to the next waiter
instead of leaving everyone blocked. The writes of a transaction are staged in a redo
journal in the segment, then published (the commit point), then applied. A holder killed
before the commit point changed nothing; one killed after it left a journal that the next
holder replays before doing anything else. Either way every reader sees all of a
transaction or none of it.
"""

from __future__ import annotations

from types import TracebackType

from bot4.shm import _native
from bot4.shm.lock import LockTimeoutError

__all__ = ["SharedMutex", "Transaction"]


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

    Writes are discarded if the block raises. Every transaction that writes also bumps
    the word at ``version`` (when given), so readers can cache what they read by it.
    """

    __slots__ = ("_region", "_mutex", "_journal", "_version", "_timeout", "_tx")

    def __init__(
        self, region: _native.Region, mutex: int, journal: int, version: int | None = None, timeout: float = 5.0
    ) -> None:
        self._region = region
        self._mutex = mutex
        self._journal = journal
        self._version = version
        self._timeout = timeout
        self._tx: Transaction | None = None

    def __enter__(self) -> Transaction:
        got = self._region.mutex_lock(self._mutex, self._timeout)
        if got < 0:
            raise LockTimeoutError(f"the risk ledger lock was held by a live process for over {self._timeout}s")
        try:
            self._region.replay(self._journal)
        except BaseException:
            self._region.mutex_unlock(self._mutex)
            raise
        self._tx = Transaction(self._region, self._journal)
        return self._tx

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        tx, self._tx = self._tx, None
        try:
            if exc_type is None and tx is not None and tx.staged:
                self._region.publish(self._journal, tx.staged, -1 if self._version is None else self._version)
        finally:
            self._region.mutex_unlock(self._mutex)
