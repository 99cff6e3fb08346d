"""Segment lifecycle: creation that a kill cannot half-finish, space, garbage files, header order."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys

import pytest

from bot4 import (
    Bot4Error,
    CapacityError,
    Core,
    ForeignSegmentError,
    FuseConfig,
    SegmentLayoutError,
    SegmentSpaceError,
)
from bot4.breaker.fuse import pack_config
from bot4.shm import layout as L
from bot4.shm.segment import Segment


def shm_path(name: str) -> str:
    return f"/dev/shm/{name}"


# A creator that SIGKILLs itself at one point inside Core.create (argv: name, point).
KILL_INSIDE_CREATE = """
import os, signal, sys
import bot4.core, bot4.shm.segment as segment
name, point = sys.argv[1], sys.argv[2]

def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

if point == "opened":  # the file exists, nothing sized yet
    segment.os = type("os", (), {**{k: getattr(os, k) for k in dir(os) if not k.startswith("__")}, "fchmod": die})
elif point == "sized":  # sized, not mapped
    segment.mmap = type("mmap", (), {"mmap": staticmethod(die)})
elif point == "header":  # mapped, header being written
    segment.my_identity = die
elif point == "published":  # Segment.create returned, no worker slot yet
    bot4.core.SlotRegistry.claim = die
elif point == "claimed":  # the creator's core is complete
    bot4.core.Core.__init__ = lambda self, *a, _init=bot4.core.Core.__init__: (_init(self, *a), die())
