"""Where everything lives in the segment.

The segment is an array of 64-bit words:

======================  ================================================
section                 words
======================  ================================================
header                  ``HEADER_WORDS``
worker slots            ``max_workers * SLOT_WORDS``
breaker records         ``max_breakers * REC_WORDS``
breaker window cells    ``max_breakers * max_workers * BUCKETS * CELL_WORDS``
======================  ================================================

The breaker record and window cell layouts are defined by the native module (the code
that reads them on the hot path); the header and slot layouts here. The layout hash
covers all of it, so two builds that disagree on any offset refuse to share a segment.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from bot4.errors import ConfigError
from bot4.shm import _native

__all__ = ["BUCKETS", "LAYOUT_HASH", "LAYOUT_VERSION", "MAGIC", "Layout"]

MAGIC = int.from_bytes(b"BOT4SHM\x01", "little")
LAYOUT_VERSION = 1
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
HEADER_WORDS = 64

# Worker slot words.
S_IDENT = 0
S_HEARTBEAT_NS = 1
S_CLAIMED_NS = 2
SLOT_WORDS = 8

REC_WORDS = _native.REC_WORDS
CELL_WORDS = _native.CELL_WORDS

MAX_WORKERS_LIMIT = 4096
MAX_BREAKERS_LIMIT = 65536


def _layout_hash() -> int:
    names = sorted(
        (k, v)
        for k, v in {**globals(), **vars(_native)}.items()
        if k.isupper() and isinstance(v, int) and k.split("_")[0] in {"H", "S", "REC", "CFG", "CELL", "BUCKETS", "HEADER", "SLOT"}
    )
    digest = hashlib.blake2b(repr((LAYOUT_VERSION, names)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


LAYOUT_HASH = _layout_hash()


@dataclass(frozen=True, kw_only=True)
class Layout:
    """Word offsets of every section, for given table capacities."""

    max_workers: int
    max_breakers: int

    def __post_init__(self) -> None:
        for field, value, limit in (
            ("max_workers", self.max_workers, MAX_WORKERS_LIMIT),
            ("max_breakers", self.max_breakers, MAX_BREAKERS_LIMIT),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
                raise ConfigError(field, f"must be an integer in 1..{limit}, got {value!r}")

    @property
    def slots(self) -> int:
        """Word offset of the worker slot table."""
        return HEADER_WORDS

    @property
    def records(self) -> int:
        """Word offset of the breaker records."""
        return self.slots + self.max_workers * SLOT_WORDS

    @property
    def cells(self) -> int:
        """Word offset of the window cells."""
        return self.records + self.max_breakers * REC_WORDS

    @property
    def cells_per_breaker(self) -> int:
        """Words of window cells per breaker (all slots, all buckets)."""
        return self.max_workers * BUCKETS * CELL_WORDS

    @property
    def words(self) -> int:
        """Total size in words."""
        return self.cells + self.max_breakers * self.cells_per_breaker

    @property
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
