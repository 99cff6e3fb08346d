"""A core's journal: recovery when the segment is created, then recording (``core.journal``)."""

from __future__ import annotations

import asyncio
import fcntl
import logging
import math
import os
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING

from bot4.errors import ConfigError, JournalError
from bot4.journal.process import RecorderProcess
from bot4.journal.recovery import JournalState, OpenOrder, read_state
from bot4.journal.store import JournalStore
from bot4.shm import _native
from bot4.shm.events import EventKind, EventRing

if TYPE_CHECKING:
    from bot4.risk.engine import RiskEngine
    from bot4.shm.segment import Segment

__all__ = ["Journal", "start_journal"]

log = logging.getLogger("bot4.journal")


class Journal:
    """A desk's journal, as one process sees it (``core.journal``).

    Every process of the desk appends to the segment's event ring; the recorder makes the
    records durable. See ``docs/journal.md``.
    """

    def __init__(
        self,
        segment: Segment,
        *,
        recovered: JournalState | None = None,
        recorder: RecorderProcess | None = None,
        desk_lock: IO[bytes] | None = None,
    ) -> None:
        self._ring = EventRing(segment.region, segment.layout)
        self._recovered = recovered
        self._recorder = recorder
        self._desk_lock = desk_lock

    @property
    def path(self) -> Path:
        """The journal database."""
        return Path(self._ring.path)

    @property
    def epoch(self) -> int:
        """This segment's epoch in the journal."""
        return self._ring.epoch

    @property
    def recovered(self) -> JournalState | None:
        """The state this desk was rebuilt from (in the process that created it), else None."""
        return self._recovered

    @property
    def recorder(self) -> RecorderProcess | None:
        """The recorder this process supervises, if any."""
        return self._recorder

    @property
    def problem(self) -> str | None:
        """Why new risk is refused because of the journal now, or None."""
        return self._ring.problem()

    @property
    def backlog(self) -> int:
        """Records appended and not yet durable."""
        return self._ring.head - self._ring.tail

    @property
    def recovering(self) -> int:
        """Recovered orders still to reconcile with their venues (new risk waits for them)."""
        return self._ring.recovering

    def pending_orders(self) -> tuple[OpenOrder, ...]:
        """The orders that were open when this desk was rebuilt (empty once reconciled)."""
        if not self._ring.recovering:
            return ()
        store = JournalStore(self.path, read_only=True)
        try:
            row = store.db.execute("SELECT recovered_from FROM epochs WHERE epoch = ?", (self.epoch,)).fetchone()
            if row is None or row[0] is None:
                return ()
            return read_state(store, int(row[0])).open_orders
        finally:
            store.close()

    def wait_durable(self, timeout: float = 10.0) -> bool:
        """Wait until every record appended so far is durable; False if ``timeout`` passed first."""
        target = self._ring.head
        deadline = time.monotonic() + timeout
        while self._ring.tail < target:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.001)
        return True

    async def await_durable(self, timeout: float = 10.0) -> bool:
        """:meth:`wait_durable` from asyncio."""
        target = self._ring.head
        deadline = time.monotonic() + timeout
        while self._ring.tail < target:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.001)
        return True

    def wait_ready(self, timeout: float = 30.0) -> bool:
        """Wait until the recorder beats (new risk is refused until it does); False on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            _, beat = self._ring.recorder
            if beat and _native.monotonic_ns() - beat < 1_000_000_000:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)

    def close(self) -> None:
        """Stop recording (in the process that created the desk): new risk is refused from now
        on in every process; the recorder this process supervises writes what was appended,
        then stops; the journal is free for another desk."""
        if self._desk_lock is None:
            return
        self._ring.close()
        if self._recorder is not None:
            self._recorder.stop()
            self._recorder = None
        self._desk_lock.close()
        self._desk_lock = None


def start_journal(
    engine: RiskEngine,
    segment: Segment,
    path: str | os.PathLike[str],
    *,
    recorder: bool = True,
    synchronous: str = "FULL",
    max_bytes: int | None = None,
) -> Journal:
    """Rebuild ``segment``'s ledger from the journal at ``path`` (if it holds anything) and
    switch recording on, with a supervised recorder process unless ``recorder`` is False.

    Called on a new segment before any other process attaches.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise ConfigError("journal", f"expected a path, got {path!r}")
    full = os.path.abspath(os.fspath(path))
    try:
        full.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError("journal", f"the path must be UTF-8: {full!r}") from None
    if len(full.encode()) > _native.EV_PATH_WORDS * 8:
        raise ConfigError("journal", f"the path is longer than {_native.EV_PATH_WORDS * 8} bytes: {full!r}")
    if not os.path.isdir(os.path.dirname(full)):
        raise ConfigError("journal", f"no directory {os.path.dirname(full)!r} for the journal")
    desk_lock = _lock_desk(full)
    try:
        _wait_for_recorders(full)  # a previous desk's recorder may still be writing what it had
        store = JournalStore(full, synchronous=synchronous, max_bytes=max_bytes)
    except BaseException:
        desk_lock.close()
        raise
    try:
        state = read_state(store)
        recovered = None
        if state.last_id:
            restore(engine, state)
            recovered = state
        epoch = store.new_epoch(segment.name, state.last_id or None)
        ring = EventRing(segment.region, segment.layout)
        if recovered is not None:
            _mark_recovered(store, epoch, recovered)
            ring.set_recovering(len(recovered.open_orders))
            log.warning(
                "desk %s rebuilt from journal %s (event %d): %d symbols, %d open orders to reconcile, trading %s",
                segment.name,
                full,
                state.last_id,
                len(state.symbols),
                len(state.open_orders),
                state.trading_state.name,
            )
    except BaseException:
        store.close()
        desk_lock.close()
        raise
    store.close()
    ring.switch_on(epoch, full)
    process = None
    if recorder:
        process = RecorderProcess(segment.name, full, synchronous=synchronous, max_bytes=max_bytes)
        process.start()
    return Journal(segment, recovered=recovered, recorder=process, desk_lock=desk_lock)


