"""The named shared-memory segment: create, attach, close, unlink.

POSIX shared memory (a file in ``/dev/shm`` + ``mmap``), mode 0600. The segment is
never registered with :mod:`multiprocessing`'s resource tracker: on Python 3.11 the
tracker unlinks a segment when any process that merely *attached* to it exits. Only
the creator unlinks, explicitly.

A segment is built whole before it gets its name: an unnamed file (``O_TMPFILE``) in
``/dev/shm``, reserved in full (``posix_fallocate``: a full ``/dev/shm`` is an error
here, not SIGBUS later), its header written with the magic word last, and only then
linked under its name, which fails if the name is taken. No process ever sees a
half-made segment by name, and a creator killed at any instant leaves nothing behind.

Attaching holds a shared ``flock`` on the file until the worker slot is claimed;
removing a stale segment holds an exclusive one while it decides, so a segment is
never judged abandoned while a process is joining it.
"""

from __future__ import annotations

import _posixshmem
import errno
import fcntl
import mmap
import os
import re
import secrets
import stat
import struct
import time

import numpy as np

from bot4.errors import (
    ConfigError,
    ForeignSegmentError,
    LockTimeoutError,
    SegmentError,
    SegmentExistsError,
    SegmentLayoutError,
    SegmentNotFoundError,
    SegmentSpaceError,
    SegmentStateError,
)
from bot4.shm import _native
from bot4.shm import layout as L
from bot4.shm._proc import my_identity, pid_namespace

__all__ = ["SHM_DIR", "Segment", "validate_name"]

# The native layer raises bot4 errors: a closed core, a bad clock reading, torn shared state, a lock wait.
_native.set_errors(SegmentError, ConfigError, SegmentStateError, LockTimeoutError)

SHM_DIR = "/dev/shm"
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,199}")
_LOCK_WAIT_SECONDS = 2.0


def validate_name(name: object) -> str:
    """Return ``name`` if it is a valid segment name, else raise :class:`ConfigError`."""
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ConfigError("name", f"a segment name is 1-200 characters of letters, digits, '_', '.', '-', got {name!r}")
    return name


def shm_path(name: str) -> str:
    """The file of segment ``name``."""
    return os.path.join(SHM_DIR, name)


