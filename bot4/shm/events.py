"""The event ring: the segment's record of what changed the desk, drained by a journal.

Ledger transactions append their record natively, inside the transaction
(``Section.record``, see ``_events.inc``): a record is visible exactly when its
transaction commits. This module reads the ring, keeps its header (the recorder's
heartbeat, its error, the tail it made durable) and says whether new risk may be taken:
with a journal on, it may not while the recorder is down, failing, behind by a full ring,
or has records to catch up on that were lost to a full ring.
"""

from __future__ import annotations

import math
import struct
from enum import IntEnum
from typing import NamedTuple

from bot4.shm import _native
from bot4.shm import layout as L
from bot4.shm.text import decode_text, encode_text

__all__ = ["RECORDER_TIMEOUT_NS", "RECORD_WAIT", "ROOM_FOR_RISK", "EventKind", "EventRecord", "EventRing"]

RECORDER_TIMEOUT_NS: int = _native.EV_RECORDER_TIMEOUT_NS
"""A recorder whose heartbeat is older than this is down: no new risk (it beats every few ms)."""
ROOM_FOR_RISK = L.EVENTS // _native.EV_ROOM_DIVISOR
"""Records kept free for what cannot be refused (fills, releases, marks, kill-switch trips):
new risk is refused once fewer are free."""
RECORD_WAIT = 0.05
"""Seconds a record made outside the ledger's own transactions (a trading-state change, a
breaker's transition) waits for the ledger; past it the record is counted missed and the
recorder snapshots the state: the change itself never waits on the journal."""
_FLOATS = struct.Struct("<4d")
_RECORDER_STOPPED, _DESK_CLOSED = 1, 2  # EV_STOPPED's values


class EventKind(IntEnum):
    """What a journal record is about (the ``kind`` column)."""

    RESERVE = 1
    """An order's exposure reserved: ref = reservation id, code = side (+1/-1), figures =
    quantity reserved, entry price, limit price (NaN: none), order quantity; text = client
    order id, strategy and order type, separated by U+001F."""
    RELEASE = 2
    """A reservation given back (ref = reservation id; code 0 released, 1 reclaimed from a dead process)."""
    FILL = 3
    """A fill: ref = reservation id, code = side, figures = quantity, price, fee, quantity left; text = trade id."""
    MARK = 4
    """A new price of a symbol (figure 0)."""
    EQUITY = 5
    """Account equity set (figure 0)."""
    LIMITS = 6
    """Risk limits configured."""
    TRADING = 7
    """The trading state changed (kill switch): code = state, ref = generation, text = reason."""
    BREAKER = 8
    """A breaker's state changed: ref = breaker index, code = new state, text = name and reason."""
    ORDER = 9
    """An order manager's order changed status: ref = reservation id (0: none), code = the new
    status (``bot4.orders.status.BY_CODE``), figure 0 = filled so far; text = client order
    id, venue, event and detail, separated by U+001F."""
    SNAPSHOT = 10
    """One symbol's or the account's state as the recorder read it (after records were lost to a full ring)."""
    RECOVERED = 11
    """The desk was rebuilt from the journal: ref = open orders to reconcile."""
    OPERATOR = 12
    """An operator's action: text = who and what."""
    HELD = 13
    """Written by the recorder with a snapshot, one per live reservation: ref = reservation id,
    code = side, figures = quantity left, entry price, the snapshot's ring position."""


class EventRecord(NamedTuple):
    """One record of the ring, decoded."""

    position: int
    kind: int
    time_ns: int
    pid: int
    ref: int
    symbol: int
    code: int
    figures: tuple[float, float, float, float]
    post_symbol: tuple[float, float, float, float]
    """Position, average price, realized P&L, mark of ``symbol`` after the event (NaN: none)."""
    cash: float
    unrealized: float
    peak: float
    day_start: float
    day_id: int
    equity_set: int
    trading: int
    version: int
    text: str


def _float(word: int) -> float:
    return struct.unpack("<d", struct.pack("<q", word))[0]  # type: ignore[no-any-return]


ACCOUNT_WORDS = (
    L.L_CASH,
    L.L_UNREALIZED,
    L.L_PEAK,
    L.L_DAY_START,
    L.L_DAY_ID,
    L.L_EQUITY_SET,
    L.L_TRADING,
    L.L_VERSION,
)
"""The ledger words a record's account part copies, in record order (ledger offsets)."""
SYMBOL_FIELDS = (L.Y_POSITION, L.Y_AVG_PRICE, L.Y_REALIZED, L.Y_MARK)
"""The symbol row words a record's symbol part copies, in record order."""


