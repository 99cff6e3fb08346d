"""The breaker table of a segment: names, records, and their double-buffered config blocks.

A record is published (``status = 1``) only once its name and first config block are
written, under the registry's owner lock, so a creator killed half-way leaves an
unpublished record that the next creator rewrites. A config change writes the inactive
block under the record's own lock, then moves the generation: readers use the active
block and read again if the generation moved meanwhile (a bounded number of times).
"""

from __future__ import annotations

from bot4.breaker.config import BreakerConfig
from bot4.errors import CapacityError, ConfigError, SegmentStateError
from bot4.shm import _native
from bot4.shm import layout as L
from bot4.shm.lock import OwnerLock
from bot4.shm.segment import Segment

__all__ = ["BreakerRegistry", "encode_name"]

NAME_BYTES = _native.REC_NAME_WORDS * 8
_FLOATS = frozenset((_native.CFG_FAILURE_RATE, _native.CFG_SLOW_RATE, _native.CFG_OPEN_BACKOFF))
_READ_TRIES = 10_000


def encode_name(name: object) -> bytes:
    """The one encoding of a breaker name in the segment; :class:`bot4.ConfigError` if it has none."""
    if not isinstance(name, str) or not name:
        raise ConfigError("name", f"a breaker name is a non-empty string, got {name!r}")
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError("name", f"a breaker name is valid UTF-8 text, got {name!r}") from None
    if len(encoded) > NAME_BYTES or b"\0" in encoded:
        raise ConfigError("name", f"a breaker name is at most {NAME_BYTES} UTF-8 bytes without NUL, got {name!r}")
    return encoded


class BreakerRegistry:
    """Finds, creates and configures the breaker records of one segment."""

    def __init__(self, segment: Segment) -> None:
        self._seg = segment

    def names(self) -> list[str]:
        """Names of every published breaker, in creation order."""
        r, lay = self._seg.region, self._seg.layout
        return [
            self._name(index).decode()
            for index in range(r.load(L.H_BREAKERS_USED))
            if r.load(lay.record(index) + _native.REC_STATUS) == 1
        ]

    def index(self, name: str, encoded: bytes, config: BreakerConfig, ident: int) -> int:
        """The record index of breaker ``name`` (``encoded`` by :func:`encode_name`), created
        with ``config`` if it does not exist yet."""
        index = self._find(encoded)
        if index is None:
            with OwnerLock(self._seg.region, L.H_REGISTRY_LOCK, ident):
                index = self._find(encoded)
                if index is None:
                    index = self._new(name, encoded, config)
        return index

    def _name(self, index: int) -> bytes:
        start = self._seg.layout.record(index) + _native.REC_NAME
        words = self._seg.region.load_range(start, _native.REC_NAME_WORDS)
        return b"".join(w.to_bytes(8, "little", signed=True) for w in words).rstrip(b"\0")

    def _find(self, encoded: bytes) -> int | None:
        r, lay = self._seg.region, self._seg.layout
        for index in range(r.load(L.H_BREAKERS_USED)):
            if r.load(lay.record(index) + _native.REC_STATUS) == 1 and self._name(index) == encoded:
                return index
        return None

    def _new(self, name: str, encoded: bytes, config: BreakerConfig) -> int:
        r, lay = self._seg.region, self._seg.layout
        index = r.load(L.H_BREAKERS_USED)
        if index >= lay.max_breakers:
            raise CapacityError(
                f"segment {self._seg.name!r} holds its maximum of {lay.max_breakers} breakers; cannot add "
                f"{name!r} (create the segment with a larger max_breakers)"
            )
        rec = lay.record(index)
        # A creator killed half-way left this record unpublished (status 0): rewrite it all.
        for i in range(_native.REC_WORDS):
            r.store(rec + i, 0)
        padded = encoded.ljust(NAME_BYTES, b"\0")
        for i in range(_native.REC_NAME_WORDS):
            r.store(rec + _native.REC_NAME + i, int.from_bytes(padded[i * 8 : i * 8 + 8], "little", signed=True))
        self._write_block(rec, 0, config)
        r.store(rec + _native.REC_STATUS, 1)
        r.store(L.H_BREAKERS_USED, index + 1)
        return index

    def _write_block(self, rec: int, block: int, config: BreakerConfig) -> None:
        r = self._seg.region
        base = rec + _native.REC_CFG0 + block * _native.REC_CFG_WORDS
        for offset, (kind, value) in config.to_words().items():
            if kind == "f":
                r.storef(base + offset, float(value))
            else:
                r.store(base + offset, int(value))

    def write_config(self, rec: int, config: BreakerConfig, ident: int) -> None:
        """Make ``config`` the record's shared configuration (every process, next call)."""
        r = self._seg.region
        with OwnerLock(r, rec + _native.REC_CFG_LOCK, ident):
            gen = r.load(rec + _native.REC_CFG_GEN)
            old = self.read_config(rec)
            self._write_block(rec, (gen + 1) & 1, config)
            new = config.to_words()
            resized = any(old[k] != new[k][1] for k in (_native.CFG_WINDOW_NS, _native.CFG_WINDOW_CALLS))
            if resized:  # a window of another kind or length starts empty, for callers of either config
                self.clear_window(rec, streak=False)
            r.store(rec + _native.REC_CFG_GEN, gen + 1)
            if resized:
                self.clear_window(rec, streak=False)

    def clear_window(self, rec: int, *, streak: bool = True) -> None:
        """Empty the window of the breaker at ``rec`` (both kinds) and, with ``streak``, its
        consecutive-failure count (only a success or a closing resets that)."""
        r = self._seg.region
        r.add(rec + _native.REC_WGEN, 1)
        r.store(rec + _native.REC_TICKET_BASE, r.load(rec + _native.REC_TICKET))
        if streak:
            r.store(rec + _native.REC_CONSEC, 0)

    def read_config(self, rec: int) -> dict[int, float | int]:
        """The record's active config block, word offset -> value."""
        r = self._seg.region
        for _ in range(_READ_TRIES):
            gen = r.load(rec + _native.REC_CFG_GEN)
            base = rec + _native.REC_CFG0 + (gen & 1) * _native.REC_CFG_WORDS
            values: dict[int, float | int] = {
                offset: r.loadf(base + offset) if offset in _FLOATS else r.load(base + offset)
                for offset in range(_native.CFG_WINDOW_CALLS + 1)
            }
            if r.load(rec + _native.REC_CFG_GEN) == gen:
                return values
        raise SegmentStateError(self._seg.name, "a breaker's configuration changed on every read (a writer in a loop?)")
