"""The quote table: the top of book of every (venue, symbol) a feed follows, in the segment.

A feed process writes each quote it receives here; every worker reads it from shared
memory (routing, risk) without a venue call. A record holds the best bid and ask with
their sizes, the last trade price, the venue's update id, the venue's time and the
receive time on the core's clock — so a reader always knows how old a quote is.

Records are found by key (venue and symbol) and claimed once per key, under the table's
claim lock (a lock word whose dead holder is taken over): a record is FREE, CLAIMING (the
lock holder writes its key; one found so by the next holder was left by a dead one and
is reused) or PUBLISHED, and a key has one record, which every process finds.

A record's fields are written by one writer at a time: its writer word is a lock taken by
compare-and-swap (from a dead writer too, never from a live one: of two live writers of one
record the second skips that update; threads of one process take a lock of their own
first), under a seqlock (odd while the fields are written). A reader that sees it odd, or
changed across its read, reads again for a bounded time, then has no quote (fail closed);
a writer killed mid-write leaves it odd until the next write.
"""

from __future__ import annotations

import math
import os
import threading
import time
import weakref
from typing import TYPE_CHECKING, NamedTuple

from bot4._symbols import MAX_SYMBOL_BYTES, symbol_problem
from bot4.errors import CapacityError, ConfigError
from bot4.shm import layout as L
from bot4.shm._proc import is_alive
from bot4.shm.lock import OwnerLock
from bot4.shm.text import decode_text, encode_text

if TYPE_CHECKING:
    from bot4._context import CoreContext
    from bot4.streams.events import Quote

__all__ = ["MAX_VENUE_BYTES", "QuoteTable", "SharedQuote"]

FREE, CLAIMING, PUBLISHED = 0, 1, 2
MAX_VENUE_BYTES = 32
"""The longest venue name the table keeps (UTF-8 bytes)."""
assert MAX_VENUE_BYTES + 1 + MAX_SYMBOL_BYTES <= L.QUOTE_KEY_WORDS * 8
assert L.QUOTE_UPDATE_ID == L.QUOTE_BID + L.QUOTE_FLOATS  # a quote's words are one run: one native write
_READ_SPINS = 64  # reads of an odd seqlock before yielding to other threads
_READ_SECONDS = 0.005  # then for this long at most: a writer mid-write is that quick, or dead
_TABLES: weakref.WeakSet[QuoteTable] = weakref.WeakSet()


class SharedQuote(NamedTuple):
    """A quote as the table holds it."""

    venue: str
    symbol: str
    bid: float
    bid_size: float
    ask: float
    ask_size: float
    last: float
    """The last trade price (NaN: none seen)."""
    update_id: int
    exchange_ms: int
    """The venue's time of the quote (0: the venue gave none)."""
    receive_ns: int
    """When the feed received it, on the core's clock."""