def bind(section: _native.Section, layout: L.Layout) -> None:
    """Point ``section`` (the ledger mutex) at ``layout``'s event ring."""
    section.bind_events(
        layout.events,
        L.EVENTS,
        tuple(layout.ledger + w for w in ACCOUNT_WORDS),
        layout.symbols,
        L.SYM_WORDS,
        SYMBOL_FIELDS,
    )


class EventRing:
    """The header and records of a segment's event ring."""

    __slots__ = ("_r", "_lay", "_h")

    def __init__(self, region: _native.Region, layout: L.Layout) -> None:
        self._r = region
        self._lay = layout
        self._h = layout.events

    # ------------------------------------------------------------------ header

    @property
    def on(self) -> bool:
        """Whether a journal records this segment (records are appended, risk needs a recorder)."""
        return self._r.load(self._h + _native.EV_ON) != 0

    def switch_on(self, epoch: int, path: str) -> None:
        """Start appending records, for the journal at ``path`` (absolute), epoch ``epoch``."""
        for k, word in enumerate(encode_text(path, _native.EV_PATH_WORDS)):
            self._r.store(self._h + _native.EV_PATH + k, word)
        self._r.store(self._h + _native.EV_EPOCH, epoch)
        self._r.store(self._h + _native.EV_ON, 1)

    @property
    def path(self) -> str:
        """The journal's path (``""``: none)."""
        return decode_text(self._r.load_range(self._h + _native.EV_PATH, _native.EV_PATH_WORDS))

    @property
    def recovery_lock(self) -> int:
        """Word index of the owner lock taken by the process adopting recovered orders."""
        return self._h + _native.EV_RECOVERY_LOCK

    @property
    def epoch(self) -> int:
        """The journal epoch of this segment (0: no journal)."""
        return self._r.load(self._h + _native.EV_EPOCH)

    @property
    def head(self) -> int:
        """Records ever appended."""
        return self._r.load(self._h + _native.EV_HEAD)

    @property
    def tail(self) -> int:
        """Records made durable by the recorder."""
        return self._r.load(self._h + _native.EV_TAIL)

    def advance(self, tail: int) -> None:
        """The recorder made every record before ``tail`` durable."""
        if tail > self.tail:
            self._r.store(self._h + _native.EV_TAIL, tail)

    @property
    def lost(self) -> int:
        """Records not made: the ring was full, or (outside a transaction) the ledger was busy."""
        return self._r.load(self._h + _native.EV_LOST) + self._r.load(self._h + _native.EV_MISSED)

    def missed(self) -> None:
        """A record that could not be made outside a transaction: the recorder snapshots the state."""
        self._r.add(self._h + _native.EV_MISSED, 1)

    @property
    def stopped(self) -> bool:
        """Whether the recorder stopped for good (new risk is refused)."""
        return bool(self._r.load(self._h + _native.EV_STOPPED))

    def set_stopped(self, stopped: bool) -> None:
        """The recorder stopped in order (or a new one starts); never undoes :meth:`close`."""
        r, at = self._r, self._h + _native.EV_STOPPED
        if stopped:
            r.cas(at, 0, _RECORDER_STOPPED)
        else:
            r.cas(at, _RECORDER_STOPPED, 0)

    def close(self) -> None:
        """The desk's journal is closed: no new risk from now on, whatever recorder runs."""
        self._r.store(self._h + _native.EV_STOPPED, _DESK_CLOSED)

    @property
    def closed(self) -> bool:
        """Whether the desk closed its journal."""
        return self._r.load(self._h + _native.EV_STOPPED) == _DESK_CLOSED

    @property
    def lost_seen(self) -> int:
        """:attr:`lost` as of the recorder's last snapshot of the ledger."""
        return self._r.load(self._h + _native.EV_LOST_SEEN)

    def snapshot_taken(self, lost: int) -> None:
        """The recorder wrote a snapshot after ``lost`` records were lost."""
        self._r.store(self._h + _native.EV_LOST_SEEN, lost)

    def beat(self, ident: int, now_ns: int) -> None:
        """The recorder is alive (``now_ns``: host monotonic)."""
        self._r.store(self._h + _native.EV_RECORDER, ident)
        self._r.store(self._h + _native.EV_BEAT_NS, now_ns)

    @property
    def recorder(self) -> tuple[int, int]:
        """(identity, last heartbeat ns) of the recorder."""
        return self._r.load(self._h + _native.EV_RECORDER), self._r.load(self._h + _native.EV_BEAT_NS)

    def set_error(self, text: str) -> None:
        """The recorder cannot write (``text`` says why); empty clears it."""
        r, at = self._r, self._h + _native.EV_ERROR_TEXT
        if text:
            for k, word in enumerate(encode_text(text, _native.EV_ERROR_WORDS)):
                r.store(at + k, word)
            r.store(self._h + _native.EV_ERROR, 1)
        else:
            r.store(self._h + _native.EV_ERROR, 0)

    @property
    def error(self) -> str:
        """Why the recorder cannot write, or ``""``."""
        if not self._r.load(self._h + _native.EV_ERROR):
            return ""
        return decode_text(self._r.load_range(self._h + _native.EV_ERROR_TEXT, _native.EV_ERROR_WORDS))

    @property
    def recovering(self) -> int:
        """Orders recovered from the journal still to reconcile with their venues."""
        return self._r.load(self._h + _native.EV_RECOVERING)

    def set_recovering(self, count: int) -> None:
        """``count`` recovered orders await reconciliation (0: done)."""
        self._r.store(self._h + _native.EV_RECOVERING, count)

    def blocked(self) -> int:
        """``_native.EV_READY`` if new risk may be taken now, else the ``EV_BLOCK_*`` code saying
        why (one native call; :meth:`describe` words it)."""
        return _native.events_blocked(self._r, self._h, L.EVENTS)

    def problem(self) -> str | None:
        """Why new risk may not be taken now, or None (also when no journal records this segment)."""
        code = self.blocked()
        return None if code == _native.EV_READY else self.describe(code)

    def describe(self, code: int) -> str:
        """The reason an ``EV_BLOCK_*`` code stands for, with the ring's numbers now."""
        r, h = self._r, self._h
        if code == _native.EV_BLOCK_RECOVERING:
            recovering = r.load(h + _native.EV_RECOVERING)
            return f"{recovering} orders recovered from the journal are not reconciled with their venues yet"
        if code == _native.EV_BLOCK_ERROR:
            return f"the journal cannot be written: {self.error}"
        if code == _native.EV_BLOCK_RECORDER:
            if self.closed:
                return "the desk's journal is closed (its creator closed the core)"
            if self.stopped:
                return "the journal's recorder has stopped"
            beat = r.load(h + _native.EV_BEAT_NS)
            if beat == 0:
                return "the journal's recorder has not started"
            return f"the journal's recorder is down (no heartbeat for {(_native.monotonic_ns() - beat) / 1e9:.1f}s)"
        if code == _native.EV_BLOCK_LOST:
            return "records were lost to a full journal ring; waiting for the recorder's snapshot"
        used = r.load(h + _native.EV_HEAD) - r.load(h + _native.EV_TAIL)
        return f"the journal's recorder is behind ({used} of {L.EVENTS} records not yet written)"

    # ------------------------------------------------------------------ records

    def read(self, start: int, end: int) -> list[EventRecord]:
        """Records ``start`` .. ``end - 1`` (all appended, none yet overwritten: ``end`` <= head)."""
        out: list[EventRecord] = []
        load_range, event = self._r.load_range, self._lay.event
        for position in range(start, end):
            w = load_range(event(position), _native.EV_WORDS)
            out.append(decode(position, w))
        return out


