"""The named shared-memory segment: create, attach, close, unlink.

POSIX shared memory (``shm_open`` + ``mmap``), created with mode 0600. The segment is
never registered with :mod:`multiprocessing`'s resource tracker: on Python 3.11 the
tracker unlinks a segment when any process that merely *attached* to it exits. Only
the creator unlinks, explicitly.

The header is written last by the creator (the magic word last of all), so a process
attaching while the creator is still initialising waits for it instead of reading a
half-built segment.
"""

from __future__ import annotations

import _posixshmem
import mmap
import os
import re
import secrets
import struct
import time

import numpy as np

from bot4.errors import (
    ConfigError,
    LockTimeoutError,
    SegmentError,
    SegmentExistsError,
    SegmentLayoutError,
    SegmentNotFoundError,
    SegmentStateError,
)
from bot4.shm import _native
from bot4.shm import layout as L
from bot4.shm._proc import my_identity

__all__ = ["Segment", "validate_name"]

# The native layer raises bot4 errors: a closed core, a bad clock reading, torn shared state, a lock wait.
_native.set_errors(SegmentError, ConfigError, SegmentStateError, LockTimeoutError)

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,199}")
_INIT_WAIT_SECONDS = 2.0


def validate_name(name: object) -> str:
    """Return ``name`` if it is a valid segment name, else raise :class:`ConfigError`."""
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ConfigError("name", f"a segment name is 1-200 characters of letters, digits, '_', '.', '-', got {name!r}")
    return name


class Segment:
    """One mapped segment: its ``region`` (atomic words) and ``words`` (numpy view)."""

    def __init__(self, name: str, mm: mmap.mmap, layout: L.Layout, owner: bool) -> None:
        self.name = name
        self.layout = layout
        self.owner = owner
        self._mmap = mm
        self.region = _native.Region(mm)
        self.words: np.ndarray = np.frombuffer(mm, dtype=np.int64, count=layout.words)
        self.floats: np.ndarray = self.words.view(np.float64)

    @classmethod
    def create(cls, name: str | None, layout: L.Layout) -> Segment:
        """Create and initialise a new segment; :class:`SegmentExistsError` if the name is taken."""
        name = validate_name(name) if name is not None else f"bot4-{secrets.token_hex(6)}"
        try:
            fd = _posixshmem.shm_open("/" + name, os.O_CREAT | os.O_EXCL | os.O_RDWR, mode=0o600)
        except FileExistsError:
            raise SegmentExistsError(name, f"segment {name!r} already exists") from None
        try:
            os.fchmod(fd, 0o600)
            os.ftruncate(fd, layout.size)
            mm = mmap.mmap(fd, layout.size)
        except BaseException:
            os.close(fd)
            _posixshmem.shm_unlink("/" + name)
            raise
        os.close(fd)
        seg = cls(name, mm, layout, owner=True)
        r = seg.region
        for index, value in (
            (L.H_VERSION, L.LAYOUT_VERSION),
            (L.H_HASH, L.LAYOUT_HASH),
            (L.H_SIZE, layout.size),
            (L.H_MAX_WORKERS, layout.max_workers),
            (L.H_MAX_BREAKERS, layout.max_breakers),
            (L.H_MAX_SYMBOLS, layout.max_symbols),
            (L.H_MAX_RESERVATIONS, layout.max_reservations),
            (layout.journal + 1, layout.journal_capacity),
            (L.H_BUCKETS, L.BUCKETS),
            (L.H_CREATOR, my_identity()),
            (L.H_CREATED_NS, time.time_ns()),
        ):
            r.store(index, value)
        r.mutex_init(layout.ledger + L.L_MUTEX)
        r.store(L.H_MAGIC, L.MAGIC)
        return seg

    @classmethod
    def attach(cls, name: str) -> Segment:
        """Map an existing segment after checking its header."""
        validate_name(name)
        try:
            fd = _posixshmem.shm_open("/" + name, os.O_RDWR, mode=0o600)
        except FileNotFoundError:
            raise SegmentNotFoundError(name, f"no segment named {name!r}") from None
        except PermissionError:
            raise SegmentLayoutError(name, f"segment {name!r} belongs to another user") from None
        try:
            size = _wait_for_size(fd)
            age = time.time() - os.fstat(fd).st_mtime
            if size < L.HEADER_WORDS * 8:
                raise SegmentLayoutError(name, f"segment {name!r} is too small ({size} bytes) to be a bot4 segment")
            mm = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        # Only a young segment may still be initialising; an old one without magic never will.
        deadline = time.monotonic() + max(0.0, _INIT_WAIT_SECONDS - age)
        while _header(mm)[L.H_MAGIC] != L.MAGIC and time.monotonic() < deadline:
            time.sleep(0.001)
        try:
            layout = _check_header(name, _header(mm), size)
        except SegmentLayoutError:
            mm.close()
            raise
        return cls(name, mm, layout, owner=False)

    def close(self) -> None:
        """Unmap the segment from this process (idempotent)."""
        if self._mmap.closed:
            return
        self.region.release()
        self.words = self.floats = np.empty(0, dtype=np.int64)
        try:
            self._mmap.close()
        except BufferError:
            # A numpy view handed out to user code still points into the mapping; the
            # mapping goes away with the last such view.
            pass

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._mmap.closed or self.words.size == 0

    def unlink(self) -> None:
        """Remove the segment's name; processes that have it mapped keep their mapping."""
        unlink(self.name)


def unlink(name: str) -> None:
    """Remove segment ``name``; :class:`SegmentNotFoundError` if there is none."""
    try:
        _posixshmem.shm_unlink("/" + validate_name(name))
    except FileNotFoundError:
        raise SegmentNotFoundError(name, f"no segment named {name!r}") from None


def _wait_for_size(fd: int) -> int:
    # The creator truncates right after creating; a reader may see size 0 for an instant.
    deadline = time.monotonic() + _INIT_WAIT_SECONDS
    while True:
        size = os.fstat(fd).st_size
        if size > 0 or time.monotonic() > deadline:
            return size
        time.sleep(0.001)


def _header(mm: mmap.mmap) -> tuple[int, ...]:
    return struct.unpack_from(f"<{L.HEADER_WORDS}q", mm, 0)


def _check_header(name: str, header: tuple[int, ...], size: int) -> L.Layout:
    if header[L.H_MAGIC] != L.MAGIC:
        raise SegmentLayoutError(name, f"segment {name!r} is not a bot4 segment (bad magic)")
    version, layout_hash = header[L.H_VERSION], header[L.H_HASH]
    if version != L.LAYOUT_VERSION or layout_hash != L.LAYOUT_HASH:
        raise SegmentLayoutError(
            name,
            f"segment {name!r} has layout version {version} (hash {layout_hash:#x}); this bot4 "
            f"reads version {L.LAYOUT_VERSION} (hash {L.LAYOUT_HASH:#x}): run the same bot4 in every process",
        )
    try:
        layout = L.Layout(
            max_workers=header[L.H_MAX_WORKERS],
            max_breakers=header[L.H_MAX_BREAKERS],
            max_symbols=header[L.H_MAX_SYMBOLS],
            max_reservations=header[L.H_MAX_RESERVATIONS],
        )
    except ConfigError as exc:
        raise SegmentLayoutError(name, f"segment {name!r} has a corrupt header: {exc}") from None
    if layout.size != size or header[L.H_SIZE] != size or header[L.H_BUCKETS] != L.BUCKETS:
        raise SegmentLayoutError(name, f"segment {name!r} has a size that does not match its header")
    return layout
