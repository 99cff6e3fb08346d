"""A desk is never judged stale while a live process still works on it.

An observer's slot keeps no desk alive: so an observer takes no risk, and a worker (a forked
child that has not claimed its slot yet included) keeps its desk from being removed — else
two desks under one name."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator

import pytest

from bot4 import Core, make_plugin_manager
from bot4.errors import Bot4Error
from bot4.orders.model import Order, OrderType, Side
from bot4.shm.lifecycle import remove_if_stale

pytestmark = pytest.mark.processes
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def name() -> Iterator[str]:
    name = f"bot4-r2-{uuid.uuid4().hex[:10]}"
    yield name
    with contextlib.suppress(Exception):
        remove_if_stale(name)


def _creator(name: str) -> subprocess.Popen[str]:
    """A process that creates desk ``name`` (equity, a price) and waits to be killed."""
    code = textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {ROOT!r})
        from bot4 import Core, make_plugin_manager
        core = Core.create({name!r}, plugins=make_plugin_manager(entry_points=False))
        core.risk.set_equity(100_000.0)
        core.risk.on_price("BTC/USDT", 50_000.0)
        print("ready", flush=True)
        time.sleep(600)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def test_an_observer_holding_a_reservation_keeps_its_desk(name: str) -> None:
    """An observer is refused risk; were it not, a desk whose other processes died would be
    stale with its open order (a restart's Core.create would make a second desk of the name,
    blind to that order, while the observer traded on the unlinked one)."""
    creator = _creator(name)
    observer = Core.attach(name, observer=True, plugins=make_plugin_manager(entry_points=False))
    try:
        order = Order(
            symbol="BTC/USDT", side=Side.BUY, quantity=0.5, type=OrderType.LIMIT, price=50_000.0, stop_loss=49_000.0
        )
        try:
            decision = observer.risk.reserve(order)
        except Bot4Error:
            return  # an observer refused risk: fine
        assert decision.reservation is not None, decision
        os.kill(creator.pid, signal.SIGKILL)
        creator.wait()
        assert observer.risk.snapshot().open_orders == 1
        assert not remove_if_stale(name, dry_run=True), "a desk with a live process's open order is judged stale"
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


def test_a_forked_worker_keeps_its_desk_before_its_slot_is_claimed(name: str) -> None:
    """A worker forks and exits; until its child has claimed a slot nothing names the child in
    the segment's slots: the child's inherited mapping (the locked open file of its parent's
    attach) keeps the desk from being removed meanwhile."""
    creator = _creator(name)
    code = _FORKING_WORKER.format(root=ROOT, name=name)
    worker = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert worker.stdout is not None and worker.stdin is not None
        assert worker.stdout.readline().strip() == "attached"
        os.kill(creator.pid, signal.SIGKILL)
        creator.wait()
        worker.stdin.write("fork\n")
        worker.stdin.flush()
        worker.wait(30)  # the parent is gone; its child is in its at-fork moment
        stale = remove_if_stale(name, dry_run=True)
        assert worker.stdout.readline().startswith("child")  # the child lives on as a worker of the desk
        assert not stale, "a desk judged stale while a forked worker of it was alive"
    finally:
        for proc in (creator, worker):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if worker.stdout is not None:
            worker.stdout.read()  # until the child (who shares the pipe) has ended