_RECORDER_WAIT = 10.0  # seconds a new desk waits for a previous desk's recorder to finish


def _wait_for_recorders(path: str) -> None:
    """Return once no recorder holds ``path``'s recorder lock (every record it had is written);
    :class:`JournalError` if one still does after a while (paused, or still draining)."""
    with open(f"{path}.lock", "a+b") as lock:
        deadline = time.monotonic() + _RECORDER_WAIT
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return  # closing the file releases it for this desk's recorder
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise JournalError(
                        f"a recorder of a previous desk still holds {path}.lock: stop it, or wait for it to "
                        "finish, before rebuilding the desk"
                    ) from None
                time.sleep(0.02)


def _lock_desk(path: str) -> IO[bytes]:
    """Hold ``path``'s desk lock (one desk per journal) for the life of the returned file."""
    lock = open(f"{path}.desk", "a+b")  # noqa: SIM115 - held until Journal.close (or the process's end)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise JournalError(f"the journal {path} is in use by another live desk") from None
    return lock


def restore(engine: RiskEngine, state: JournalState) -> None:
    """Write ``state`` into ``engine``'s ledger (a new one: nothing else runs on it yet)."""
    if state.limits is not None:
        engine.configure(state.limits)
    for name, sym in state.symbols.items():
        engine._restore_symbol(name, sym.position, sym.average_price, sym.realized_pnl, sym.mark)
    account = state.account
    if account is not None:
        engine._restore_account(
            account.cash,
            account.unrealized_pnl,
            account.peak_equity,
            account.day_start,
            account.day_id,
            account.equity_set,
        )
    engine._restore_trading(state.trading_state, state.reason)


def _mark_recovered(store: JournalStore, epoch: int, state: JournalState) -> None:
    nan = math.nan
    acc = state.account
    account = (
        (acc.cash, acc.unrealized_pnl, acc.peak_equity, acc.day_start, acc.day_id, int(acc.equity_set))
        if acc is not None
        else (nan, nan, nan, nan, 0, 0)
    )
    text = f"rebuilt from event {state.last_id}: {len(state.open_orders)} open orders to reconcile"
    row = (
        (epoch, None, time.time_ns(), EventKind.RECOVERED.name, os.getpid(), None, len(state.open_orders), 0)
        + (nan,) * 8
        + account
        + (int(state.trading_state), text, None)
    )
    try:
        store.insert([row])
    except Exception as e:  # pragma: no cover - the same store was just written
        raise JournalError(f"cannot write to the journal {store.path}: {e}") from e
