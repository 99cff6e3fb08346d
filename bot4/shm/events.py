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

__all__ = ["RECORDER_TIMEOUT_NS", "ROOM_FOR_RISK", "EventKind", "EventRecord", "EventRing"]

RECORDER_TIMEOUT_NS = 2_000_000_000
"""A recorder whose heartbeat is older than this is down: no new risk (it beats every few ms)."""
ROOM_FOR_RISK = L.EVENTS // 8
"""Records kept free for what cannot be refused (fills, releases, marks, kill-switch trips):
new risk is refused once fewer are free."""
_FLOATS = struct.Struct("<4d")


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
    """An order's status changed at a venue: code = status, text = client order id and venue."""
    SNAPSHOT = 10
    """One symbol's or the account's state as the recorder read it (after records were lost to a full ring)."""
    RECOVERED = 11
    """The desk was rebuilt from the journal: ref = open orders to reconcile."""
    OPERATOR = 12
    """An operator's action: text = who and what."""


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
        """Records not appended because the ring was full."""
        return self._r.load(self._h + _native.EV_LOST)

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

    def problem(self, now_ns: int, *, room: int = ROOM_FOR_RISK) -> str | None:
        """Why new risk may not be taken now (``now_ns``: host monotonic), or None.

        None also when no journal records this segment.
        """
        r, h = self._r, self._h
        if not r.load(h + _native.EV_ON):
            return None
        recovering = r.load(h + _native.EV_RECOVERING)
        if recovering:
            return f"{recovering} orders recovered from the journal are not reconciled with their venues yet"
        if r.load(h + _native.EV_ERROR):
            return f"the journal cannot be written: {self.error}"
        beat = r.load(h + _native.EV_BEAT_NS)
        if now_ns - beat > RECORDER_TIMEOUT_NS:
            if beat == 0:
                return "the journal's recorder has not started"
            return f"the journal's recorder is down (no heartbeat for {(now_ns - beat) / 1e9:.1f}s)"
        if r.load(h + _native.EV_LOST) != r.load(h + _native.EV_LOST_SEEN):
            return "records were lost to a full journal ring; waiting for the recorder's snapshot"
        used = r.load(h + _native.EV_HEAD) - r.load(h + _native.EV_TAIL)
        if used > L.EVENTS - room:
            return f"the journal's recorder is behind ({used} of {L.EVENTS} records not yet written)"
        return None

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
        decode_text(w[text : text + _native.EV_TEXT_WORDS]),
    )


def finite_or_none(value: float) -> float | None:
    """``value``, or None for NaN (a record's figure that does not apply)."""
    return None if math.isnan(value) else value
