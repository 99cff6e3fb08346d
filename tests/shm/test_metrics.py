"""The segment's figures for the operator's view: rejections, order latency, P&L by venue and
strategy — added by every process at once, nothing lost, a dead or slow claimer survived."""

from __future__ import annotations

import multiprocessing as mp
import subprocess
import sys
import time
from collections import defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot4 import ConfigError, Core, make_plugin_manager
from bot4.shm import layout as L
from bot4.shm._proc import identity
from bot4.shm.metrics import LATENCY_BOUNDS, OTHER, REJECTION_CODES, SegmentMetrics
from bot4.shm.text import decode_text, encode_text


def _fills(name: str, n: int, venue: str, strategy: str) -> None:
    with Core.attach(name) as core:
        for _ in range(n):
            core.metrics.add_fill(venue, strategy, 1.0, 0.5, 100.0)


@pytest.mark.processes
def test_fills_from_several_processes_at_once_are_all_counted() -> None:
    with Core.create(plugins=make_plugin_manager(entry_points=False)) as core:
        ctx = mp.get_context("spawn")
        procs = [ctx.Process(target=_fills, args=(core.name, 5000, "venue-a", f"s{i % 2}")) for i in range(4)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(120)
            assert p.exitcode == 0
        venues = core.metrics.pnl_by("venue")
        strategies = core.metrics.pnl_by("strategy")
    assert venues == {"venue-a": (20_000.0, 10_000.0, 20_000, 2_000_000.0)}
    assert strategies == {
        "s0": (10_000.0, 5_000.0, 10_000, 1_000_000.0),
        "s1": (10_000.0, 5_000.0, 10_000, 1_000_000.0),
    }


def test_past_the_table_figures_go_to_other_and_none_is_lost(core: Core) -> None:
    m = core.metrics
    for i in range(300):
        m.add_fill("venue-a", f"strategy-{i:03d}", float(i), 1.0, 10.0)
    by = m.pnl_by("strategy")
    assert OTHER in by and len(by) == L.PNL_ROWS - 3 - 1 + 1  # every data record but venue-a's, and OTHER
    assert sum(f.realized for f in by.values()) == sum(range(300))
    assert sum(f.fills for f in by.values()) == 300
    assert m.pnl_by("venue")["venue-a"].fills == 300


def test_names_are_kept_apart_by_their_whole_text(core: Core) -> None:
    m = core.metrics
    long_a, long_b = "é" * 63 + "a", "é" * 63 + "b"  # the same first 64 bytes
    m.add_fill("v", long_a, 1.0, 0.0, 1.0)
    m.add_fill("v", long_b, 2.0, 0.0, 1.0)
    m.add_fill("v", long_a, 4.0, 0.0, 1.0)
    other = SegmentMetrics(core._segment.region, core._segment.layout, lambda: core._context.ident)  # no cache
    assert other._record(2, long_a) != other._record(2, long_b)
    (shown,) = m.pnl_by("strategy").values()  # shown under one cut name, counted whole
    assert shown.realized == 7.0 and shown.fills == 3
    with pytest.raises(ConfigError):
        m.pnl_by("symbol")


def _exited_identity() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    ident = identity(proc.pid)
    assert ident is not None
    proc.communicate(b"")
    return ident


def test_a_claimer_killed_mid_claim_is_taken_over(core: Core) -> None:
    m = core.metrics
    header = core._segment.layout.metrics + L.M_PNL
    r = core._segment.region
    r.store(header + L.PNL_LOCK, _exited_identity())  # died holding the claim lock
    row1 = header + L.PNL_WORDS  # and had written record 1 without publishing it
    r.store(row1 + L.PNL_HASH, 12345)
    r.storef(row1 + L.PNL_REALIZED, 999.0)
    m.add_fill("venue-a", "s", 1.0, 0.0, 1.0)
    assert m.pnl_by("venue") == {"venue-a": (1.0, 0.0, 1, 1.0)}
    assert r.load(header + L.PNL_LOCK) == 0


def test_a_claim_lock_held_by_a_live_process_never_stalls_a_fill(core: Core) -> None:
    holder = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        ident = identity(holder.pid)
        assert ident is not None
        header = core._segment.layout.metrics + L.M_PNL
        core._segment.region.store(header + L.PNL_LOCK, ident)
        started = time.monotonic()
        core.metrics.add_fill("venue-a", "s", 1.0, 0.0, 1.0)
        assert time.monotonic() - started < 1.0
        assert core.metrics.pnl_by("venue") == {OTHER: (1.0, 0.0, 1, 1.0)}  # kept, under OTHER for now
        core._segment.region.store(header + L.PNL_LOCK, 0)
        core.metrics.add_fill("venue-a", "s", 2.0, 0.0, 1.0)
        assert core.metrics.pnl_by("venue")["venue-a"].realized == 2.0  # its own record once it can
    finally:
        holder.communicate(b"")


def test_a_closed_core_drops_the_figures_without_raising() -> None:
    core = Core.create(plugins=make_plugin_manager(entry_points=False))
    metrics = core.metrics
    core.close()
    core.unlink()
    metrics.add_fill("venue-a", "s", 1.0, 0.0, 1.0)  # a fill applied as the process closes its core


def test_rejections_and_latency_buckets(core: Core) -> None:
    m = core.metrics
    m.count_rejections(("STOP_LOSS_MISSING", "CORRELATION", "STOP_LOSS_MISSING"))
    m.count_rejections(("MY_PLUGIN_CODE",))
    counts = m.rejections()
    assert list(counts) == list(REJECTION_CODES)
    assert counts["STOP_LOSS_MISSING"] == 1 and counts["CORRELATION"] == 1 and counts["OTHER"] == 1
    for seconds in (0.0, LATENCY_BOUNDS[0], LATENCY_BOUNDS[0] * 1.01, LATENCY_BOUNDS[-1] * 2):
        m.observe_order_latency(round(seconds * 1e9))
    m.observe_order_latency(-5)  # a clock that stepped: counted as 0
    hist = m.order_latency()
    assert hist.buckets[0] == 3 and hist.buckets[1] == 1 and hist.buckets[-1] == 1
    assert hist.total == 5
    assert hist.sum_seconds == pytest.approx(LATENCY_BOUNDS[0] * 2.01 + LATENCY_BOUNDS[-1] * 2)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "c", "é" * 40]),
            st.integers(0, 150).map(lambda i: f"s{i}"),
            st.integers(-1000, 1000),
            st.integers(0, 10),
        ),
        max_size=300,
    )
)
def test_figures_equal_an_independent_model(fills: list[tuple[str, str, int, int]]) -> None:
    with Core.create(plugins=make_plugin_manager(entry_points=False)) as core:
        m = core.metrics
        model: dict[str, dict[str, list[float]]] = {"venue": defaultdict(lambda: [0.0, 0.0, 0, 0.0])}
        model["strategy"] = defaultdict(lambda: [0.0, 0.0, 0, 0.0])
        order: list[tuple[str, str]] = []  # (kind, name) in the order the table first saw them
        for venue, strategy, realized, fee in fills:
            m.add_fill(venue, strategy, float(realized), float(fee), 10.0)
            for field, name in (("venue", venue), ("strategy", strategy)):
                if (field, name) not in order:
                    order.append((field, name))
                shown = decode_text(encode_text(name, L.PNL_NAME_WORDS))  # as the table keeps it
                slot = shown if order.index((field, name)) < L.PNL_ROWS - 3 else OTHER
                figures = model[field][slot]
                figures[0] += realized
                figures[1] += fee
                figures[2] += 1
                figures[3] += 10.0
        for field in ("venue", "strategy"):
            expected = {k: (v[0], v[1], v[2], v[3]) for k, v in model[field].items()}
            assert {k: tuple(f) for k, f in m.pnl_by(field).items()} == expected