def decode(position: int, w: tuple[int, ...] | list[int]) -> EventRecord:
    """The record at ``position`` from its ``EV_WORDS`` words."""
    f0 = _native.EV_F0
    ps, pa = _native.EV_POST_SYMBOL, _native.EV_POST_ACCOUNT
    figures = _FLOATS.unpack(struct.pack("<4q", *w[f0 : f0 + 4]))
    post = _FLOATS.unpack(struct.pack("<4q", *w[ps : ps + 4]))
    text = _native.EV_TEXT
    return EventRecord(
        position,
        w[_native.EV_KIND],
        w[_native.EV_TIME_NS],
        w[_native.EV_PID],
        w[_native.EV_REF],
        w[_native.EV_SYMBOL],
        w[_native.EV_CODE],
        figures,
        post,
        _float(w[pa]),
        _float(w[pa + 1]),
        _float(w[pa + 2]),
        _float(w[pa + 3]),
        w[pa + 4],
        w[pa + 5],
        w[pa + 6],
        w[pa + 7],
        _text(w[text : text + _native.EV_TEXT_WORDS]),
    )


def _text(words: tuple[int, ...] | list[int]) -> str:
    """A record's text: its UTF-8 up to the first NUL (what lies after it is stale)."""
    raw = b"".join(v.to_bytes(8, "little", signed=True) for v in words)
    return raw.partition(b"\0")[0].decode("utf-8", "replace")


def finite_or_none(value: float) -> float | None:
    """``value``, or None for NaN (a record's figure that does not apply)."""
    return None if math.isnan(value) else value
