"""The quote table: the top of book of every (venue, symbol) a feed follows, in the segment.

A feed process writes each quote it receives here; every worker reads it from shared
memory (routing, risk) without a venue call. A record holds the best bid and ask with
their sizes, the last trade price, the venue's update id, the venue's time and the
receive time on the core's clock — so a reader always knows how old a quote is.

Records are found by key (venue and symbol) and claimed once: a record is FREE, CLAIMING
(its claimer writes the key) or PUBLISHED. The fields are written under a seqlock (odd
while a writer writes): a reader that sees it odd, or changed across its read, reads
again, a bounded number of times, then has no quote (fail closed). A writer killed
mid-write leaves it odd; the next write takes over from a dead writer, and a live one is
never waited for: of two live writers of one record, the second skips that update.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, NamedTuple

from bot4._symbols import MAX_SYMBOL_BYTES, symbol_problem
from bot4.errors import CapacityError, ConfigError
from bot4.shm import layout as L
from bot4.shm._proc import is_alive
from bot4.shm.text import decode_text, encode_text

if TYPE_CHECKING:
    from bot4.shm._native import Region
    from bot4.streams.events import Quote

__all__ = ["MAX_VENUE_BYTES", "QuoteTable", "SharedQuote"]

FREE, CLAIMING, PUBLISHED = 0, 1, 2
MAX_VENUE_BYTES = 32
"""The longest venue name the table keeps (UTF-8 bytes)."""
assert MAX_VENUE_BYTES + 1 + MAX_SYMBOL_BYTES <= L.QUOTE_KEY_WORDS * 8
_READ_TRIES = 256


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

    def __init__(self, region: Region, layout: L.Layout, ident: int) -> None:
        self._r = region
        self._lay = layout
        self._ident = ident
        self._index: dict[tuple[str, str], int] = {}
        self._seen = 1  # records scanned so far (record 0 holds the high-water mark)

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
        index = self._record(venue, symbol, create=True)
        assert index is not None
        return index

    def write(self, handle: int, quote: Quote, receive_ns: int) -> bool:
        """:meth:`publish` to a record found with :meth:`handle` (``quote.symbol`` must be its symbol)."""
        return self._write(handle, quote, receive_ns, math.nan)

    def publish_last(self, venue: str, symbol: str, price: float) -> bool:
        """Write ``price`` as the last trade price of ``venue``'s ``symbol`` (see :meth:`publish`)."""
        index = self._record(venue, symbol, create=True)
        assert index is not None
        return self._write(index, None, 0, price)

    def get(self, venue: str, symbol: str) -> SharedQuote | None:
        """``venue``'s top of book for ``symbol``, or None (none published, or unreadable now)."""
        index = self._record(venue, symbol, create=False)
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

    def _record(self, venue: str, symbol: str, *, create: bool) -> int | None:
        key = (venue, symbol)
        index = self._index.get(key)
        if index is None:
            self._scan()
            index = self._index.get(key)
            if index is None and create:
                index = self._claim(venue, symbol)
        return index

    def _scan(self) -> None:
        """Learn the keys of the records published since the last scan (the first of a key wins)."""
        r, lay = self._r, self._lay
        high = min(r.load(lay.quote(0) + L.QUOTE_HIGH), L.QUOTES)
        for index in range(max(self._seen, 1), high):
            base = lay.quote(index)
            if r.load(base + L.QUOTE_STATE) != PUBLISHED:
                return  # not published yet: scanned again from here next time
            venue, _, symbol = decode_text(r.load_range(base + L.QUOTE_KEY, L.QUOTE_KEY_WORDS)).partition("\0")
            self._index.setdefault((venue, symbol), index)
            self._seen = index + 1

    def _claim(self, venue: str, symbol: str) -> int:
        if not isinstance(venue, str) or not venue or "\0" in venue or len(venue.encode()) > MAX_VENUE_BYTES:
            raise ConfigError("venue", f"a venue name is 1 to {MAX_VENUE_BYTES} bytes without NUL, got {venue!r}")
        problem = symbol_problem(symbol)
        if problem is not None:
            raise ConfigError("symbol", problem)
        key = f"{venue}\0{symbol}"
        r, lay = self._r, self._lay
        high_word = lay.quote(0) + L.QUOTE_HIGH
        for index in range(1, L.QUOTES):
            base = lay.quote(index)
            state = r.load(base + L.QUOTE_STATE)
            if state == PUBLISHED:
                continue
            if state == CLAIMING:
                if is_alive(r.load(base + L.QUOTE_WRITER)):
                    continue
                if not r.cas(base + L.QUOTE_STATE, CLAIMING, FREE):
                    continue  # its claimer died: free it, then claim it like any free record
            if not r.cas(base + L.QUOTE_STATE, FREE, CLAIMING):
                continue
            r.store(base + L.QUOTE_WRITER, self._ident)
            for offset, word in enumerate(encode_text(key, L.QUOTE_KEY_WORDS)):
                r.store(base + L.QUOTE_KEY + offset, word)
            for offset in range(L.QUOTE_FLOATS):  # no price until the first write
                r.storef(base + L.QUOTE_BID + offset, math.nan)
            r.store(base + L.QUOTE_SEQ, 0)
            while True:
                high = r.load(high_word)
                if high > index or r.cas(high_word, high, index + 1):
                    break
            r.store(base + L.QUOTE_STATE, PUBLISHED)
            self._scan()
            return self._index[(venue, symbol)]  # a record claimed first by another process, if any
        raise CapacityError(f"the quote table is full ({L.QUOTES - 1} venue/symbol records)")

    # ------------------------------------------------------------------ fields

    def _write(self, index: int, quote: Quote | None, receive_ns: int, last: float) -> bool:
        r = self._r
        base = self._lay.quote(index)
        seq_word = base + L.QUOTE_SEQ
        seq = r.load(seq_word)
        if seq & 1:  # being written: by a live writer (skip), or one that died mid-write (take over)
            writer = r.load(base + L.QUOTE_WRITER)
            if writer != self._ident and is_alive(writer):
                return False
            start = seq + 2
        else:
            start = seq + 1
        if not r.cas(seq_word, seq, start):
            return False  # another writer came first
        r.store(base + L.QUOTE_WRITER, self._ident)
        f = base + L.QUOTE_BID
        if quote is not None:
            r.put(f, quote.bid, quote.bid_size, quote.ask, quote.ask_size)
            r.put(base + L.QUOTE_UPDATE_ID, quote.update_id, quote.exchange_ms, receive_ns)
        if not math.isnan(last):
            r.storef(f + 4, last)
        r.store(seq_word, start + 1)
        return True

    def _read(self, index: int, venue: str, symbol: str) -> SharedQuote | None:
        r = self._r
        base = self._lay.quote(index)
        seq_word = base + L.QUOTE_SEQ
        for _ in range(_READ_TRIES):
            seq = r.load(seq_word)
            if seq & 1:
                continue
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
        return None
