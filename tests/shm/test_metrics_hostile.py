"""P&L figures by venue and strategy against a forked claimer, a full table, a bad figure."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time

import pytest

from bot4 import Core, make_plugin_manager
from bot4.shm import layout as L
from bot4.shm._proc import identity
from bot4.shm.metrics import OTHER

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_FORKED_CLAIMER = """
import os, sys, time
sys.path.insert(0, {root!r})
from bot4 import Core, make_plugin_manager
core = Core.attach({name!r}, plugins=make_plugin_manager(entry_points=False))
core.metrics.add_fill("venue-w", "strat-w", 1.0, 0.0, 1.0)  # its metrics made before the fork

class Descheduled(str):  # a claimer that loses the CPU inside the claim lock (a busy host, SIGSTOP)
    def encode(self, *args):
        print("in the claim lock", flush=True)
        time.sleep(1.5)
        return str.encode(self, *args)

if os.fork():
    os._exit(0)  # the parent leaves
core.metrics.add_fill(Descheduled("venue-c"), "strat-w", 10.0, 0.0, 1.0)
print("claimed", flush=True)
core.close()
"""


@pytest.mark.processes
def test_a_forked_child_claims_as_itself() -> None:
    """The child of a fork claims under its own identity: were it its parent's, once the
    parent exited another process would take the lock from the live child and both write one
    record (a fill lost, later fills counted under the child's name)."""
    with Core.create(plugins=make_plugin_manager(entry_points=False)) as core:
        code = _FORKED_CLAIMER.format(root=ROOT, name=core.name)
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "in the claim lock"
            proc.wait(30)  # the parent has exited; its child is alive, inside the lock
            core.metrics.add_fill("venue-t", "strat-t", 5.0, 0.0, 1.0)
            assert proc.stdout.readline().strip() == "claimed"
        finally:
            if proc.poll() is None:
                proc.kill()
            if proc.stdout is not None:
                proc.stdout.read()
        venues, strategies = core.metrics.pnl_by("venue"), core.metrics.pnl_by("strategy")
        assert sum(f.fills for f in venues.values()) == 3, venues
        assert sum(f.fills for f in strategies.values()) == 3, strategies
        assert sum(f.realized for f in venues.values()) == 16.0, venues


def test_fills_past_a_full_table_do_not_wait_on_the_claim_lock() -> None:
    """Records are never given back: once the table is full every new name is OTHER for good,
    known without the segment-wide claim lock (which another process may be holding)."""
    holder = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        with Core.create(plugins=make_plugin_manager(entry_points=False)) as core:
            m = core.metrics
            for i in range(L.PNL_ROWS):
                m.add_fill(f"venue-{i}", "s", 0.0, 0.0, 1.0)  # the table is full
            ident = identity(holder.pid)
            assert ident is not None
            header = core._segment.layout.metrics + L.M_PNL
            core._segment.region.store(header + L.PNL_LOCK, ident)  # another process claims (a new name)
            started = time.monotonic()
            for _ in range(5):
                m.add_fill("venue-past-the-table", "s", 1.0, 0.0, 1.0)
            took = time.monotonic() - started
            core._segment.region.store(header + L.PNL_LOCK, 0)
            assert m.pnl_by("venue")[OTHER].fills >= 5
            assert took < 0.05, f"5 fills took {took:.3f}s waiting on a claim lock they cannot use"
    finally:
        holder.communicate(b"")


def test_a_non_finite_figure_does_not_poison_the_desk_totals() -> None:
    """add_fill keeps what it can and logs the rest: a NaN added once would make the desk-wide
    realized P&L of that venue and strategy NaN for the life of the segment."""
    with Core.create(plugins=make_plugin_manager(entry_points=False)) as core:
        m = core.metrics
        m.add_fill("venue-a", "s", 1.0, 0.1, 10.0)
        m.add_fill("venue-a", "s", math.nan, 0.1, 10.0)
        m.add_fill("venue-a", "s", 2.0, 0.1, 10.0)
        figures = m.pnl_by("venue")["venue-a"]
        assert math.isfinite(figures.realized), figures
        assert math.isfinite(m.pnl_by("strategy")["s"].realized)
