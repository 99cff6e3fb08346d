"""The recorder: drains a segment's event ring into the journal, in batches, off the hot path.

One recorder per segment (a lock file beside the journal keeps a second one waiting). It
beats a heartbeat into the ring's header every pass; while it cannot write (disk full, a
read-only file, an I/O error) it says why there, and new risk is refused until a write
succeeds again. It never holds the ledger mutex while it writes: a snapshot of the
ledger (taken when records were lost to a full ring) is read under it, then written.

Run it as its own process: ``python -m bot4.journal SEGMENT PATH`` (what
:class:`bot4.journal.RecorderProcess` and ``Core.create(journal=...)`` start).
"""

from __future__ import annotations

import argparse
import fcntl
import logging
import os
import signal
import sqlite3
import struct
import threading
import time
from collections.abc import Sequence

from bot4.clock import MonotonicClock
from bot4.errors import Bot4Error, JournalError, SegmentError
from bot4.journal.store import JournalStore
from bot4.risk.kill_switch import TradingWord
from bot4.risk.limits import RiskLimits
from bot4.shm import _native
from bot4.shm import layout as L
from bot4.shm._proc import my_identity
from bot4.shm.events import EventKind, EventRing
from bot4.shm.mutex import ledger_mutex
from bot4.shm.segment import SHM_DIR, Segment
from bot4.shm.text import decode_text

__all__ = ["EXIT_NO_SEGMENT", "Recorder", "main"]

log = logging.getLogger("bot4.journal")

_RESERVATION = struct.Struct(f"<4q2d{L.RES_WORDS - 6}q")  # a reservation entry (layout V_*)
assert (L.V_OWNER, L.V_ID, L.V_SYMBOL, L.V_SIDE, L.V_QTY, L.V_PRICE) == (0, 1, 2, 3, 4, 5)
_LIMITS = EventKind.LIMITS.value
_LIMITS_FLOATS = f"<{len(RiskLimits().to_floats())}d"
_KINDS = tuple(next((kind.name for kind in EventKind if kind.value == k), str(k)) for k in range(max(EventKind) + 1))
"""Kind names by number (what the ``kind`` column holds)."""
_BACKOFF_MIN, _BACKOFF_MAX = 0.05, 1.0
EXIT_NO_SEGMENT = 3
"""The recorder's exit status when its segment is gone or is no segment (not restarted)."""


