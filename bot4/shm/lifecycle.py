"""Stale segments: bot4 segments whose processes are all dead, found and removed.

A segment is stale when its creator and every worker slot holder are dead. Deciding
that takes an exclusive ``flock`` on the segment's file (a process attaching holds a
shared one until its slot is claimed), and the name is removed only if it still names
the file that was examined. A file that is not a bot4 segment, or that belongs to
another user, is never removed: that is an error for :func:`remove_if_stale` and is
skipped by :func:`find_segments`.
"""

from __future__ import annotations

import fcntl
import os

from bot4.errors import SegmentError, SegmentNotFoundError
from bot4.shm import layout as L
from bot4.shm._proc import is_alive, pid_namespace
from bot4.shm.segment import SHM_DIR, Segment, open_file, same_file, shm_path, validate_name
from bot4.shm.slots import SlotRegistry

__all__ = ["find_segments", "find_stale", "live_holders", "remove_if_stale"]


def find_segments() -> list[str]:
    """Names of the bot4 segments on this host (files in ``/dev/shm`` with the magic word)."""
    try:
        entries = sorted(os.listdir(SHM_DIR))
    except OSError as exc:
        raise SegmentError(SHM_DIR, f"cannot list {SHM_DIR}: {exc.strerror}") from None
    names = []
    for name in entries:
        try:
            with open(shm_path(name), "rb") as f:
                magic = f.read(8)
        except OSError:
            continue
        if int.from_bytes(magic.ljust(8, b"\0"), "little") == L.MAGIC:
            names.append(name)
    return names


def live_holders(seg: Segment) -> list[int]:
    """Identities of the segment's creator and slot holders that are (or may be) alive."""
    r = seg.region
    creator = r.load(L.H_CREATOR)
    foreign = r.load(L.H_CREATOR_NS) not in (0, pid_namespace())  # its PID says nothing here
    return ([creator] if foreign or is_alive(creator) else []) + SlotRegistry(seg).live_holders()


def remove_if_stale(name: str, *, dry_run: bool = False) -> bool:
    """Remove segment ``name`` if no process of it is alive; return whether it was removed.

    With ``dry_run`` nothing is removed: the result says whether it would be.

    Raises:
        SegmentNotFoundError: there is no segment ``name``.
        SegmentLayoutError: the file is not a bot4 segment (or an incompatible one).
        ForeignSegmentError: it belongs to another user or PID namespace.
        Neither is ever removed.
    """
    validate_name(name)
    fd = open_file(name)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a process is joining it right now
        except OSError as exc:
            raise SegmentError(name, f"cannot lock segment {name!r}: {exc.strerror}") from None
        seg = Segment.from_fd(name, fd)
        try:
            if live_holders(seg):
                return False
        finally:
            seg.close()
        if not same_file(fd, name):
            return False  # already replaced by someone else
        if not dry_run:
            try:
                os.unlink(shm_path(name))
            except FileNotFoundError:
                raise SegmentNotFoundError(name, f"no segment named {name!r}") from None
            except OSError as exc:
                raise SegmentError(name, f"cannot remove segment {name!r}: {exc.strerror}") from None
        return True
    finally:
        os.close(fd)


def find_stale() -> list[str]:
    """Names of the bot4 segments on this host whose processes are all dead (removes nothing)."""
    stale = []
    for name in find_segments():
        try:
            if remove_if_stale(name, dry_run=True):
                stale.append(name)
        except SegmentError:
            continue  # not ours, or not readable: left alone
    return stale