class Segment:
    """One mapped segment: its ``region`` (atomic words) and ``words`` (numpy view)."""

    def __init__(self, name: str, mm: mmap.mmap, layout: L.Layout, owner: bool) -> None:
        self.name = name
        self.layout = layout
        self.owner = owner
        self._mmap = mm
        self._joining_fd = -1
        self.region = _native.Region(mm)
        self.words: np.ndarray = np.frombuffer(mm, dtype=np.int64, count=layout.words)
        self.floats: np.ndarray = self.words.view(np.float64)

    @classmethod
    def create(cls, name: str | None, layout: L.Layout, header: dict[int, int] | None = None) -> Segment:
        """Create, initialise and publish a new segment.

        Args:
            name: the segment name; a random ``bot4-…`` name if None.
            layout: its capacities.
            header: further header words (index: value), written before the magic word.

        Raises:
            SegmentExistsError: the name is taken.
            SegmentSpaceError: ``/dev/shm`` has no room for it.
        """
        name = validate_name(name) if name is not None else f"bot4-{secrets.token_hex(6)}"
        try:
            dir_fd = os.open(SHM_DIR, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise SegmentError(name, f"cannot create segment {name!r} in {SHM_DIR}: {exc.strerror}") from None
        try:
            return cls._build(name, layout, header or {}, dir_fd)
        finally:
            os.close(dir_fd)

    @classmethod
    def _build(cls, name: str, layout: L.Layout, header: dict[int, int], dir_fd: int) -> Segment:
        try:
            fd = os.open(".", os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
        except OSError as exc:
            raise SegmentError(name, f"cannot create segment {name!r} in {SHM_DIR}: {exc.strerror}") from None
        seg: Segment | None = None
        try:
            os.fchmod(fd, 0o600)
            _reserve(fd, name, layout.size)
            seg = cls(name, mmap.mmap(fd, layout.size), layout, owner=True)
            seg._init_header(header)
            _publish(fd, name, dir_fd)
        except BaseException as exc:
            if seg is not None:
                seg.close()
            if isinstance(exc, OSError):
                raise SegmentError(name, f"cannot create segment {name!r}: {exc.strerror or exc}") from None
            raise
        finally:
            os.close(fd)
        return seg

    def _init_header(self, extra: dict[int, int]) -> None:
        r, layout = self.region, self.layout
        for index, value in (
            (L.H_CREATOR, my_identity()),
            (L.H_CREATOR_NS, pid_namespace()),
            (L.H_VERSION, L.LAYOUT_VERSION),
            (L.H_HASH, L.LAYOUT_HASH),
            (L.H_SIZE, layout.size),
            (L.H_MAX_WORKERS, layout.max_workers),
            (L.H_MAX_BREAKERS, layout.max_breakers),
            (L.H_MAX_SYMBOLS, layout.max_symbols),
            (L.H_MAX_RESERVATIONS, layout.max_reservations),
            (layout.journal + 1, layout.journal_capacity),
            (L.H_BUCKETS, L.BUCKETS),
            (L.H_CREATED_NS, time.time_ns()),
            *extra.items(),
        ):
            r.store(index, value)
        r.mutex_init(layout.ledger + L.L_MUTEX)
        r.store(L.H_MAGIC, L.MAGIC)

    @classmethod
    def attach(cls, name: str, *, allow_foreign: bool = False, observer: bool = False) -> Segment:
        """Map an existing segment after checking its owner and header.

        A segment that is not this user's alone (another owner, a mode other than 0600)
        or that was created in another PID namespace is refused with
        :class:`ForeignSegmentError` unless ``allow_foreign``. The returned segment holds a
        shared lock on the file (a stale-segment sweep never removes a segment a process is
        joining). A worker's lock lasts as long as its mapping — the mapping keeps the locked
        open file, so a forked child is covered before it claims a slot of its own; an
        ``observer``'s ends at :meth:`joined` (it maps the file through another open file:
        watching keeps no desk alive).
        """
        validate_name(name)
        for _ in range(3):  # the name may be replaced under us (a stale segment removed)
            fd = open_file(name)
            try:
                _lock(fd, name, fcntl.LOCK_SH)
                if not same_file(fd, name):
                    os.close(fd)
                    continue
                map_fd = open_file(name) if observer else fd
                try:
                    if not os.path.sameopenfile(map_fd, fd):
                        os.close(fd)
                        continue
                    seg = cls.from_fd(name, map_fd, allow_foreign=allow_foreign)
                finally:
                    if map_fd != fd:
                        os.close(map_fd)
            except BaseException:
                os.close(fd)
                raise
            seg._joining_fd = fd
            return seg
        raise SegmentNotFoundError(name, f"segment {name!r} keeps being replaced; try again")

    @classmethod
    def from_fd(cls, name: str, fd: int, *, allow_foreign: bool = False) -> Segment:
        """Map the segment open on ``fd`` after checking its owner and header (no locking)."""
        st = os.fstat(fd)
        size = st.st_size
        if size < L.HEADER_WORDS * 8:
            what = "is empty" if size == 0 else f"is too small ({size} bytes)"
            raise SegmentLayoutError(name, f"segment {name!r} {what}: not a bot4 segment")
        try:
            mm = mmap.mmap(fd, size)
        except OSError as exc:
            raise SegmentError(name, f"cannot map segment {name!r}: {exc.strerror or exc}") from None
        try:
            header = _header(mm)
            layout = _check_header(name, header, size)
            if not allow_foreign:
                _check_owner(name, st)
            other_namespace = header[L.H_CREATOR_NS] not in (0, pid_namespace())
            if other_namespace and not allow_foreign:
                raise ForeignSegmentError(
                    name,
                    f"segment {name!r} was created in another PID namespace (a container, say): processes of "
                    "different PID namespaces cannot tell whether each other's processes are alive "
                    "(attach with allow_foreign=True to share it anyway; see docs/design.md)",
                )
        except SegmentLayoutError:
            mm.close()
            raise
        seg = cls(name, mm, layout, owner=False)
        if other_namespace:
            seg.region.store(L.H_FOREIGN, 1)  # from now on, slots not yet tagged with a namespace are kept
        return seg

    def joined(self) -> None:
        """Drop the lock held since :meth:`attach` (the worker slot is claimed, or never will be)."""
        if self._joining_fd >= 0:
            fd, self._joining_fd = self._joining_fd, -1
            os.close(fd)

    def raw(self, word: int, count: int) -> bytes:
        """A copy of ``count`` words from word ``word``, as bytes (bulk reads of records)."""
        if word < 0 or count < 0 or word + count > self.layout.words:
            raise ValueError(f"words {word}..{word + count} outside the segment")
        return self._mmap[word * 8 : (word + count) * 8]

    def close(self) -> None:
        """Unmap the segment from this process (idempotent)."""
        self.joined()
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


def same_file(fd: int, name: str) -> bool:
    """Whether ``name`` still names the file open on ``fd``."""
    try:
        st = os.stat(shm_path(name), follow_symlinks=False)
    except OSError:
        return False
    mine = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)


def open_file(name: str) -> int:
    """Open segment ``name``'s file read-write; bot4 errors for a missing or unreadable one."""
    try:
        fd: int = _posixshmem.shm_open("/" + name, os.O_RDWR, mode=0o600)
        return fd
    except FileNotFoundError:
        raise SegmentNotFoundError(name, f"no segment named {name!r}") from None
    except PermissionError:
        raise ForeignSegmentError(name, f"segment {name!r} belongs to another user") from None
    except OSError as exc:
        raise SegmentError(name, f"cannot open segment {name!r}: {exc.strerror}") from None


def _check_owner(name: str, st: os.stat_result) -> None:
    hint = "(attach with allow_foreign=True to trust it)"
    if st.st_uid != os.geteuid():
        raise ForeignSegmentError(
            name, f"segment {name!r} belongs to uid {st.st_uid}, not to this process's uid {os.geteuid()} {hint}"
        )
    mode = stat.S_IMODE(st.st_mode)
    if mode != 0o600:
        raise ForeignSegmentError(
            name, f"segment {name!r} has mode {mode:04o}, not 0600: other users may write it {hint}"
        )


def _lock(fd: int, name: str, kind: int) -> None:
    # An exclusive holder is deciding whether to remove the segment: wait a little, never forever.
    deadline = time.monotonic() + _LOCK_WAIT_SECONDS
    while True:
        try:
            fcntl.flock(fd, kind | fcntl.LOCK_NB)
            return
        except OSError as exc:
            if not isinstance(exc, BlockingIOError):
                raise SegmentError(name, f"cannot lock segment {name!r}: {exc.strerror}") from None
            if time.monotonic() > deadline:
                raise SegmentError(name, f"segment {name!r} is being removed by another process") from None
            time.sleep(0.001)


def _reserve(fd: int, name: str, size: int) -> None:
    try:
        vfs = os.fstatvfs(fd)
    except OSError as exc:
        raise SegmentError(name, f"cannot read the free space of {SHM_DIR}: {exc.strerror}") from None
    free = vfs.f_bavail * vfs.f_frsize
    no_room = SegmentSpaceError(
        name,
        f"no room in {SHM_DIR} for segment {name!r}: it needs {size:,} bytes and {free:,} are free "
        "(make the capacities smaller or /dev/shm larger)",
    )
    if size > free:
        raise no_room
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EFBIG, errno.ENOMEM):
            raise no_room from None
        raise SegmentError(name, f"cannot reserve {size:,} bytes for segment {name!r}: {exc.strerror}") from None


def _publish(fd: int, name: str, dir_fd: int) -> None:
    try:
        os.link(f"/proc/self/fd/{fd}", name, dst_dir_fd=dir_fd, follow_symlinks=True)
    except FileExistsError:
        raise SegmentExistsError(name, f"segment {name!r} already exists") from None
    except OSError as exc:
        raise SegmentError(name, f"cannot publish segment {name!r}: {exc.strerror}") from None


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
