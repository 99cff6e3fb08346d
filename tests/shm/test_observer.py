"""A desk is never judged stale while a live process still works on it.

An observer's slot keeps no desk alive: so an observer takes no risk, and a worker (a forked
child that has not claimed its slot yet included) keeps its desk from being removed — else
two desks under one name."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from bot4 import ConfigError, Core, make_plugin_manager
from bot4.orders.model import Order, OrderType, Side
from bot4.shm.lifecycle import remove_if_stale
from tests.helpers import ROOT, creator_process

pytestmark = pytest.mark.processes


def test_an_observer_takes_no_risk_and_keeps_no_desk_alive(segment_name: str) -> None:
    """An observer is refused risk: were it not, a desk whose other processes died would be
    stale with its open order (a restart's Core.create would make a second desk of the name,
    blind to that order, while the observer traded on the unlinked one)."""
    creator = creator_process(segment_name)
    observer = Core.attach(segment_name, observer=True, plugins=make_plugin_manager(entry_points=False))
    try:
        order = Order(
            symbol="BTC/USDT", side=Side.BUY, quantity=0.5, type=OrderType.LIMIT, price=50_000.0, stop_loss=49_000.0
        )
        with pytest.raises(ConfigError, match="takes no risk"):
            observer.risk.reserve(order)
        assert observer.risk.snapshot().open_orders == 0
        assert [w.observer for w in observer.workers()] == [False, True]  # the creator, then it
        assert not remove_if_stale(segment_name, dry_run=True)  # its creator lives
        os.kill(creator.pid, signal.SIGKILL)
        creator.wait()
        assert remove_if_stale(segment_name, dry_run=True)  # watched, and over
        worker = Core.attach(segment_name, plugins=make_plugin_manager(entry_points=False))
        try:
            assert not remove_if_stale(segment_name, dry_run=True)  # a worker keeps it
        finally:
            worker.close()
        assert remove_if_stale(segment_name)
    finally:
        if creator.poll() is None:
            creator.kill()
            creator.wait()
        observer.close()


_FORKING_WORKER = """
import os, sys, time
# Another library's at-fork hook (or a busy host) runs before bot4's: the child has no slot yet.
os.register_at_fork(after_in_child=lambda: time.sleep(1.5))
sys.path.insert(0, {root!r})
from bot4 import Core, make_plugin_manager
core = Core.attach({name!r}, plugins=make_plugin_manager(entry_points=False))
print("attached", flush=True)
sys.stdin.readline()
if os.fork():
    os._exit(0)  # the parent leaves at once (a daemonising worker)
print("child", core.slot, flush=True)  # the child works on
time.sleep(0.5)
core.close()
"""


def test_observer_must_be_a_bool(segment_name: str) -> None:
    with Core.create(segment_name, plugins=make_plugin_manager(entry_points=False)):
        with pytest.raises(ConfigError):
            Core.attach(segment_name, observer="yes")  # type: ignore[arg-type]


def test_a_forked_worker_keeps_its_desk_before_its_slot_is_claimed(segment_name: str) -> None:
    """A worker forks and exits; until its child has claimed a slot nothing names the child in
    the segment's slots: the child's inherited mapping (the locked open file of its parent's
    attach) keeps the desk from being removed meanwhile."""
    creator = creator_process(segment_name)
    code = _FORKING_WORKER.format(root=ROOT, name=segment_name)
    worker = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert worker.stdout is not None and worker.stdin is not None
        assert worker.stdout.readline().strip() == "attached"
        os.kill(creator.pid, signal.SIGKILL)
        creator.wait()
        worker.stdin.write("fork\n")
        worker.stdin.flush()
        worker.wait(30)  # the parent is gone; its child is in its at-fork moment
        stale = remove_if_stale(segment_name, dry_run=True)
        assert worker.stdout.readline().startswith("child")  # the child lives on as a worker of the desk
        assert not stale, "a desk judged stale while a forked worker of it was alive"
    finally:
        for proc in (creator, worker):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if worker.stdout is not None:
            worker.stdout.read()  # until the child (who shares the pipe) has ended