bot4.core.Core.create(name)
"""


@pytest.mark.parametrize("point", ["opened", "sized", "header", "published", "claimed"])
def test_a_creator_killed_inside_create_never_blocks_the_name(point: str) -> None:
    name = f"bot4-killed-{point}-{os.getpid()}"
    child = subprocess.run(
        [sys.executable, "-c", KILL_INSIDE_CREATE, name, point], capture_output=True, text=True, timeout=60
    )
    assert child.returncode == -9, child.stderr
    try:
        with Core.create(name) as core:
            assert core.is_owner and core.breaker_names() == []
    finally:
        if os.path.exists(shm_path(name)):
            os.unlink(shm_path(name))


def test_every_header_word_is_written_before_the_segment_is_published(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, int] = {}
    real = Segment.create

    def create(*args: object, **kwargs: object) -> Segment:
        seg = real(*args, **kwargs)  # type: ignore[arg-type]
        # Once create returns the name is visible to every process: the header must be whole.
        seen["magic"] = seg.region.load(L.H_MAGIC)
        seen["fuse"] = seg.region.load(L.H_FUSE_CONFIG)
        return seg

    monkeypatch.setattr(Segment, "create", staticmethod(create))
    fuse = FuseConfig(open_ratio=0.8, close_ratio=0.2, min_components=5)
    with Core.create(fuse=fuse):
        pass
    assert seen == {"magic": L.MAGIC, "fuse": pack_config(fuse)}


def test_a_segment_too_large_for_dev_shm_is_a_clear_error() -> None:
    huge = L.Layout(
        max_workers=L.MAX_WORKERS_LIMIT, max_breakers=L.MAX_BREAKERS_LIMIT, max_symbols=1, max_reservations=1
    )
    vfs = os.statvfs("/dev/shm")
    if huge.size <= vfs.f_blocks * vfs.f_frsize:
        pytest.skip("/dev/shm is large enough for the largest layout")
    name = f"bot4-huge-{os.getpid()}"
    with pytest.raises(SegmentSpaceError, match=f"{huge.size:,} bytes") as info:
        Core.create(
            name, max_workers=L.MAX_WORKERS_LIMIT, max_breakers=L.MAX_BREAKERS_LIMIT, max_symbols=1, max_reservations=1
        )
    assert info.value.name == name
    assert not os.path.exists(shm_path(name))


def test_a_full_dev_shm_is_a_clear_error_not_sigbus(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_space(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "posix_fallocate", no_space)
    name = f"bot4-full-{os.getpid()}"
    with pytest.raises(SegmentSpaceError, match="no room"):
        Core.create(name)
    assert not os.path.exists(shm_path(name))


@pytest.mark.parametrize("content", [b"", os.urandom(8192), bytes(8192)], ids=["empty", "random", "zeros"])
def test_create_over_a_file_that_is_not_a_bot4_segment_says_so(content: bytes) -> None:
    name = f"bot4-garbage-{os.getpid()}"
    fd = os.open(shm_path(name), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    try:
        os.write(fd, content)
        os.close(fd)
        old = os.stat(shm_path(name)).st_mtime - 60
        os.utime(shm_path(name), (old, old))  # long past any creation
        with pytest.raises(SegmentLayoutError, match="not a bot4 segment"):
            Core.create(name)
        with open(shm_path(name), "rb") as f:
            assert f.read() == content  # never replaced
    finally:
        os.unlink(shm_path(name))


def test_cores_dropped_without_close_give_their_worker_slots_back() -> None:
    with Core.create(max_workers=3) as owner:
        for i in range(10):  # more than max_workers
            core = Core.attach(owner.name)
            core.breaker(f"b{i % 2}")  # breakers, the fuse and the risk engine point back at the core
            core.risk.snapshot()
            del core
        import gc

        gc.collect()
        assert [w.slot for w in owner.workers()] == [owner.slot]


def test_a_segment_others_may_write_is_refused_unless_allowed() -> None:
    with Core.create() as core:
        os.chmod(shm_path(core.name), 0o644)
        with pytest.raises(ForeignSegmentError, match="mode 0644"):
            Core.attach(core.name)
        trusted = Core.attach(core.name, allow_foreign=True)
        assert trusted.slot != core.slot
        trusted.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a segment to another user needs root")
def test_another_users_segment_is_refused_and_never_replaced() -> None:
    name = f"bot4-other-user-{os.getpid()}"
    code = f"import os, bot4\nbot4.Core.create({name!r})\nos._exit(0)\n"  # a stale segment
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    try:
        os.chown(shm_path(name), 65534, 65534)
        with pytest.raises(ForeignSegmentError, match="uid 65534"):
            Core.attach(name)
        with pytest.raises(ForeignSegmentError):
            Core.create(name)  # stale, but not ours: never removed
        assert os.stat(shm_path(name)).st_uid == 65534
        trusted = Core.attach(name, allow_foreign=True)
        trusted.close()
    finally:
        os.unlink(shm_path(name))


# Attaches from a new PID namespace, holds its slot until stdin closes.
NS_CHILD = """
import sys, bot4
core = bot4.Core.attach(sys.argv[1], allow_foreign=sys.argv[2] == "allow")
print("attached", core.slot, flush=True)
sys.stdin.read()
core.close()
"""


def in_new_pid_namespace(*args: str) -> list[str]:
    return ["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c", NS_CHILD, *args]


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root and util-linux unshare")
def test_a_process_in_another_pid_namespace_is_refused_or_never_taken_for_dead() -> None:
    with Core.create(max_workers=2) as core:
        refused = subprocess.run(in_new_pid_namespace(core.name, "refuse"), capture_output=True, text=True, timeout=60)
        assert refused.returncode != 0 and "PID namespace" in refused.stderr, refused.stderr[-2000:]
        child = subprocess.Popen(
            in_new_pid_namespace(core.name, "allow"), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        try:
            assert child.stdout is not None
            assert child.stdout.readline().split() == ["attached", "1"]
            # Its PID means nothing in this namespace: its slot must not look dead.
            assert [(w.slot, w.alive) for w in core.workers()] == [(0, True), (1, True)]
            with pytest.raises(CapacityError):
                Core.attach(core.name)
        finally:
            assert child.stdin is not None
            child.stdin.close()
            child.wait(timeout=60)
        assert child.returncode == 0
        Core.attach(core.name).close()  # it gave its slot back when it closed


def test_a_slot_holder_recorded_in_another_pid_namespace_counts_as_alive() -> None:
    from bot4.shm._proc import pid_namespace
    from bot4.shm.slots import pack_namespace

    with Core.create(max_workers=2) as core:
        lay, r = core._segment.layout, core._segment.region
        dead = (12345 << 32) | 0x7FFFFFF0  # a PID no process here has, with any start time
        r.store(lay.slot(1) + L.S_IDENT, dead)
        r.store(lay.slot(1) + L.S_PIDNS, pack_namespace(dead, pid_namespace() + 1))
        with pytest.raises(CapacityError):
            Core.attach(core.name)  # not reclaimed: its holder lives in another namespace
        r.store(lay.slot(1) + L.S_PIDNS, pack_namespace(dead, pid_namespace()))
        Core.attach(core.name).close()  # same namespace, PID gone: reclaimed


def test_a_segment_a_process_is_joining_is_never_removed_as_stale() -> None:
    from bot4.shm.lifecycle import remove_if_stale

    name = f"bot4-joining-{os.getpid()}"
    code = f"import os, bot4\nbot4.Core.create({name!r})\nos._exit(0)\n"  # every process of it dead
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    try:
        joining = Segment.attach(name)  # holds the joining lock, as Core.attach does until its slot is claimed
        try:
            assert remove_if_stale(name) is False
        finally:
            joining.close()
        assert remove_if_stale(name, dry_run=True) is True
        assert os.path.exists(shm_path(name))
        assert remove_if_stale(name) is True
        assert not os.path.exists(shm_path(name))
    finally:
        if os.path.exists(shm_path(name)):
            os.unlink(shm_path(name))


def test_a_process_whose_record_cannot_be_read_is_never_judged_dead(monkeypatch: pytest.MonkeyPatch) -> None:
    """An I/O error reading /proc (too many open files under load) must not make a live owner
    look dead: its reservations would be reclaimed and its risk handed to others."""
    import builtins
    import errno

    from bot4.shm._proc import is_alive, my_identity

    me = my_identity()
    real_open = builtins.open

    def failing_open(path: object, *args: object, **kw: object) -> object:
        if isinstance(path, str) and path.startswith("/proc/") and path.endswith("/stat"):
            raise OSError(errno.EMFILE, "Too many open files")
        return real_open(path, *args, **kw)  # type: ignore[call-overload]

    monkeypatch.setattr(builtins, "open", failing_open)
    assert is_alive(me)


def test_a_process_that_cannot_read_its_own_record_gets_no_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without its start time, a live process's identity would make every other one judge it
    dead: reading its own record must succeed (after retries) or fail loudly."""
    import builtins
    import errno

    from bot4.shm._proc import is_alive, my_identity

    real_open = builtins.open
    failures = {"left": 3}

    def flaky_open(path: object, *args: object, **kw: object) -> object:
        if isinstance(path, str) and path == f"/proc/{os.getpid()}/stat" and failures["left"] > 0:
            failures["left"] -= 1
            raise OSError(errno.EMFILE, "Too many open files")
        return real_open(path, *args, **kw)  # type: ignore[call-overload]

    monkeypatch.setattr(builtins, "open", flaky_open)
    me = my_identity()  # a passing error is retried
    assert me >> 32 and failures["left"] == 0
    monkeypatch.setattr(builtins, "open", real_open)
    assert is_alive(me)
    failures["left"] = 10**6
    monkeypatch.setattr(builtins, "open", flaky_open)
    with pytest.raises(Bot4Error, match="identity is unknown"):
        my_identity()


@pytest.mark.parametrize("failing_read", [1, 2])
def test_one_unreadable_read_never_gives_a_dead_looking_identity(
    monkeypatch: pytest.MonkeyPatch, failing_read: int
) -> None:
    """Each identity is made of one read of the record: a transient error on any single read
    is retried or counted alive, never turned into an identity without its start time."""
    import builtins

    from bot4.shm._proc import identity, is_alive, my_identity

    real_open = builtins.open
    true_identity = identity(os.getpid())
    reads = {"n": 0}

    def flaky_open(path: object, *args: object, **kw: object) -> object:
        if isinstance(path, str) and path == f"/proc/{os.getpid()}/stat":
            reads["n"] += 1
            if reads["n"] == failing_read:
                raise OSError(errno.EMFILE, "Too many open files")
        return real_open(path, *args, **kw)  # type: ignore[call-overload]

    monkeypatch.setattr(builtins, "open", flaky_open)
    assert my_identity() == true_identity
    reads["n"] = 0
    assert is_alive(true_identity)