class Recorder:
    """Drains ``segment``'s event ring into the journal at ``path``.

    Args:
        segment: the segment (attached here) or its name.
        path: the journal database.
        interval: seconds between passes when the ring is empty.
        synchronous: as for :class:`bot4.journal.JournalStore`.
        max_bytes: a size cap for the journal (it then reports "full"), or None.
    """

    def __init__(
        self,
        segment: Segment | str,
        path: str | os.PathLike[str],
        *,
        interval: float = 0.002,
        synchronous: str = "FULL",
        max_bytes: int | None = None,
    ) -> None:
        self._own_segment = isinstance(segment, str)
        self._seg = Segment.attach(segment) if isinstance(segment, str) else segment
        try:
            lay = self._seg.layout
            self._ring = EventRing(self._seg.region, lay)
            if not self._ring.on:
                raise JournalError(f"segment {self._seg.name!r} has no journal switched on")
            self._epoch = self._ring.epoch
            self.store = JournalStore(path, synchronous=synchronous, max_bytes=max_bytes)
            self._ident = my_identity()
            self._mutex = ledger_mutex(self._seg, self._ident)
            self._names: list[str] = []
            self._interval = interval
            self._next, self._lost_seen = self.store.cursor(self._epoch)
            self._next = max(self._next, self._ring.tail)
            self._failures = 0
            self.written = 0
            """Records written so far."""
        except BaseException:
            if self._own_segment:
                self._seg.close()
            raise

    @property
    def ring(self) -> EventRing:
        """The ring drained."""
        return self._ring

    def close(self) -> None:
        """Close the database (and the segment, if attached here)."""
        self.store.close()
        if self._own_segment:
            self._seg.close()

    # ------------------------------------------------------------------ one pass

    def beat(self) -> None:
        """Tell the segment this recorder is alive."""
        self._ring.beat(self._ident, _native.monotonic_ns())

    def drain(self) -> int:
        """Write every record appended so far (and a snapshot, if records were lost); return how many.

        Raises:
            sqlite3.Error, OSError: the journal cannot be written (the ring keeps the records).
        """
        ring = self._ring
        lost = ring.lost
        snapshot: list[tuple[object, ...]] = []
        if lost != self._lost_seen:
            head, snapshot = self._snapshot()
        else:
            head = ring.head
        start = self._next
        if head <= start and not snapshot:
            return 0
        rows = self._rows(start, head)
        self.store.append(self._epoch, rows + snapshot, head, lost if snapshot else self._lost_seen)
        self._next = head
        if snapshot:
            self._lost_seen = lost
            ring.snapshot_taken(lost)
        ring.advance(head)
        self.written += len(rows)
        return len(rows)

    def _rows(self, start: int, end: int) -> list[tuple[object, ...]]:
        seg = self._seg
        if seg.region.load(seg.layout.ledger + L.L_SYMBOLS_USED) > len(self._names):
            self._refresh_names()
        rows = _native.events_rows(
            seg.region, seg.layout.events, L.EVENTS, start, end, self._epoch, _KINDS, self._names, _LIMITS
        )
        for i, row in enumerate(rows):
            if row[3] == "LIMITS":  # the limits as configured, carried in the record's text area
                raw = row[-2]
                assert isinstance(raw, bytes)
                limits = RiskLimits.from_floats(list(struct.unpack_from(_LIMITS_FLOATS, raw)))
                rows[i] = (*row[:-2], "", limits.to_json())
        return rows

    def _refresh_names(self) -> list[str]:
        lay, r = self._seg.layout, self._seg.region
        used = r.load(lay.ledger + L.L_SYMBOLS_USED)
        self._names = [decode_text(r.load_range(lay.symbol(i) + L.Y_NAME, L.SYMBOL_NAME_WORDS)) for i in range(used)]
        return self._names

    def _limits_json(self) -> str:
        lay, r = self._seg.layout, self._seg.region
        base = lay.ledger
        for _ in range(64):
            gen = r.load(base + L.L_LIMITS_GEN)
            if gen & 1:
                continue
            floats = list(r.loadf_range(base + L.L_LIMITS, L.LIMITS_WORDS))
            if r.load(base + L.L_LIMITS_GEN) == gen:
                return RiskLimits.from_floats(floats).to_json()
        return ""

    def _snapshot(self) -> tuple[int, list[tuple[object, ...]]]:
        """The ledger's state as rows, and the ring head it is the state after (read under the mutex)."""
        lay, r, epoch = self._seg.layout, self._seg.region, self._epoch
        base = lay.ledger
        with self._mutex:
            head = self._ring.head
            now = time.time_ns()
            cash, unrealized, peak, day_start = r.loadf_range(base + L.L_CASH, 4)
            day_id = r.load(base + L.L_DAY_ID)
            equity_set = r.load(base + L.L_EQUITY_SET)
            trading = r.load(base + L.L_TRADING)
            reason = TradingWord(r, base, MonotonicClock()).reason()
            names = self._refresh_names()
            symbols = [
                (name, *r.loadf_range(lay.symbol(i) + L.Y_POSITION, 3), r.loadf(lay.symbol(i) + L.Y_REALIZED))
                for i, name in enumerate(names)
            ]
            table = self._seg.raw(lay.reservations, lay.max_reservations * L.RES_WORDS)
        held = [
            (res_id, symbol, side, left, price)
            for owner, res_id, symbol, side, left, price, _, _ in _RESERVATION.iter_unpack(table)
            if owner != 0
        ]
        account = (cash, unrealized, peak, day_start, day_id, equity_set, trading)
        rows: list[tuple[object, ...]] = []
        nan = float("nan")
        pid = os.getpid()
        for name, position, average, mark, realized in symbols:
            rows.append(
                (epoch, None, now, "SNAPSHOT", pid, name, head, 0, nan, nan, nan, nan)
                + (position, average, realized, mark)
                + account
                + ("records lost to a full ring: state as read", None)
            )
        after = {name: (position, average, realized, mark) for name, position, average, mark, realized in symbols}
        for res_id, symbol, side, left, price in held:  # what each live reservation still holds
            name = names[symbol] if 0 <= symbol < len(names) else None
            rows.append(
                (epoch, None, now, "HELD", pid, name, res_id, side, left, price, float(head), nan)
                + after.get(name or "", (nan, nan, nan, nan))  # the symbol as the snapshot read it
                + account
                + ("", None)
            )
        rows.append(  # the account, with the reason of the trading state in force
            (epoch, None, now, "SNAPSHOT", pid, None, head, 0, nan, nan, nan, nan, nan, nan, nan, nan)
            + account
            + (reason, self._limits_json())
        )
        return head, rows

    # ------------------------------------------------------------------ the loop

    def run(self, stop: threading.Event) -> None:
        """Beat and drain until ``stop`` is set; write failures are reported in the segment and retried."""
        backoff = _BACKOFF_MIN
        while not stop.is_set():
            self.beat()
            try:
                written = self.drain()
            except (sqlite3.Error, OSError) as e:
                self._failures += 1
                why = f"{type(e).__name__}: {e}"
                if self._ring.error != why:
                    log.error(
                        "journal %s cannot be written: %s (new risk is refused until it can)", self.store.path, why
                    )
                self._ring.set_error(why)
                stop.wait(backoff)
                backoff = min(_BACKOFF_MAX, backoff * 2)
                continue
            if self._ring.error:
                log.warning("journal %s is written again", self.store.path)
                self._ring.set_error("")
            backoff = _BACKOFF_MIN
            if not written:
                stop.wait(self._interval)


