"""Types of bot4.shm._native, the native layer (see bot4/shm/_native.c for the semantics)."""

from collections.abc import Callable, Coroutine, Generator
from types import TracebackType
from typing import Any, Literal, Self

# Breaker record and config block word offsets, window cell words, verdicts.
REC_STATUS: int
REC_NAME: int
REC_NAME_WORDS: int
REC_STATE: int
REC_PERMITS: int
REC_SUCCESSES: int
REC_CONSEC: int
REC_WGEN: int
REC_CFG_GEN: int
REC_CFG_LOCK: int
REC_TRIPS: int
REC_REJECTS: int
REC_CHANGED_NS: int
REC_LAST_BAD: int
REC_TICKET: int
REC_TICKET_BASE: int
REC_LAST_BAD_TICKET: int
REC_ENTERED: int
REC_TRIAL_CALLS: int
REC_TRIAL_FAILS: int
REC_SUCCESS_TOTAL: int
REC_FAILURE_TOTAL: int
REC_SLOW_TOTAL: int
RING_WORDS: int
REC_CAUSE_PID: int
REC_CAUSE: int
REC_CAUSE_WORDS: int
REC_CFG0: int
REC_CFG_WORDS: int
REC_WORDS: int
CFG_FAILURE_RATE: int
CFG_MINIMUM_CALLS: int
CFG_WINDOW_NS: int
CFG_BUCKET_NS: int
CFG_CONSECUTIVE: int
CFG_SLOW_NS: int
CFG_SLOW_RATE: int
CFG_OPEN_NS: int
CFG_OPEN_BACKOFF: int
CFG_MAX_OPEN_NS: int
CFG_HALF_OPEN_CALLS: int
CFG_HALF_OPEN_MAX_NS: int
CFG_SLOW_TRIAL_FAILS: int
CFG_WINDOW_CALLS: int
CELL_TAG: int
CELL_CALLS: int
CELL_FAILURES: int
CELL_SLOW: int
CELL_WORDS: int
MUTEX_WORDS: int
LIMIT_TOLERANCE: float
LIMIT_EPSILON: float
VERDICT_NONE: int
VERDICT_SLOW: int
VERDICT_CONSECUTIVE: int
VERDICT_RATE: int
# The event ring: header words, record words.
EV_HEAD: int
EV_TAIL: int
EV_LOST: int
EV_ON: int
EV_BEAT_NS: int
EV_RECORDER: int
EV_ERROR: int
EV_RECOVERING: int
EV_LOST_SEEN: int
EV_EPOCH: int
EV_ERROR_TEXT: int
EV_ERROR_WORDS: int
EV_HEADER_WORDS: int
EV_RECOVERY_LOCK: int
EV_PATH: int
EV_PATH_WORDS: int
EV_KIND: int
EV_TIME_NS: int
EV_PID: int
EV_REF: int
EV_SYMBOL: int
EV_CODE: int
EV_F0: int
EV_FLOATS: int
EV_POST_SYMBOL: int
EV_POST_SYMBOL_WORDS: int
EV_POST_ACCOUNT: int
EV_POST_ACCOUNT_WORDS: int
EV_TEXT: int
EV_TEXT_WORDS: int
EV_WORDS: int
EV_STOPPED: int
EV_MISSED: int
EV_READY: int
EV_BLOCK_RECOVERING: int
EV_BLOCK_ERROR: int
EV_BLOCK_RECORDER: int
EV_BLOCK_LOST: int
EV_BLOCK_BEHIND: int
EV_RECORDER_TIMEOUT_NS: int
EV_ROOM_DIVISOR: int
# Results of Region.mutex_lock.
MUTEX_ACQUIRED: int
MUTEX_FROM_DEAD: int
MUTEX_TIMEOUT: int
MUTEX_UNRECOVERABLE: int
MUTEX_OWN: int
# Names, in order, of LedgerKernel's offsets and limits and of evaluate()'s rule bits.
LEDGER_OFFSETS: tuple[str, ...]
LEDGER_LIMITS: tuple[str, ...]
LEDGER_RULES: tuple[str, ...]
LEDGER_CODES: tuple[tuple[str, str], ...]

def monotonic_ns() -> int: ...
def events_rows(
    region: Region,
    ring: int,
    capacity: int,
    start: int,
    end: int,
    epoch: int,
    kinds: tuple[str, ...],
    names: list[str],
    raw_kind: int,
) -> list[tuple[object, ...]]: ...
def events_blocked(region: Region, ring: int, capacity: int) -> int: ...
def set_errors(
    released: type[BaseException],
    config: type[BaseException],
    state: type[BaseException],
    lock_timeout: type[BaseException],
) -> None: ...

