"""The ledger mutex and the redo journal: a holder's death never wedges or tears anything."""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import signal
import subprocess
import sys
import time
from typing import Any

import pytest

from bot4 import Core, LockTimeoutError
from bot4.shm import layout as L
from bot4.shm.mutex import SharedMutex, ledger_mutex

ctx = mp.get_context("spawn")


def _hold_mutex(name: str, holding: Any) -> None:
    core = Core.attach(name)
    seg = core._segment
    assert seg.region.mutex_lock(seg.layout.ledger + L.L_MUTEX, 5.0) == 0
    holding.set()
    time.sleep(600)


def mutex_of(core: Core, timeout: float = 5.0) -> SharedMutex:
    return ledger_mutex(core._segment, core._context.ident, timeout)


@pytest.mark.processes
def test_a_dead_holder_hands_the_mutex_on() -> None:
    with Core.create() as core:
        holding = ctx.Event()
        p = ctx.Process(target=_hold_mutex, args=(core.name, holding), daemon=True)
        p.start()
        assert holding.wait(60)
        with pytest.raises(LockTimeoutError):
            with mutex_of(core, timeout=0.2):
                pass  # a live holder: we wait, then give up with a clear error
        os.kill(p.pid, signal.SIGKILL)
        p.join(10)
        t = time.monotonic()
        with mutex_of(core) as tx:
            tx.set(core._segment.layout.ledger + L.L_SWEEP_NS, 42)
        assert time.monotonic() - t < 1.0
        assert core._segment.region.load(core._segment.layout.ledger + L.L_SWEEP_NS) == 42


def test_a_committed_journal_is_replayed_by_the_next_holder() -> None:
    with Core.create() as core:
        r, base = core._segment.region, core._segment.layout.ledger
        journal = core._segment.layout.journal
        # What a holder killed right after the commit point leaves behind:
        r.store(journal + 2, base + L.L_CASH)
        r.storef(journal + 3, 123.5)
        r.store(journal + 4, base + L.L_OPEN_ORDERS)
        r.store(journal + 5, 7)
        r.store(journal, 2)
        assert r.loadf(base + L.L_CASH) == 0.0
        with mutex_of(core):
            assert r.loadf(base + L.L_CASH) == 123.5
            assert r.load(base + L.L_OPEN_ORDERS) == 7
        assert r.load(journal) == 0


def test_an_uncommitted_journal_changes_nothing() -> None:
    with Core.create() as core:
        r, base = core._segment.region, core._segment.layout.ledger
        journal = core._segment.layout.journal
        r.store(journal + 2, base + L.L_OPEN_ORDERS)  # pairs written, count never published
        r.store(journal + 3, 99)
        with mutex_of(core):
            pass
        assert r.load(base + L.L_OPEN_ORDERS) == 0


def test_writes_are_discarded_when_the_block_raises() -> None:
    with Core.create() as core:
        r, base = core._segment.region, core._segment.layout.ledger
        with pytest.raises(RuntimeError):
            with mutex_of(core) as tx:
                tx.set(base + L.L_OPEN_ORDERS, 5)
                raise RuntimeError("changed my mind")
        assert r.load(base + L.L_OPEN_ORDERS) == 0
        with mutex_of(core) as tx:  # and the mutex was released
            tx.set(base + L.L_OPEN_ORDERS, (1, 2))  # a run of consecutive words
        assert (r.load(base + L.L_OPEN_ORDERS), r.load(base + L.L_OPEN_ORDERS + 1)) == (1, 2)


def test_a_transaction_larger_than_the_journal_is_refused() -> None:
    with Core.create() as core:
        base = core._segment.layout.ledger
        with pytest.raises(ValueError, match="journal"):
            with mutex_of(core) as tx:
                tx.set(base + L.L_OPEN_ORDERS, tuple([0] * (core._segment.layout.journal_capacity + 1)))


@pytest.mark.processes
@pytest.mark.skipif(shutil.which("unshare") is None or os.geteuid() != 0, reason="needs unshare and root")
def test_a_process_of_another_pid_namespace_with_our_thread_id_waits_its_turn(tmp_path: Any) -> None:
    """Thread ids repeat across PID namespaces (both processes are PID 1 of their own here):
    the OS alone would take the second for the holder and let it in."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    with Core.create() as core:
        core.risk  # noqa: B018 - the ledger is set up
        run = [sys.executable, "-m", "tests.shm.namespace_target", core.name]
        env = {**os.environ, "PYTHONPATH": root}
        procs = [subprocess.Popen(["unshare", "-Urpf", *run, role, str(tmp_path)], cwd=root, env=env) for role in "AB"]
        assert [p.wait(120) for p in procs] == [0, 0]
        left = float((tmp_path / "a-left").read_text())
        entered = float((tmp_path / "b-entered").read_text())
        assert entered >= left, "B entered the ledger section while A held it"