def _segment_gone(segment: Segment) -> bool:
    """Whether ``segment``'s name no longer names it (unlinked, or replaced by a new segment)."""
    try:
        fd = os.open(os.path.join(SHM_DIR, segment.name), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    try:
        created = os.pread(fd, 8, L.H_CREATED_NS * 8)
    finally:
        os.close(fd)
    return int.from_bytes(created, "little", signed=True) != segment.region.load(L.H_CREATED_NS)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bot4.journal SEGMENT PATH``: record until SIGTERM, the segment is gone, or
    (``--exit-with-parent``) the process that started it is. A recorder that stops this way
    writes what was appended, then marks the ring stopped: new risk is refused from then on."""
    parser = argparse.ArgumentParser(prog="python -m bot4.journal", description=__doc__)
    parser.add_argument("segment")
    parser.add_argument("path")
    parser.add_argument("--synchronous", default="FULL", choices=("FULL", "NORMAL", "EXTRA"))
    parser.add_argument("--max-bytes", type=int, default=None)
    parser.add_argument("--exit-with-parent", action="store_true", help="stop when the parent process exits")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s bot4 recorder %(levelname)s %(message)s")
    stop = threading.Event()
    parent = os.getppid() if args.exit_with_parent else None
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    lock = open(f"{args.path}.lock", "a+b")  # noqa: SIM115 - held for the life of the process
    while True:  # one recorder per journal: wait for a previous one to exit
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if stop.wait(0.05) or (parent is not None and os.getppid() != parent):
                return 0
    try:
        recorder = Recorder(args.segment, args.path, synchronous=args.synchronous, max_bytes=args.max_bytes)
    except SegmentError as e:
        log.error("%s", e)
        return EXIT_NO_SEGMENT
    except Bot4Error as e:  # the journal cannot be opened now (a read-only file, a busy lock): tried again
        log.error("%s", e)
        return 2
    recorder.ring.set_stopped(False)  # a recorder that stopped before is succeeded (never a closed desk)
    watcher = threading.Thread(target=_watch, args=(recorder, stop, parent), daemon=True)
    watcher.start()
    try:
        recorder.run(stop)
        recorder.drain()  # what was appended up to the stop
    except (sqlite3.Error, OSError) as e:
        log.error("journal %s: last drain failed: %s", args.path, e)
    finally:
        if stop.is_set():  # an orderly stop, not a crash (a crash is restarted by the supervisor)
            recorder.ring.set_stopped(True)
        recorder.close()
    return 0


def _watch(recorder: Recorder, stop: threading.Event, parent: int | None) -> None:
    while not stop.wait(0.2):
        if _segment_gone(recorder._seg):
            log.info("segment %s is gone: recorder exits", recorder._seg.name)
            stop.set()
        elif parent is not None and os.getppid() != parent:
            log.warning("the process that supervised this recorder is gone: recorder exits (no new risk)")
            stop.set()
