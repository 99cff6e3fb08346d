"""Which bot4 segments the test run made, so the leak check removes only those.

A segment is the run's when its creator (the identity in its header) is the test
process, a child process the run started (observed as it starts, so a child that was
killed is still known), or a live descendant of the test process. A segment that any
other process made during the run — a live desk on the same host — is neither reported
nor touched.
"""

from __future__ import annotations

import multiprocessing.process
import os
import struct
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

from bot4.shm import layout as L
from bot4.shm._proc import _stat, identity_pid, my_identity

SHM_DIR = "/dev/shm"


def _identity_even_if_zombie(pid: int) -> int | None:
    st = _stat(pid)
    return None if st is None else ((st[1] & 0x7FFFFFFF) << 32) | pid


def _creator(name: str) -> int | None:
    try:
        with open(os.path.join(SHM_DIR, name), "rb") as f:
            head = f.read(L.HEADER_WORDS * 8)
    except OSError:
        return None
    if len(head) < L.HEADER_WORDS * 8 or struct.unpack_from("<q", head, 0)[0] != L.MAGIC:
        return None
    return int(struct.unpack_from("<q", head, L.H_CREATOR * 8)[0])


def _descends_from(pid: int, ancestor: int) -> bool:
    for _ in range(64):
        if pid == ancestor:
            return True
        if pid <= 1:
            return False
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                data = f.read()
        except OSError:
            return False
        pid = int(data[data.rindex(b")") + 2 :].split()[1])
    return False


def _bot4_names() -> set[str]:
    return {n for n in os.listdir(SHM_DIR) if n.startswith("bot4-")}


class SegmentWatch:
    """Segments named ``bot4-*`` that appear after construction and were made by this run."""

    def __init__(self) -> None:
        self.before = _bot4_names()
        self.me = os.getpid()
        self.identities = {my_identity()}

    def adopt(self, pid: int) -> None:
        """Count the segments that child ``pid`` creates as the run's own."""
        ident = _identity_even_if_zombie(pid)
        if ident is not None:
            self.identities.add(ident)

    def is_ours(self, name: str) -> bool:
        creator = _creator(name)
        if creator is None:
            return False
        return creator in self.identities or _descends_from(identity_pid(creator), self.me)

    def leaked(self) -> list[str]:
        """New ``bot4-*`` segments that this run made and that are still there."""
        return sorted(n for n in _bot4_names() - self.before if self.is_ours(n))

    @contextmanager
    def observing_children(self) -> Iterator[None]:
        """Adopt every child started through :mod:`subprocess` or :mod:`multiprocessing`."""
        popen_init = subprocess.Popen.__init__
        process_start = multiprocessing.process.BaseProcess.start
        watch = self

        def init(self: subprocess.Popen, *args: object, **kwargs: object) -> None:  # type: ignore[type-arg]
            popen_init(self, *args, **kwargs)  # type: ignore[arg-type]
            watch.adopt(self.pid)

        def start(self: multiprocessing.process.BaseProcess) -> None:
            process_start(self)
            if self.pid is not None:
                watch.adopt(self.pid)

        subprocess.Popen.__init__ = init  # type: ignore[method-assign]
        multiprocessing.process.BaseProcess.start = start  # type: ignore[method-assign]
        try:
            yield
        finally:
            subprocess.Popen.__init__ = popen_init  # type: ignore[method-assign]
            multiprocessing.process.BaseProcess.start = process_start  # type: ignore[method-assign]


def remove_leaked(watch: SegmentWatch) -> list[str]:
    """Unlink the run's leftover segments (and only those); return their names."""
    leaked = watch.leaked()
    for name in leaked:
        try:
            os.unlink(os.path.join(SHM_DIR, name))
        except FileNotFoundError:
            pass
    return leaked