class QuoteTable:
    """The segment's quote table, as one process sees it (``core.quotes``)."""

    def __init__(self, context: CoreContext) -> None:
        self._ctx = context  # its identity changes in a forked child
        self._r = context.segment.region
        self._lay = context.segment.layout
        self._index: dict[tuple[str, str], int] = {}
        self._high = self._lay.quote(0) + L.QUOTE_HIGH  # the word: records in use are below it
        self._scan_from = 1  # records below it were published when last scanned (record 0 is the header)
        self._writing = threading.Lock()  # threads of one process write one at a time
        self._words: dict[int, tuple[int, int, int]] = {}  # record -> its writer lock, seqlock, first field
        self._seq_put = self._r.seq_put
        self._try_writing, self._done_writing = self._writing.acquire, self._writing.release
        _TABLES.add(self)

    def publish(self, venue: str, quote: Quote, receive_ns: int, last: float = math.nan) -> bool:
        """Write ``quote`` (received at ``receive_ns``) as ``venue``'s top of book for its symbol.

        Returns False when another live writer is writing the same record at this moment
        (this update is skipped: that writer's is as fresh). Raises :class:`bot4.CapacityError`
        when every record is in use.
        """
        return self._write(self.handle(venue, quote.symbol), quote, receive_ns, last)

    def handle(self, venue: str, symbol: str) -> int:
        """The record of ``venue``'s ``symbol`` (claimed if new), for :meth:`write`: a feed
        looks it up once per symbol, not once per message."""
        index = self._lookup(venue, symbol)
        index = self._claim(venue, symbol) if index is None else index
        self._words_of(index)
        return index

    def write(self, handle: int, quote: Quote, receive_ns: int) -> bool:
        """:meth:`publish` to a record found with :meth:`handle` (``quote.symbol`` must be its symbol):
        a feed's hot path, one native call when nobody else writes the record."""
        words = self._words.get(handle)
        if words is None or not self._try_writing(False):
            return self._write(handle, quote, receive_ns, math.nan)
        try:
            _, bid, bid_size, ask, ask_size, update_id, exchange_ms = quote
            lock, seq, first = words
            holder = self._seq_put(
                lock,
                self._ctx.ident,
                seq,
                first,
                bid,
                bid_size,
                ask,
                ask_size,
                None,
                update_id,
                exchange_ms,
                receive_ns,
            )
        finally:
            self._done_writing()
        return holder == 0 or self._write(handle, quote, receive_ns, math.nan)  # another writer's lock: the slow way

    def publish_last(self, venue: str, symbol: str, price: float) -> bool:
        """Write ``price`` as the last trade price of ``venue``'s ``symbol`` (see :meth:`publish`)."""
        return self._write(self.handle(venue, symbol), None, 0, price)

    def get(self, venue: str, symbol: str) -> SharedQuote | None:
        """``venue``'s top of book for ``symbol``, or None (none published, or unreadable now)."""
        try:
            index = self._index.get((venue, symbol))
        except TypeError:  # unhashable: not a name at all
            index = None
        if index is None:
            if self._r.load(self._high) > self._scan_from:
                self._scan()  # records were published since the last look
            index = self._lookup(venue, symbol)
        return None if index is None else self._read(index, venue, symbol)

    def all(self) -> list[SharedQuote]:
        """Every quote published, in record order."""
        self._scan()
        quotes = []
        for (venue, symbol), index in sorted(self._index.items(), key=lambda item: item[1]):
            quote = self._read(index, venue, symbol)
            if quote is not None:
                quotes.append(quote)
        return quotes

    # ------------------------------------------------------------------ records

    def _lookup(self, venue: str, symbol: str) -> int | None:
        """The record known for the key, None when unknown (a key is checked once, when first asked for)."""
        try:
            index = self._index.get((venue, symbol))
        except TypeError:  # unhashable: not a name at all
            index = None
        if index is None:
            _check_key(venue, symbol)
        return index

    def _scan(self) -> None:
        """Learn the key of every published record (one record per key: claims hold the lock)."""
        r, lay = self._r, self._lay
        high = min(r.load(self._high), L.QUOTES)
        gap = None  # the first record not published yet: the next scan starts there
        for index in range(self._scan_from, high):
            base = lay.quote(index)
            if r.load(base + L.QUOTE_STATE) == PUBLISHED:
                venue, _, symbol = decode_text(r.load_range(base + L.QUOTE_KEY, L.QUOTE_KEY_WORDS)).partition("\0")
                self._index.setdefault((venue, symbol), index)
            elif gap is None:
                gap = index
        self._scan_from = max(self._scan_from, high) if gap is None else gap

    def _claim(self, venue: str, symbol: str) -> int:
        r, lay = self._r, self._lay
        with OwnerLock(r, lay.quote(0) + L.QUOTE_LOCK, self._ctx.ident):
            self._scan()  # claimed by another process meanwhile?
            index = self._index.get((venue, symbol))
            if index is not None:
                return index
            for index in range(1, L.QUOTES):
                base = lay.quote(index)
                if r.load(base + L.QUOTE_STATE) == PUBLISHED:
                    continue  # FREE, or CLAIMING by a holder of this lock that died: ours
                r.store(base + L.QUOTE_STATE, CLAIMING)
                for offset, word in enumerate(encode_text(f"{venue}\0{symbol}", L.QUOTE_KEY_WORDS)):
                    r.store(base + L.QUOTE_KEY + offset, word)
                r.put(base + L.QUOTE_BID, *([math.nan] * L.QUOTE_FLOATS))  # no price until the first write
                r.put(base + L.QUOTE_UPDATE_ID, *([0] * L.QUOTE_INTS))
                r.store(base + L.QUOTE_SEQ, 0)
                r.store(base + L.QUOTE_WRITER, 0)
                if r.load(self._high) <= index:
                    r.store(self._high, index + 1)
                r.store(base + L.QUOTE_STATE, PUBLISHED)
                self._index[(venue, symbol)] = index
                return index
        raise CapacityError(f"the quote table is full ({L.QUOTES - 1} venue/symbol records)")

    # ------------------------------------------------------------------ fields

    def _write(self, index: int, quote: Quote | None, receive_ns: int, last: float) -> bool:
        if not self._writing.acquire(blocking=False):
            return False  # another thread of this process is writing: skip, never wait
        try:
            r, me = self._r, self._ctx.ident
            lock, seq, first = self._words.get(index) or self._words_of(index)
            if quote is None:
                values: tuple[float | int | None, ...] = (None, None, None, None, last)
            else:
                values = (quote.bid, quote.bid_size, quote.ask, quote.ask_size, None if last != last else last)
                values += (quote.update_id, quote.exchange_ms, receive_ns)
            holder = r.seq_put(lock, me, seq, first, *values)  # one native call: lock, seqlock, words
            if holder:  # another writer's lock: a live one is never waited for; a dead one's is taken over
                if is_alive(holder) or not r.cas(lock, holder, me):
                    return False
                holder = r.seq_put(lock, me, seq, first, *values)
            return holder == 0
        finally:
            self._writing.release()

    def _words_of(self, index: int) -> tuple[int, int, int]:
        """Record ``index``'s writer lock, seqlock and first field words (remembered)."""
        base = self._lay.quote(index)
        words = self._words[index] = (base + L.QUOTE_WRITER, base + L.QUOTE_SEQ, base + L.QUOTE_BID)
        return words

    def _read(self, index: int, venue: str, symbol: str) -> SharedQuote | None:
        r = self._r
        base = self._lay.quote(index)
        seq_word = base + L.QUOTE_SEQ
        spins, deadline = 0, 0.0
        while True:
            seq = r.load(seq_word)
            if not seq & 1:
                floats = r.loadf_range(base + L.QUOTE_BID, L.QUOTE_FLOATS)
                ints = r.load_range(base + L.QUOTE_UPDATE_ID, L.QUOTE_INTS)
                if r.load(seq_word) == seq:
                    if seq == 0:
                        return None  # claimed, never written
                    bid, bid_size, ask, ask_size, last = floats
                    update_id, exchange_ms, receive_ns = ints
                    return SharedQuote(
                        venue, symbol, bid, bid_size, ask, ask_size, last, update_id, exchange_ms, receive_ns
                    )
            spins += 1
            if spins >= _READ_SPINS:
                now = time.monotonic()
                if not deadline:
                    deadline = now + _READ_SECONDS
                elif now > deadline:
                    return None  # a writer that died mid-write, or one stalled: no quote, never a torn one
                time.sleep(0)  # let a writer thread of this process finish


def _check_key(venue: object, symbol: object) -> None:
    if not isinstance(venue, str) or not venue or not venue.isprintable():
        raise ConfigError("venue", f"a venue name is a non-empty printable string, got {venue!r}")
    try:
        size = len(venue.encode())
    except UnicodeEncodeError:
        raise ConfigError("venue", f"a venue name is valid UTF-8, got {venue!r}") from None
    if size > MAX_VENUE_BYTES:
        raise ConfigError("venue", f"a venue name is at most {MAX_VENUE_BYTES} bytes, got {venue!r}")
    problem = symbol_problem(symbol)
    if problem is not None:
        raise ConfigError("symbol", problem)


def _after_fork_in_child() -> None:
    for table in list(_TABLES):  # a thread of the parent may have held it: the child has no such thread
        table._writing = threading.Lock()
        table._try_writing, table._done_writing = table._writing.acquire, table._writing.release


os.register_at_fork(after_in_child=_after_fork_in_child)
