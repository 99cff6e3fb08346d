"""Where everything lives in the segment.

The segment is an array of 64-bit words:

======================  ==================================================
section                 words
======================  ==================================================
header                  ``HEADER_WORDS``
worker slots            ``max_workers * SLOT_WORDS``
breaker records         ``max_breakers * REC_WORDS``
breaker window cells    ``max_breakers * max_workers * BUCKETS * CELL_WORDS``
breaker call rings      ``max_breakers * RING_WORDS`` (count-based windows)
risk ledger             ``LEDGER_WORDS``
risk symbols            ``max_symbols * SYM_WORDS``
risk reservations       ``max_reservations * RES_WORDS``
risk correlation        ``2 * 3 * max_symbols ** 2`` (two buffers of cov, corr, samples)
ledger journal          ``2 + 2 * journal_capacity`` (redo journal of the ledger mutex)
stop triggers           ``TRIGGERS * TRIG_WORDS`` (stops bot4 emulates, any worker fires)
quotes                  ``QUOTES * QUOTE_WORDS`` (top of book per venue and symbol, from streams)
events                  ``EV_HEADER_WORDS + EVENTS * EV_WORDS`` (what changed the desk, for the journal)
metrics                 ``METRICS_WORDS`` (rejections by code, order latency, P&L by venue and strategy)
======================  ==================================================

The breaker record, window cell and event record layouts are defined by the native module (the code
that reads them on the hot path); everything else here. The layout hash covers all of
it, so two builds that disagree on any offset refuse to share a segment.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property

from bot4._symbols import MAX_SYMBOL_BYTES
from bot4.errors import ConfigError
from bot4.shm import _native

__all__ = ["BUCKETS", "LAYOUT_HASH", "LAYOUT_VERSION", "MAGIC", "Layout"]

MAGIC = int.from_bytes(b"BOT4SHM\x01", "little")
LAYOUT_VERSION = 8
BUCKETS = 10
"""Buckets per sliding window: a window of W seconds moves in steps of W/10."""

# Header words.
H_MAGIC = 0
H_VERSION = 1
H_HASH = 2
H_SIZE = 3
H_MAX_WORKERS = 4
H_MAX_BREAKERS = 5
H_BUCKETS = 6
H_CREATOR = 7
H_CREATED_NS = 8
H_HIGH_WATER = 9
H_FUSE = 10
H_FUSE_LOCK = 11
H_REGISTRY_LOCK = 12
H_BREAKERS_USED = 13
H_FUSE_CONFIG = 14
H_FUSE_CHANGED_NS = 15
H_FUSE_TRIPS = 16
H_MAX_SYMBOLS = 17
H_MAX_RESERVATIONS = 18
H_CREATOR_NS = 19  # inode of the creator's PID namespace
H_FOREIGN = 20  # 1 once a process of another PID namespace attached (allow_foreign)
H_CLOCK = 21  # 1 once a process uses a clock other than the host's monotonic one (simulated time)
HEADER_WORDS = 64

# Worker slot words.
S_IDENT = 0
S_HEARTBEAT_NS = 1
S_CLAIMED_NS = 2
S_PIDNS = 3  # the holder's PID namespace (high 32 bits) and a 32-bit tag of its identity
S_RULES_OFF = 6  # bits of the built-in risk rules this process's engine does not run (LEDGER_RULES order)
S_OBSERVER = 7  # 1 while the holder only watches (bot4 serve): it keeps no desk alive
SLOT_WORDS = 8

REC_WORDS = _native.REC_WORDS
CELL_WORDS = _native.CELL_WORDS
RING_WORDS = _native.RING_WORDS

# Risk ledger words (offsets from the ledger section start).
L_MUTEX = 0  # robust process-shared mutex (MUTEX_WORDS, at most 7)
L_MUTEX_HOLDER = 7  # identity of the process holding the mutex (0: none or unknown)
if _native.MUTEX_WORDS > L_MUTEX_HOLDER:  # pragma: no cover - a libc with a larger pthread_mutex_t
    raise ImportError(f"pthread_mutex_t needs {_native.MUTEX_WORDS} words; the layout reserves {L_MUTEX_HOLDER}")
L_MUTEX_REPAIR = 8  # owner lock electing the process that re-initialises an unrecoverable mutex
JOURNAL_BASE_CAPACITY = 256
"""Journal pairs beyond one per symbol: the largest transaction stages one word per priced
symbol (a correlation sample) plus a bounded number of account and row words."""
L_LIMITS_GEN = 9  # seqlock: odd while being written
L_LIMITS = L_LIMITS_GEN + 1  # LIMITS_WORDS float64 words
LIMITS_WORDS = 24
L_CASH = L_LIMITS + LIMITS_WORDS  # f: account equity excluding unrealized P&L
L_UNREALIZED = L_CASH + 1  # f: sum of unrealized P&L at the marks
L_PEAK = L_CASH + 2  # f: peak equity
L_DAY_START = L_CASH + 3  # f: equity at the start of the trading day
L_GROSS = L_CASH + 4  # f: gross exposure
ACCOUNT_FLOATS = 5  # L_CASH .. L_GROSS are read together
L_EQUITY_SET = L_CASH + 5  # i: 1 once equity was set
L_TRADING = L_CASH + 6  # i: trading state | generation << 8
L_OPEN_ORDERS = L_CASH + 7  # i: live reservations
ACCOUNT_INTS = 3  # L_EQUITY_SET .. L_OPEN_ORDERS are read together
L_DAY_ID = L_CASH + 8  # i: trading day number
L_TRIPPED_AT = L_CASH + 9  # i: wall-clock ns of the last kill-switch trip
L_HOLD_GEN = L_CASH + 10  # i: bumped when any symbol starts or stops being held
L_CORR_GEN = L_CASH + 11  # i: active correlation buffer = gen & 1
L_CORR_SAMPLES = L_CASH + 12  # i: correlation samples taken
L_LAST_SAMPLE_NS = L_CASH + 13  # i
L_RES_HIGH = L_CASH + 14  # i: reservation entries ever used
L_RES_SEQ = L_CASH + 15  # i: last reservation id
L_SWEEP_NS = L_CASH + 16  # i: last sweep for reservations of dead processes
L_SYMBOLS_USED = L_CASH + 17  # i
L_FREE_HEAD = L_CASH + 18  # i: first free reservation entry + 1; 0 = none (then use L_RES_HIGH)
L_VERSION = L_CASH + 19  # i: bumped by every ledger transaction (readers cache by it)
L_RATE = L_CASH + 20  # RATE_BUCKETS x (tag, count): approved orders per 100 ms
RATE_BUCKETS = 10
RATE_BUCKET_NS = 100_000_000  # the order-rate window (RATE_BUCKETS x 100 ms = 1 s) moves in 100 ms steps
L_REASONS = L_RATE + 2 * RATE_BUCKETS  # REASON_RING records of the trading state's reasons
REASON_RING = 8  # a record per trading-word generation, modulo: (tag, REASON_WORDS words of UTF-8)
REASON_WORDS = 16
REASON_RECORD = 1 + REASON_WORDS
LEDGER_WORDS = L_REASONS + REASON_RING * REASON_RECORD

# Risk symbol words.
Y_NAME = 0  # NAME_WORDS: UTF-8, NUL padded
SYMBOL_NAME_WORDS = MAX_SYMBOL_BYTES // 8
Y_POSITION = 4  # f: signed quantity; Y_POSITION .. Y_EXPOSURE are read together
SYMBOL_ROW = 8
Y_AVG_PRICE = 5  # f
Y_MARK = 6  # f: last price
Y_BUY_QTY = 7  # f: reserved, not yet filled
Y_SELL_QTY = 8  # f
Y_BUY_NOTIONAL = 9  # f
Y_SELL_NOTIONAL = 10  # f
Y_EXPOSURE = 11  # f: worst-case notional, part of L_GROSS
Y_REALIZED = 12  # f
Y_SAMPLE_PRICE = 13  # f: price at the last correlation sample
Y_MARK_NS = 14  # i: when the mark was last set (core clock, ns); 0: never
SYM_WORDS = 16

# Risk reservation words.
V_OWNER = 0  # i: owner identity; 0 = free
V_ID = 1  # i
V_SYMBOL = 2  # i: symbol index
V_SIDE = 3  # i: +1 buy, -1 sell
V_QTY = 4  # f: quantity not yet filled
V_PRICE = 5  # f: entry price used for notional
V_CREATED_NS = 6  # i
V_NEXT_FREE = 7  # i: next free entry + 1 while on the free list
V_FLEET = V_NEXT_FREE  # i: while live: 1 once a fleet approved it (0 from its reservation on)
RES_WORDS = 8

# A stop trigger: a stop bot4 emulates (no venue takes stop orders), held where every worker
# sees it, so that one fires it when the worker that placed it has died.
TRIGGERS = 1024  # records of the stop-trigger section; record 0 holds its high-water mark
TRIG_HIGH = 0  # i, in record 0: records ever used + 1
TRIG_STATE = 0  # i: (generation << 8) | FREE 0 / WRITING 1 / HELD 2 / FIRING 3
TRIG_OWNER = 1  # i: identity of the process that fires it (the placer, or one that took it over)
TRIG_SYMBOL = 2  # i: ledger symbol index
TRIG_SIDE = 3  # i: +1 buy, -1 sell
TRIG_QTY = 4  # f
TRIG_STOP = 5  # f: trigger price
TRIG_LIMIT = 6  # f: limit price of a stop-limit (NaN: a stop-market)
TRIG_FLAGS = 7  # i: 1 reduce-only
TRIG_RES_ID = 8  # i: the reservation it holds
TRIG_RES_SLOT = 9  # i
TRIG_ID = 10  # TRIG_ID_WORDS words: client order id (UTF-8)
TRIG_ID_WORDS = 8
TRIG_STRATEGY = TRIG_ID + TRIG_ID_WORDS  # TRIG_STRATEGY_WORDS words: strategy name (UTF-8)
TRIG_STRATEGY_WORDS = 8
TRIG_WORDS = 32

QUOTES = 1024  # records of the quote table; record 0 holds its high-water mark
QUOTE_HIGH = 0  # i, in record 0: records ever used + 1
QUOTE_LOCK = 1  # i, in record 0: the claim lock (an OwnerLock word)
QUOTE_STATE = 0  # i: FREE 0 / CLAIMING 1 / PUBLISHED 2
QUOTE_SEQ = 1  # i: seqlock: odd while a writer writes the fields below
QUOTE_WRITER = 2  # i: identity of the process that last claimed or wrote it
QUOTE_BID = 3  # f: QUOTE_FLOATS floats from here: bid, bid size, ask, ask size, last
QUOTE_FLOATS = 5
QUOTE_UPDATE_ID = 8  # i: QUOTE_INTS ints from here: venue update id, exchange ms, receive ns
QUOTE_INTS = 3
QUOTE_KEY = 11  # QUOTE_KEY_WORDS words: "<venue>\0<symbol>" (UTF-8)
QUOTE_KEY_WORDS = 9
QUOTE_WORDS = 20

# The event ring (bot4.journal): its header and record words are the native module's (EV_*).
EVENTS = 16384
"""Records the event ring holds before its recorder must drain them (4 MiB of the segment)."""
EV_HEADER_WORDS = _native.EV_HEADER_WORDS
EV_TEXT_WORDS = _native.EV_TEXT_WORDS
EV_WORDS = _native.EV_WORDS

M_REJECTIONS = 0  # REJECTION_SLOTS counters: risk rejections by code (bot4.shm.metrics.REJECTION_CODES order)
REJECTION_SLOTS = 48
M_LATENCY = M_REJECTIONS + REJECTION_SLOTS  # LATENCY_SLOTS counters: order latencies per bucket (not cumulative)
LATENCY_SLOTS = 16
M_LATENCY_SUM_NS = M_LATENCY + LATENCY_SLOTS  # i: their sum, ns
M_PNL = 80  # PNL_ROWS records of PNL_WORDS: realized P&L, fees, fills by venue and by strategy
PNL_ROWS = 128  # record 0 is the header; the last two gather venues and strategies past the table
PNL_HIGH = 0  # i, in record 0: records in use + 1 (a record is published by raising it)
PNL_LOCK = 1  # i, in record 0: the claim lock (an OwnerLock word)
PNL_HASH = 0  # i: 64-bit hash of (kind, full name): the key
PNL_KIND = 1  # i: 1 venue, 2 strategy
PNL_NAME = 2  # PNL_NAME_WORDS words: the name (UTF-8, cut to fit)
PNL_NAME_WORDS = 8
PNL_REALIZED = 10  # f: realized P&L (gross of fees); the four floats are added together (Region.addf)
PNL_FEES = 11  # f
PNL_NOTIONAL = 12  # f: traded notional
PNL_FILLS = 13  # f: fills (a float: exact to 2**53, added with the others in one call)
PNL_WORDS = 16
METRICS_WORDS = M_PNL + PNL_ROWS * PNL_WORDS

MAX_WORKERS_LIMIT = 4096
MAX_BREAKERS_LIMIT = 65536
MAX_SYMBOLS_LIMIT = 1024
MAX_RESERVATIONS_LIMIT = 1 << 20


def _layout_hash() -> int:
    names = sorted(
        (k, v)
        for k, v in {**globals(), **vars(_native)}.items()
        if k.isupper()
        and isinstance(v, int)
        and k.split("_")[0]
        in {
            "H",
            "S",
            "REC",
            "CFG",
            "CELL",
            "RING",
            "BUCKETS",
            "HEADER",
            "SLOT",
            "L",
            "Y",
            "V",
            "JOURNAL",
            "LIMITS",
            "RATE",
            "REASON",
            "LEDGER",
            "SYM",
            "RES",
            "MUTEX",
            "SYMBOL",
            "ACCOUNT",
            "TRIG",
            "TRIGGERS",
            "QUOTE",
            "QUOTES",
            "EV",
            "EVENTS",
            "M",
            "REJECTION",
            "LATENCY",
            "METRICS",
            "PNL",
        }
    )
    digest = hashlib.blake2b(repr((LAYOUT_VERSION, names)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


LAYOUT_HASH = _layout_hash()


@dataclass(frozen=True, kw_only=True)
class Layout:
    """Word offsets of every section, for given table capacities."""

    max_workers: int
    max_breakers: int
    max_symbols: int
    max_reservations: int

    def __post_init__(self) -> None:
        for field, value, limit in (
            ("max_workers", self.max_workers, MAX_WORKERS_LIMIT),
            ("max_breakers", self.max_breakers, MAX_BREAKERS_LIMIT),
            ("max_symbols", self.max_symbols, MAX_SYMBOLS_LIMIT),
            ("max_reservations", self.max_reservations, MAX_RESERVATIONS_LIMIT),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
                raise ConfigError(field, f"must be an integer in 1..{limit}, got {value!r}")

    @cached_property
    def slots(self) -> int:
        """Word offset of the worker slot table."""
        return HEADER_WORDS

    @cached_property
    def records(self) -> int:
        """Word offset of the breaker records."""
        return self.slots + self.max_workers * SLOT_WORDS

    @cached_property
    def cells(self) -> int:
        """Word offset of the window cells."""
        return self.records + self.max_breakers * REC_WORDS

    @cached_property
    def cells_per_breaker(self) -> int:
        """Words of window cells per breaker (all slots, all buckets)."""
        return self.max_workers * BUCKETS * CELL_WORDS

    @cached_property
    def rings(self) -> int:
        """Word offset of the breakers' call rings (count-based windows)."""
        return self.cells + self.max_breakers * self.cells_per_breaker

    @cached_property
    def ledger(self) -> int:
        """Word offset of the risk ledger."""
        return self.rings + self.max_breakers * RING_WORDS

    @cached_property
    def symbols(self) -> int:
        """Word offset of the risk symbol table."""
        return self.ledger + LEDGER_WORDS

    @cached_property
    def reservations(self) -> int:
        """Word offset of the reservation table."""
        return self.symbols + self.max_symbols * SYM_WORDS

    @cached_property
    def correlation(self) -> int:
        """Word offset of the correlation buffers."""
        return self.reservations + self.max_reservations * RES_WORDS

    def correlation_buffer(self, which: int) -> int:
        """Word offset of correlation buffer ``which`` (0 or 1): cov, corr, samples."""
        return self.correlation + which * 3 * self.max_symbols**2

    @cached_property
    def journal(self) -> int:
        """Word offset of the ledger's redo journal: count, capacity, then (index, value) pairs."""
        return self.correlation + 2 * 3 * self.max_symbols**2

    @cached_property
    def journal_capacity(self) -> int:
        """Pairs the journal holds: enough for the largest transaction of this layout."""
        return JOURNAL_BASE_CAPACITY + self.max_symbols

    @cached_property
    def triggers(self) -> int:
        """Word offset of the stop triggers."""
        return self.journal + 2 + 2 * self.journal_capacity

    @cached_property
    def quotes(self) -> int:
        """Word offset of the quote table."""
        return self.triggers + TRIGGERS * TRIG_WORDS

    @cached_property
    def events(self) -> int:
        """Word offset of the event ring (its header, then its records)."""
        return self.quotes + QUOTES * QUOTE_WORDS

    @cached_property
    def metrics(self) -> int:
        """Word offset of the metrics counters."""
        return self.events + EV_HEADER_WORDS + EVENTS * EV_WORDS

    @cached_property
    def words(self) -> int:
        """Total size in words."""
        return self.metrics + METRICS_WORDS

    def event(self, position: int) -> int:
        """Word offset of the ring record that holds event ``position``."""
        return self.events + EV_HEADER_WORDS + (position % EVENTS) * EV_WORDS

    def quote(self, index: int) -> int:
        """Word offset of quote record ``index``."""
        return self.quotes + index * QUOTE_WORDS

    def trigger(self, index: int) -> int:
        """Word offset of stop trigger ``index``."""
        return self.triggers + index * TRIG_WORDS

    @cached_property
    def size(self) -> int:
        """Total size in bytes."""
        return self.words * 8

    def slot(self, index: int) -> int:
        """Word offset of worker slot ``index``."""
        return self.slots + index * SLOT_WORDS

    def record(self, index: int) -> int:
        """Word offset of breaker record ``index``."""
        return self.records + index * REC_WORDS

    def breaker_cells(self, index: int) -> int:
        """Word offset of the window cells of breaker ``index``."""
        return self.cells + index * self.cells_per_breaker

    def breaker_ring(self, index: int) -> int:
        """Word offset of the call ring of breaker ``index``."""
        return self.rings + index * RING_WORDS

    def symbol(self, index: int) -> int:
        """Word offset of risk symbol ``index``."""
        return self.symbols + index * SYM_WORDS

    def reservation(self, index: int) -> int:
        """Word offset of reservation entry ``index``."""
        return self.reservations + index * RES_WORDS