class Region:
    """64-bit atomic words over a writable buffer; closed with release()."""

    nwords: int
    busy: int
    def __init__(self, buffer: Any) -> None: ...
    def load(self, index: int) -> int: ...
    def store(self, index: int, value: int) -> None: ...
    def cas(self, index: int, expected: int, desired: int) -> bool: ...
    def add(self, index: int, delta: int) -> int: ...
    def loadf(self, index: int) -> float: ...
    def addf(self, index: int, *deltas: float) -> None: ...
    def storef(self, index: int, value: float) -> None: ...
    def put(self, index: int, *values: int | float) -> None: ...
    def seq_put(self, lock: int, ident: int, seq: int, index: int, *values: int | float | None) -> int: ...
    def release(self) -> None: ...
    def load_range(self, index: int, count: int) -> tuple[int, ...]: ...
    def loadf_range(self, index: int, count: int) -> tuple[float, ...]: ...
    def tagged_sum(self, index: int, pairs: int, lo: int, hi: int) -> int: ...
    def mutex_init(self, index: int) -> None: ...
    def mutex_lock(self, index: int, timeout: float) -> int: ...
    def mutex_unlock(self, index: int) -> bool: ...
    def stage(self, journal: int, n: int, index: int, value: int | float | tuple[int | float, ...]) -> int: ...
    def publish(self, journal: int, n: int, version: int) -> None: ...
    def replay(self, journal: int) -> int: ...

class Section:
    """A critical section over a robust mutex and its redo journal (native enter and exit)."""

    staged: int
    region: Region
    timeout: float
    ident: int
    def __init__(
        self, region: Region, mutex: int, journal: int, version: int, holder: int, ident: int, timeout: float
    ) -> None: ...
    def __enter__(self) -> Self: ...
    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> Literal[False]: ...
    def set(self, index: int, value: int | float | tuple[int | float, ...]) -> None: ...
    def __len__(self) -> int: ...
    def bind_events(
        self,
        ring: int,
        capacity: int,
        account: tuple[int, ...],
        symbols: int,
        symbol_words: int,
        symbol_fields: tuple[int, ...],
    ) -> None: ...
    def record(
        self,
        kind: int,
        ref: int,
        symbol: int,
        code: int,
        f0: float,
        f1: float,
        f2: float,
        f3: float,
        text: str | bytes,
        /,
    ) -> int: ...

class Gate:
    """Closed-path admission and outcome recording of one breaker for one worker slot."""

    slot: int
    def __init__(
        self,
        *,
        region: Region,
        record: int,
        cells: int,
        fuse: int,
        high_water: int,
        slot: int,
        max_slots: int,
        buckets: int,
        clock: Callable[[], int] | None,
        ring: int,
    ) -> None: ...
    def acquire(self) -> int: ...
    def success(self, t0: int) -> int: ...
    def failure(self, t0: int) -> int: ...
    def counts(self) -> tuple[int, int, int]: ...
    def now(self) -> int: ...
    def refuse(self, code: int, /) -> Any: ...
    def set_rejection(
        self, error_cls: type[BaseException], open_state: object, name: str, breaker: object, plugins: object, /
    ) -> None: ...
    def set_policy(
        self,
        extra: bool,
        simple: bool,
        record: tuple[type[BaseException], ...],
        ignore: tuple[type[BaseException], ...],
        /,
    ) -> None: ...

class Guarded:
    """A function guarded by a breaker: admission, call and recording in one native call."""

    def __init__(
        self,
        *,
        gate: Gate,
        fn: Callable[..., Any],
        slow: Callable[..., Any],
        trip: Callable[[int, BaseException | None], object],
        admit: Callable[[], object],
        finish: Callable[..., object],
        is_async: bool,
    ) -> None: ...
    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...
    def __get__(self, obj: object, owner: type | None = None) -> Any: ...

class GuardedCall(Coroutine[Any, Any, Any]):
    """One call of an async function guarded by a breaker."""

    def send(self, value: Any, /) -> Any: ...
    def throw(self, *args: Any) -> Any: ...
    def close(self) -> None: ...
    def __await__(self) -> Generator[Any, None, Any]: ...

class LedgerKernel:
    """The risk ledger's hot arithmetic over a segment."""

    def __init__(
        self,
        *,
        region: Region,
        journal: int,
        base: int,
        symbols: int,
        symbol_words: int,
        max_symbols: int,
        row: int,
        realized: int,
        mark_ns: int,
        correlation: int,
        reservations: int,
        reservation_words: int,
        max_reservations: int,
        next_free: int,
        offsets: tuple[int, ...],
        limits: tuple[int, ...],
        rate_buckets: int,
        bucket_ns: int,
    ) -> None: ...
    def evaluate(
        self, mask: int, sym: int, side: int, qty: float, entry: float, stop: float, reduce_only: bool, now_ns: int
    ) -> int: ...
    def max_correlation(self, sym: int, buying: bool) -> tuple[float, int]: ...
    def reserve(
        self, n: int, sym: int, side: int, qty: float, entry: float, owner: int, now_ns: int
    ) -> tuple[int, int, int, float]: ...
    def account(self, n: int, cash: float, unrealized: float, day: int, initial: bool) -> tuple[int, float, float]: ...
    def fill(
        self, n: int, slot: int, res_id: int, qty: float, price: float, fee: float, day: int, done_below: float
    ) -> tuple[int, int, float, float, float]: ...
    def symbol_update(
        self,
        n: int,
        sym: int,
        side: int,
        d_qty: float,
        d_notional: float,
        fill_qty: float,
        fill_price: float,
        mark: float,
    ) -> tuple[int, float, float]: ...
