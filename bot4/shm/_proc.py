"""Process identities that survive PID reuse.

An identity is one positive int64: the PID in the low 32 bits and the low 31 bits of
the process start time (``/proc/PID/stat`` field 22) above it. A slot or lock word
holding an identity belongs to a live process only if that PID exists, is not a
zombie, and started at that time, so a recycled PID never inherits a dead owner's
slot or lock.
"""

from __future__ import annotations

import os
import time

from bot4.errors import Bot4Error

__all__ = ["holder_token", "identity", "identity_pid", "is_alive", "my_identity", "pid_namespace"]

_PID_MASK = (1 << 32) - 1
_UNREADABLE = ("?", 0)  # a process record that exists but could not be read
_OWN_TRIES = 20


def _stat(pid: int) -> tuple[str, int] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError:
        return _UNREADABLE
    fields = data[data.rindex(b")") + 2 :].split()
    return fields[0].decode(), int(fields[19])


def identity(pid: int) -> int | None:
    """Return the identity of the live process ``pid``, or ``None`` when it is gone."""
    if os.path.isdir("/proc"):
        return _identity(pid, _stat(pid))
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return pid & _PID_MASK


def _identity(pid: int, st: tuple[str, int] | None) -> int | None:
    if st is None or st[0] in ("Z", "X"):
        return None
    return ((st[1] & 0x7FFFFFFF) << 32) | (pid & _PID_MASK)


def identity_pid(ident: int) -> int:
    """Return the PID part of an identity."""
    return ident & _PID_MASK


def is_alive(ident: int) -> bool:
    """Return whether the process that ``ident`` names still runs. When its record cannot be
    read (an I/O error other than its absence: too many open files, say), it counts as alive:
    a live process is never judged dead, nor its reservations and locks taken from it."""
    if ident <= 0:
        return False
    pid = identity_pid(ident)
    if not os.path.isdir("/proc"):
        return identity(pid) == ident
    st = _stat(pid)  # read once: a second read could fail where the first did not
    return st == _UNREADABLE or _identity(pid, st) == ident


def my_identity() -> int:
    """Return the identity of the calling process.

    Raises :class:`bot4.Bot4Error` when its own ``/proc`` record stays unreadable: an
    identity without the start time would let every other process judge this one dead.
    """
    pid = os.getpid()
    if not os.path.isdir("/proc"):
        return pid & _PID_MASK
    for attempt in range(_OWN_TRIES):
        st = _stat(pid)  # read once: the identity is made of what this read saw
        if st is not None and st != _UNREADABLE:
            ident = _identity(pid, st)
            if ident is not None:
                return ident
        time.sleep(0.001 * attempt)
    raise Bot4Error(f"cannot read /proc/{pid}/stat: this process's identity is unknown (too many open files?)")


def pid_namespace() -> int:
    """The inode of the calling process's PID namespace (0 when ``/proc`` does not say).

    PIDs, and so identities, mean something only inside one PID namespace: a process
    of another namespace that shares ``/dev/shm`` cannot be judged dead by its PID.
    """
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return 0


def holder_token(ident: int) -> int:
    """Process identity ``ident`` tied to this process's PID namespace, as a positive int64.

    A lock the OS knows by thread id alone (the ledger mutex) records this beside it:
    thread ids, PIDs and so identities repeat across PID namespaces that share a segment.
    """
    token = (ident ^ (pid_namespace() * 0x9E3779B97F4A7C15)) & ((1 << 63) - 1)
    return token or 1
