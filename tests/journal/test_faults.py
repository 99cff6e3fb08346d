"""A journal that cannot be written, a recorder paused or killed: new risk is refused, nothing is lost."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot4 import Core, make_plugin_manager
from bot4.journal.store import JournalStore
from tests.helpers import wait_for
from tests.journal.conftest import unwritable
from tests.risk.conftest import NO_LIMITS, buy

ROOT = os.geteuid() == 0


@contextlib.contextmanager
def _recorded_core(path: Path) -> Iterator[Core]:
    """A core journaling to ``path`` with its supervised recorder process, trading allowed."""
    with Core.create(plugins=make_plugin_manager(entry_points=False), journal=path) as core:
        assert core.journal is not None and core.journal.wait_ready()
        core.risk.configure(NO_LIMITS)
        core.risk.set_equity(10_000.0)
        core.risk.on_price("BTC/USDT", 100.0)
        yield core


def _marks(path: Path) -> int:
    store = JournalStore(path, read_only=True)
    try:
        assert store.db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        return int(store.db.execute("SELECT COUNT(*) FROM events WHERE kind = 'MARK'").fetchone()[0])
    finally:
        store.close()


def _mark_until_refused(core: Core, why: str) -> int:
    """Mark prices (never refused) until the journal's problem names ``why``; how many marks."""
    assert core.journal is not None
    marks = 0
    deadline = time.monotonic() + 30
    while why not in (core.journal.problem or ""):
        assert time.monotonic() < deadline, core.journal.problem
        for _ in range(50):
            marks += 1
            core.risk.on_price("BTC/USDT", 100.0 + marks % 7)
        time.sleep(0.001)
    return marks


@contextlib.contextmanager
def _small_disk(where: Path) -> Iterator[Path]:
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


def _fill(disk: Path) -> Path:
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0" * 4096)
    finally:
        os.close(fd)
    return filler


@pytest.mark.skipif(not ROOT, reason="mounting a small filesystem needs root")  # CI runs as root
def test_a_full_disk_refuses_new_risk_and_trading_resumes_with_nothing_lost(tmp_path: Path) -> None:
    with _small_disk(tmp_path / "disk") as disk:
        path = disk / "journal.db"
        with _recorded_core(path) as core:
            assert core.risk.reserve(buy()).approved
            filler = _fill(disk)
            marks = _mark_until_refused(core, "full")
            decision = core.risk.reserve(buy())
            assert decision.codes == ("JOURNAL",)
            assert "cannot be written" in decision.rejections[0].message
            filler.unlink()
            wait_for(lambda: core.journal.problem is None)  # type: ignore[union-attr]
            assert core.risk.reserve(buy()).approved
            assert core.journal is not None and core.journal.wait_durable()
            assert _marks(path) == marks + 1  # every mark made while the disk was full, once


def test_a_read_only_journal_refuses_new_risk_and_trading_resumes_with_nothing_lost(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    with _recorded_core(path) as core:
        assert core.journal is not None and core.journal.wait_durable()
        with unwritable(path, Path(f"{path}-wal")):
            marks = _mark_until_refused(core, "cannot be written")
            assert core.risk.reserve(buy()).codes == ("JOURNAL",)
        wait_for(lambda: core.journal.problem is None)  # type: ignore[union-attr]
        assert core.risk.reserve(buy()).approved
        assert core.journal.wait_durable()
        assert _marks(path) == marks + 1


def test_a_paused_recorder_refuses_new_risk_until_it_runs_again(tmp_path: Path) -> None:
    with _recorded_core(tmp_path / "journal.db") as core:
        assert core.journal is not None and core.journal.recorder is not None
        pid = core.journal.recorder.pid
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)
        try:
            wait_for(lambda: "recorder is down" in (core.journal.problem or ""))  # type: ignore[union-attr]
            assert core.risk.reserve(buy()).codes == ("JOURNAL",)
        finally:
            os.kill(pid, signal.SIGCONT)
        wait_for(lambda: core.journal.problem is None)  # type: ignore[union-attr]
        assert core.risk.reserve(buy()).approved
        assert core.journal.recorder.restarts == 0  # paused is not dead: nobody started a second one


def test_a_killed_recorder_is_restarted_and_every_record_is_written_once(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    with _recorded_core(path) as core:
        journal = core.journal
        assert journal is not None and journal.recorder is not None
        marks = 0
        for kill in range(5):
            pid = journal.recorder.pid
            assert pid is not None
            for _ in range(3000):  # the recorder is killed while it writes these
                marks += 1
                core.risk.on_price("BTC/USDT", 100.0 + marks % 7)
            os.kill(pid, signal.SIGKILL)
            wait_for(lambda k=kill: journal.recorder.restarts == k + 1 and journal.recorder.pid is not None)  # type: ignore[union-attr]
        assert journal.wait_ready()
        assert journal.wait_durable()
        assert _marks(path) == marks + 1


def test_a_recorder_refused_by_the_size_cap_keeps_every_record_in_the_ring(db: Path, desk: object) -> None:
    core, recorder = desk  # type: ignore[misc]
    recorder.drain()
    ring = recorder.ring
    db_ = recorder.store.db
    recorder.store.set_max_bytes(
        db_.execute("PRAGMA page_count").fetchone()[0] * db_.execute("PRAGMA page_size").fetchone()[0]
    )
    for i in range(5000):
        core.risk.on_price("BTC/USDT", 100.0 + i % 7)
    tail = ring.tail
    with pytest.raises(sqlite3.OperationalError, match="full"):
        recorder.drain()
    assert ring.tail == tail  # nothing taken off the ring that is not written
    recorder.store.set_max_bytes(None)
    assert recorder.drain() == 5000
    assert _marks(db) == 5001
